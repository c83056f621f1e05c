"""Voice fingerprints (engine/base.py): what the shared sentence cache keys on, so a changed
voice file never gets another file's audio."""

from __future__ import annotations

import os
from pathlib import Path

from litestream.engine.base import file_sha256, fingerprint_of
from litestream.engine.synthetic import SyntheticVoice


def test_a_changed_file_has_another_checksum(tmp_path: Path) -> None:
    model = tmp_path / "voice.onnx"
    model.write_bytes(b"weights, version one")
    first = file_sha256(model)
    assert first == file_sha256(model)  # the same file version: read once, same answer
    model.write_bytes(b"weights, version two")
    os.utime(model, ns=(1, 1))  # even a rewrite within one mtime tick is seen (size differs)
    assert file_sha256(model) != first


def test_fingerprint_parts_are_delimited() -> None:
    assert fingerprint_of("ab", "c") != fingerprint_of("a", "bc")
    assert fingerprint_of("piper", "0.667:0.8") != fingerprint_of("piper", "0.0:0.0")
    assert len(fingerprint_of("x")) == 64


def test_the_synthetic_voice_has_one_fingerprint_whatever_its_cost() -> None:
    assert SyntheticVoice().fingerprint == SyntheticVoice.load("decode_run_ms=9",
                                                               warmup=False).fingerprint
