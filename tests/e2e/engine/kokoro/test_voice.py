"""Kokoro-82M from its PyPI parts (engine/kokoro.py): the joined model's checksum, the cache,
and the real model behind the `Voice` interface. Sentences are short: Kokoro is slow on CPU."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from litestream.engine.base import DecodeWindow, Voice
from litestream.engine.kokoro import japanese
from litestream.engine.kokoro import voice as kokoro
from litestream.engine.kokoro.voice import HOP, SAMPLE_RATE, KokoroFiles, KokoroModel
from litestream.errors import VoiceError


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- joining the model

def test_joined_model_matches_the_stated_checksum(kokoro_model: KokoroModel,
                                                  kokoro_files: KokoroFiles) -> None:
    path = kokoro_model.model_path
    assert _sha256(path) == kokoro_files.model_sha256
    assert path.stat().st_size == sum(p.stat().st_size for p in kokoro_files.parts)
    # Each part matches its wheel's RECORD (what the join checked).
    for part, digest in zip(kokoro_files.parts, kokoro_files.part_sha256, strict=True):
        assert _sha256(part) == digest


def test_a_second_start_does_not_rejoin(kokoro_model: KokoroModel,
                                        kokoro_files: KokoroFiles,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cache = kokoro_model.model_path.parent
    before = kokoro_model.model_path.stat().st_mtime_ns

    def no_join(*args: object, **kwargs: object) -> None:
        raise AssertionError("joined again")

    monkeypatch.setattr(kokoro.tempfile, "mkstemp", no_join)
    assert kokoro.joined_model_path(kokoro_files, cache) == kokoro_model.model_path
    assert kokoro_model.model_path.stat().st_mtime_ns == before


def test_a_corrupt_part_is_refused_and_leaves_nothing(kokoro_files: KokoroFiles,
                                                      tmp_path: Path) -> None:
    parts = []
    for i, part in enumerate(kokoro_files.parts):
        copy = tmp_path / f"part{i}.bin"
        data = bytearray(part.read_bytes()[:4096])
        if i == 2:
            data[100] ^= 0xFF  # one flipped byte in the third part
        copy.write_bytes(bytes(data))
        parts.append(copy)
    digests = tuple(_sha256(p) if i != 2 else hashlib.sha256(
        kokoro_files.parts[2].read_bytes()[:4096]).hexdigest() for i, p in enumerate(parts))
    files = replace(kokoro_files, parts=tuple(parts), part_sha256=digests)
    cache = tmp_path / "cache"
    with pytest.raises(VoiceError, match="RECORD checksum"):
        kokoro.joined_model_path(files, cache)
    assert list(cache.iterdir()) == []  # no partial model, no temporary file


def test_a_wrong_whole_checksum_is_refused(kokoro_files: KokoroFiles, tmp_path: Path) -> None:
    parts = []
    for i, part in enumerate(kokoro_files.parts):
        copy = tmp_path / f"part{i}.bin"
        copy.write_bytes(part.read_bytes()[:1024])
        parts.append(copy)
    files = replace(kokoro_files, parts=tuple(parts),
                    part_sha256=tuple(_sha256(p) for p in parts))
    with pytest.raises(VoiceError, match="SHA-256"):
        kokoro.joined_model_path(files, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


# ---------------------------------------------------------------- the voices

def test_styles_and_descriptions(kokoro_files: KokoroFiles) -> None:
    rows = {row.id: row for row in kokoro.describe_styles(kokoro_files)}
    assert set(rows) == {"jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"}
    assert rows["jf_alpha"].gender == "female" and rows["jm_kumo"].gender == "male"
    assert {(r.model, r.language, r.sample_rate) for r in rows.values()} == {
        ("kokoro", "ja", 24_000)}
    styles = kokoro.read_styles(kokoro_files.voices_path)
    assert all(s.shape == (510, 256) and s.dtype == np.float32 for s in styles.values())


def test_five_styles_share_one_session_per_worker(kokoro_model: KokoroModel) -> None:
    voices = kokoro_model.voices(warmup=False)
    assert len({id(v._session) for v in voices.values()}) == 1
    # The pool gives each further worker new_session() of every voice: one more session each.
    second = {k: v.new_session() for k, v in voices.items()}
    assert len({id(v._session) for v in second.values()}) == 1
    assert next(iter(second.values()))._session is not next(iter(voices.values()))._session
    assert {v.slot for v in voices.values()} != {v.slot for v in second.values()}


@pytest.fixture(scope="module")
def alpha(kokoro_model: KokoroModel) -> kokoro.KokoroVoice:
    return kokoro_model.voice("jf_alpha")


def test_voice_implements_the_engine_interface(alpha: kokoro.KokoroVoice) -> None:
    assert isinstance(alpha, Voice)
    assert alpha.sample_rate == SAMPLE_RATE and alpha.language == "ja"
    assert alpha.streaming is False
    assert alpha.description.id == "jf_alpha"


def test_encode_holds_the_sentence_and_decode_slices_it(alpha: kokoro.KokoroVoice) -> None:
    ids = alpha.phoneme_ids("今日は良い天気です。")
    latent = alpha.encode(ids)
    assert latent.audio is not None and latent.samples_per_frame == HOP
    assert latent.samples == len(latent.audio) == latent.frames * HOP
    # Plausible speech: 10 kana take about a second, and it is not silence.
    assert 0.7 < latent.samples / SAMPLE_RATE < 3.0
    rms = float(np.sqrt(np.mean(latent.audio ** 2)))
    assert rms > 0.02
    # Windows taken in order and joined give the whole sentence (engine/base.py).
    windows = [(start, min(17, latent.frames - start)) for start in range(0, latent.frames, 17)]
    pieces = [alpha.decode(latent, s, n) for s, n in windows]
    assert all(len(p) == n * HOP for p, (_, n) in zip(pieces, windows, strict=True))
    np.testing.assert_array_equal(np.concatenate(pieces), latent.audio)
    batch = alpha.decode_batch([DecodeWindow(latent, 0, 5), DecodeWindow(latent, 5, 5)])
    np.testing.assert_array_equal(np.concatenate(batch), latent.audio[: 10 * HOP])


def test_speed_shortens_the_audio(alpha: kokoro.KokoroVoice) -> None:
    ids = alpha.phoneme_ids("ありがとうございます。")
    normal = alpha.encode(ids, 1.0).samples
    fast = alpha.encode(ids, 1.6).samples
    assert fast < normal * 0.85


def test_an_over_long_sentence_is_split_at_pauses(alpha: kokoro.KokoroVoice) -> None:
    comma = alpha.model.vocab[","]
    letter = alpha.model.vocab["a"]
    ids = ([letter] * 300 + [comma]) * 3  # 903 tokens: over the 510-token context
    pieces = alpha._pieces(ids)
    assert [len(p) for p in pieces] == [301, 301, 301]
    assert [t for p in pieces for t in p] == ids
    # No pause at all: cut at the context's end.
    assert [len(p) for p in alpha._pieces([letter] * 1200)] == [510, 510, 180]


def test_words_keep_the_text_as_sent_while_it_is_read_as_said(
        alpha: kokoro.KokoroVoice) -> None:
    # "15:30" is read 十五時三十分 (six words of OpenJTalk's) and "5-10" 5から10; the words are
    # the text's own, and "15:30" holds the sounds of all six, up to から's.
    text = "会議は15:30から、5-10分、Pythonで。"
    phonemes = alpha.phonemes(text)
    words = [(w.text, w.char_start, w.char_end) for w in phonemes.words]
    assert [w for w, _, _ in words] == ["会議", "は", "15:30", "から", "5", "-", "10", "分",
                                        "Python", "で"]
    assert all(text[start:end] == word for word, start, end in words)
    pauses = {alpha.model.vocab[mark] for mark in " ,."}
    time, after = phonemes.words[2], phonemes.words[3]
    assert set(phonemes.ids[time.end_id:after.first_id]) <= pauses
    spoken = japanese.phonemize(text)
    assert "ʥɨːɡo ʥi saɴʥɨʔpɯɴ" in spoken and "paisoɴ" in spoken
    # Every sound of the sentence is some word's: none is left between words.
    held = sum(1 for w in phonemes.words for token in phonemes.ids[w.first_id:w.end_id]
               if token not in pauses)
    assert held == sum(1 for token in phonemes.ids if token not in pauses)
