"""engine/synthetic.py: the GPU-shaped stand-in voice, held to the Voice contract the real voice
keeps (the contract tests run on both), and its own promises: the real voice's lengths, a tone
continuous across windows and batches, its cost slept off the GIL, the cost table's forms."""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect

from litestream import config as config_mod
from litestream import protocol
from litestream.engine import PiperVoice, registry, synthetic
from litestream.engine.base import DecodeWindow, Latent, Voice
from litestream.engine.synthetic import (
    CONTEXT_FRAMES,
    HOP_SAMPLES,
    PERIODS,
    SyntheticCost,
    SyntheticVoice,
    Tone,
)
from litestream.errors import ConfigError, SynthesisError
from litestream.server import startup
from loadtest.lib.batches import parse as parse_batches
from tests.serverutil import run_server

SENTENCE = "A blue crane is a tall wading bird, and a fresh start will work such wonders."
PARAGRAPH = (
    "When the morning train pulled into the station, a little later than the timetable "
    "promised, the platform was already crowded with people holding coffee and umbrellas. "
    "Nobody seemed to mind the rain. A conductor walked along the cars, checking tickets. "
    "By noon the clouds had lifted, and the whole valley shone in the sun."
)
SCHEDULES = ((16, 24, 32, 48, 64, 96, 128, 192, 256), (16, 64), (7, 33, 100))


class Recorder:
    """Stands in for time.sleep: records what the voice would have slept. Its clock moves by
    what was slept (a voice books its device against it): runs one after another never
    queue."""

    def __init__(self) -> None:
        self.slept: list[float] = []
        self.elapsed = 0.0

    def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.elapsed += seconds

    def total(self) -> float:
        return sum(self.slept)

    def clock(self) -> float:
        return self.elapsed


def recorded(cost: SyntheticCost | None = None) -> tuple[SyntheticVoice, Recorder]:
    sleep = Recorder()
    return SyntheticVoice(cost, sleep=sleep, clock=sleep.clock), sleep


def free_voice() -> SyntheticVoice:
    """A synthetic voice whose runs cost nothing (and are recorded)."""
    return recorded()[0]


@pytest.fixture(params=["piper", "synthetic"])
def any_voice(request: pytest.FixtureRequest) -> Voice:
    """The contract tests run on the real bundled voice and on its synthetic stand-in."""
    if request.param == "piper":
        real: PiperVoice = request.getfixturevalue("voice")
        return real
    return free_voice()


def windows_of(latent: Latent, sizes: tuple[int, ...]) -> list[tuple[int, int]]:
    """(start, frames) of a sentence's windows under a schedule (the last size repeated)."""
    out: list[tuple[int, int]] = []
    start = 0
    for index in itertools.count():
        if start >= latent.frames:
            return out
        size = sizes[min(index, len(sizes) - 1)]
        out.append((start, size))
        start += size
    raise AssertionError("unreachable")


def stitched(voice: Voice, latent: Latent, sizes: tuple[int, ...]) -> np.ndarray:
    return np.concatenate([voice.decode(latent, start, size)
                           for start, size in windows_of(latent, sizes)])


# ---- the Voice contract, on both voices ------------------------------------------------------


def test_both_voices_keep_the_engine_interface(any_voice: Voice) -> None:
    assert isinstance(any_voice, Voice)
    assert any_voice.streaming
    assert any_voice.sample_rate == any_voice.description.sample_rate == 22050
    assert any_voice.language == any_voice.description.language == "en_US"
    latent = any_voice.encode(any_voice.phoneme_ids(SENTENCE))
    assert latent.samples_per_frame == HOP_SAMPLES and latent.frames > 100


def test_synthetic_prices_windows_as_the_real_voice(voice: PiperVoice) -> None:
    # The scheduler prices a window at frames + 2 x context_frames: the same for both.
    assert free_voice().context_frames == CONTEXT_FRAMES == voice.context_frames


def test_windows_in_any_schedule_join_to_the_whole_sentence(any_voice: Voice) -> None:
    latent = any_voice.encode(any_voice.phoneme_ids(SENTENCE))
    one_shot = any_voice.decode(latent, 0, latent.frames)
    assert len(one_shot) == latent.samples
    for sizes in SCHEDULES:
        pieces = [any_voice.decode(latent, start, size)
                  for start, size in windows_of(latent, sizes)]
        # Every window is exactly frames x hop samples; only the last is cut at the end.
        for (start, size), piece in zip(windows_of(latent, sizes), pieces, strict=True):
            assert len(piece) == min(size, latent.frames - start) * HOP_SAMPLES
        audio = np.concatenate(pieces)
        assert len(audio) == latent.samples
        assert np.abs(audio - one_shot).max() <= 1e-5


def test_decode_batch_equals_each_window_alone(any_voice: Voice) -> None:
    latents = [any_voice.encode(any_voice.phoneme_ids(text))
               for text in (SENTENCE, "Yes, of course.", "Nobody seemed to mind the rain.")]
    windows = [DecodeWindow(latents[0], 0, 32), DecodeWindow(latents[0], 64, 32),
               DecodeWindow(latents[1], 0, 32), DecodeWindow(latents[2], 40, 32)]
    together = any_voice.decode_batch(windows)
    assert len(together) == len(windows)
    for window, audio in zip(windows, together, strict=True):
        alone = any_voice.decode(window.latent, window.start_frame, window.frames)
        assert audio.shape == alone.shape
        assert np.abs(audio - alone).max() <= 1e-5


def test_speed_is_fixed_at_encode(any_voice: Voice) -> None:
    ids = any_voice.phoneme_ids(SENTENCE)
    normal, fast = any_voice.encode(ids, 1.0), any_voice.encode(ids, 2.0)
    assert fast.speed == 2.0 and fast.frames < 0.7 * normal.frames
    assert len(any_voice.decode(fast, 0, fast.frames)) == fast.samples
    with pytest.raises(SynthesisError):
        any_voice.encode(ids, 0.0)


def test_a_new_session_gives_the_same_audio(any_voice: Voice) -> None:
    other = any_voice.new_session()
    assert other is not any_voice
    assert other.description == any_voice.description
    text = "Hello there."
    assert other.synthesize(text).tobytes() == any_voice.synthesize(text).tobytes()


# ---- lengths: the real voice's, from a fit ---------------------------------------------------


def test_lengths_follow_the_real_voice(voice: PiperVoice) -> None:
    """Per sentence within 12%, in total within 3% (loadtest/synthetic_fit.py measures it on
    held-out texts: 5% mean, 1% in total)."""
    stand_in = free_voice()
    segmenter_sentences = [s.strip() + "." for s in PARAGRAPH.split(".") if s.strip()]
    real = [voice.encode(voice.phoneme_ids(s)).frames for s in segmenter_sentences]
    fake = [stand_in.encode(stand_in.phoneme_ids(s)).frames for s in segmenter_sentences]
    for r, f in zip(real, fake, strict=True):
        assert abs(f - r) <= 0.12 * r
    assert abs(sum(fake) - sum(real)) <= 0.03 * sum(real)
    for speed in (0.5, 1.5):
        r = voice.encode(voice.phoneme_ids(SENTENCE), speed).frames
        f = stand_in.encode(stand_in.phoneme_ids(SENTENCE), speed).frames
        assert abs(f - r) <= 0.12 * r


def test_lengths_are_deterministic_and_grow_with_the_text() -> None:
    v = free_voice()
    short, long = v.phoneme_ids("Hello."), v.phoneme_ids(PARAGRAPH)
    assert v.encode(short).frames == v.encode(short).frames
    assert v.encode(long).frames > 10 * v.encode(short).frames
    assert v.lengths.speed_factor(1.0) == 1.0
    assert v.lengths.speed_factor(0.4) > v.lengths.speed_factor(0.5) > 1.0
    assert v.lengths.speed_factor(2.5) < v.lengths.speed_factor(2.0) < 1.0


# ---- the tone: continuous in phase, its pitch per sentence -----------------------------------


def test_the_tone_is_quiet_but_not_silence() -> None:
    audio = free_voice().synthesize(SENTENCE)
    peak = float(np.abs(audio).max())
    assert 0.04 < peak <= synthetic.AMPLITUDE
    assert float(np.sqrt(np.mean(audio ** 2))) > 0.03


def test_lost_repeated_or_swapped_frames_show() -> None:
    v = free_voice()
    latent = v.encode(v.phoneme_ids(SENTENCE))
    whole = v.decode(latent, 0, latent.frames)
    windows = [v.decode(latent, start, size) for start, size in windows_of(latent, (32, 64))]
    assert np.array_equal(np.concatenate(windows), whole)
    lost = np.concatenate([windows[0][:-HOP_SAMPLES], *windows[1:]])  # one frame lost
    repeated = np.concatenate([windows[0], windows[0][-HOP_SAMPLES:], *windows[1:]])
    swapped = np.concatenate([windows[1], windows[0], *windows[2:]])
    for damaged in (lost, repeated, swapped):
        n = min(len(damaged), len(whole))
        assert not np.array_equal(damaged[:n], whole[:n])
    # The first damaged sample is where the frame went missing: the phase breaks there.
    assert int(np.flatnonzero(lost[:len(whole) - HOP_SAMPLES]
                              != whole[:len(whole) - HOP_SAMPLES])[0]) < len(windows[0])


def test_each_sentence_has_its_own_pitch() -> None:
    v = free_voice()
    texts = [f"Listener {n} hears this sentence." for n in range(12)]
    periods = [v.encode(v.phoneme_ids(t)).state.period_samples for t in texts]
    assert len(set(periods)) >= 6 and set(periods) <= set(PERIODS)
    latent = v.encode(v.phoneme_ids(texts[0]))
    assert isinstance(latent.state, Tone) and 170 < latent.state.hz < 600
    # The pitch is what the audio holds: its strongest bin is the tone's frequency.
    audio = v.decode(latent, 0, latent.frames)
    spectrum = np.abs(np.fft.rfft(audio))
    peak_hz = np.argmax(spectrum) * v.sample_rate / len(audio)
    assert abs(peak_hz - latent.state.hz) < 2


# ---- cost: from the table, slept, off the GIL ------------------------------------------------


def test_decode_cost_is_one_run_plus_the_frames_it_computes() -> None:
    cost = SyntheticCost(decode_run_s=0.004, decode_frame_s=1e-5, encode_run_s=0.003,
                         encode_char_s=2e-6)
    v, sleep = recorded(cost)
    latent = Latent(frames=200, samples_per_frame=HOP_SAMPLES, speed=1.0, state=Tone(37))
    v.decode(latent, 0, 32)  # a first window: no left margin
    assert sleep.total() == pytest.approx(0.004 + 1e-5 * (32 + CONTEXT_FRAMES))
    sleep.slept.clear()
    v.decode_batch([DecodeWindow(latent, 64, 32), DecodeWindow(latent, 180, 32)])
    # One fixed part for the batch; the last window is cut at the end (20 frames, no right
    # margin).
    computed = (32 + 2 * CONTEXT_FRAMES) + (20 + CONTEXT_FRAMES)
    assert sleep.total() == pytest.approx(0.004 + 1e-5 * computed)
    sleep.slept.clear()
    ids = v.phoneme_ids(SENTENCE)
    v.encode(ids)
    assert sleep.total() == pytest.approx(0.003 + 2e-6 * len(ids))
    assert v.decode_batch([]) == []


def test_a_batch_of_encode_steps_is_one_run_as_on_a_gpu() -> None:
    """A GPU's batched front (the default): one fixed part for the batch, every sentence's
    characters; `encode_batch=0` runs them one by one, as CPU front passes."""
    ids = [free_voice().phoneme_ids(text) for text in (SENTENCE, "Yes.", PARAGRAPH[:90])]
    for one_run in (1, 0):
        cost = SyntheticCost(encode_run_s=0.003, encode_char_s=2e-6, encode_batch=one_run)
        v, sleep = recorded(cost)
        assert v.batches_fronts is bool(one_run)
        latents = v.encode_batch(ids)
        runs = 1 if one_run else len(ids)
        assert len(sleep.slept) == runs
        assert sleep.total() == pytest.approx(0.003 * runs + 2e-6 * sum(map(len, ids)))
        alone = [v.encode(row) for row in ids]
        assert [(a.frames, a.state) for a in latents] == [(a.frames, a.state) for a in alone]


def test_python_per_run_is_spent_holding_the_thread_busy() -> None:
    """decode_python_us / encode_python_us: CPU spent in Python per decode run and per
    sentence (the real voice's own Python around its runs), on top of the slept cost."""
    cost = SyntheticCost.parse("decode_python_us=20000,encode_python_us=10000")
    assert (cost.decode_python_s, cost.encode_python_s) == (0.02, 0.01)
    assert "Python 20000 us a decode run" in cost.describe()
    v, sleep = recorded(cost)
    ids = v.phoneme_ids(SENTENCE)
    began = time.thread_time()
    latents = v.encode_batch([ids, ids])
    encoded = time.thread_time() - began
    v.decode(latents[0], 0, 32)
    decoded = time.thread_time() - began - encoded
    assert encoded >= 0.02 and decoded >= 0.02  # CPU, not a sleep: the recorder slept none
    assert sleep.total() == pytest.approx(cost.encode_s(2 * len(ids))[0]
                                          + cost.encode_s(2 * len(ids))[1]
                                          + sum(cost.decode_s(32 + CONTEXT_FRAMES)))


def test_it_sleeps_with_time_sleep_and_spends_no_cpu() -> None:
    assert SyntheticVoice().sleep is time.sleep
    v = SyntheticVoice(SyntheticCost(decode_run_s=0.3, decode_frame_s=0.0))
    latent = v.encode(v.phoneme_ids("Hello."))
    used: list[float] = []

    def run() -> None:
        began = time.thread_time()
        v.decode(latent, 0, latent.frames)
        used.append(time.thread_time() - began)

    # A full garbage collection of this test process's heap, should one fall inside the run,
    # costs ~0.1 s of CPU on its own (it did once in CI): not the voice's.
    gc.collect()
    gc.disable()
    try:
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
    finally:
        gc.enable()
    # 0.3 s of cost, almost none of it on the CPU: the worker slept, the GIL was free.
    assert used[0] < 0.1


def test_device_parts_take_turns_on_one_device() -> None:
    """Runs that reach the device together queue there, each sleeping to the end of its turn
    (one sleep a run); host parts overlap."""
    host, frame = 0.002, 1e-4
    latent = Latent(frames=64, samples_per_frame=HOP_SAMPLES, speed=1.0, state=Tone(41))
    device_s = frame * (32 + CONTEXT_FRAMES)  # a first window

    def slept(devices: int, runs: int) -> list[float]:
        sleep = Recorder()
        first = SyntheticVoice(SyntheticCost(decode_run_s=host, decode_frame_s=frame,
                                             devices=devices), sleep=sleep, clock=lambda: 0.0)
        voices = [first] + [first.new_session() for _ in range(runs - 1)]
        for voice in voices:  # every run starts at time 0 (the clock stands still)
            voice.decode(latent, 0, 32)
        return sleep.slept

    one_gpu = slept(1, 3)
    assert one_gpu == pytest.approx([host + device_s, host + 2 * device_s, host + 3 * device_s])
    two_gpus = slept(2, 3)
    assert two_gpus == pytest.approx([host + device_s, host + device_s, host + 2 * device_s])
    assert slept(0, 3) == pytest.approx([host + device_s] * 3)  # no limit
    # A device booked until later is booked from then on, whichever session asks.
    sleep = Recorder()
    now = [0.0]
    v = SyntheticVoice(SyntheticCost(decode_run_s=0.0, decode_frame_s=frame, devices=1),
                       sleep=sleep, clock=lambda: now[0])
    v.decode(latent, 0, 32)
    now[0] = device_s / 2  # half-way through the first run's turn
    v.new_session().decode(latent, 0, 32)
    assert sleep.slept == pytest.approx([device_s, 1.5 * device_s])


def test_a_terminated_run_fails_like_an_onnx_run() -> None:
    v = free_voice()
    latent = v.encode(v.phoneme_ids("Hello."))
    with pytest.raises(SynthesisError, match="terminated"):
        v.decode(latent, 0, 16, run_options=SimpleNamespace(terminate=True))
    with pytest.raises(SynthesisError):
        v.decode(Latent(frames=10, samples_per_frame=HOP_SAMPLES, speed=1.0), 0, 5)
    with pytest.raises(SynthesisError):
        v.decode(latent, latent.frames, 5)


def test_cost_table_forms(tmp_path: Path) -> None:
    assert SyntheticCost.parse("") == SyntheticCost()
    cost = SyntheticCost.parse(" decode_run_ms=2.5, decode_frame_us=6,devices=2 ")
    assert cost == SyntheticCost(decode_run_s=0.0025, decode_frame_s=6e-6, devices=2)
    measured = tmp_path / "gpu.json"
    measured.write_text(json.dumps({"provider": "CUDA", "synthetic_cost": {
        "decode_run_ms": 1, "decode_frame_us": 3, "encode_run_ms": 2, "encode_char_us": 1}}))
    assert SyntheticCost.parse(str(measured)) == SyntheticCost(
        decode_run_s=0.001, decode_frame_s=3e-6, encode_run_s=0.002, encode_char_s=1e-6)
    assert SyntheticCost.parse("encode_batch=0").encode_batch == 0
    assert SyntheticCost().encode_batch == 1
    flat = tmp_path / "flat.json"
    flat.write_text('{"devices": 0}')
    assert SyntheticCost.parse(str(flat)).devices == 0
    for bad in ("decode_run_ms", "decode_run_ms=fast", "decode_run_ms=-1", "gpus=2",
                "devices=1.5", "decode_frame_us=nan", "encode_batch=2",
                str(tmp_path / "missing.json")):
        with pytest.raises(ConfigError):
            SyntheticCost.parse(bad)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError):
        SyntheticCost.parse(str(tmp_path / "list.json"))
    assert "2.5 ms + 3.5 us/frame" in SyntheticCost().describe()


# ---- catalogue, config, start-up -------------------------------------------------------------


def test_voice_synthetic_selects_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    voices = registry.load_voices(Path("synthetic"), kokoro_voices=False,
                                  synthetic_cost="devices=3")
    assert list(voices) == ["synthetic-gpu"]
    (stand_in,) = voices.values()
    assert isinstance(stand_in, SyntheticVoice) and stand_in.cost.devices == 3
    row = stand_in.description
    assert row.model == "synthetic" and row.source.startswith("synthetic")
    (described,) = registry.describe_voices(Path("synthetic"), kokoro_voices=False)
    assert (described.id, described.model) == ("synthetic-gpu", "synthetic")
    assert isinstance(registry.load_voice("synthetic"), SyntheticVoice)
    # A file of that name is a Piper voice path, as before.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "synthetic").write_bytes(b"")
    assert not registry.is_synthetic("synthetic")
    assert registry.is_synthetic("synthetic-gpu") and not registry.is_synthetic(None)


def test_warmup_pays_for_espeak_before_calibration_measures() -> None:
    from litestream.engine import phonemize

    SyntheticVoice.load()
    assert synthetic.ESPEAK_VOICE in phonemize._backends


def test_config_and_start_up_take_the_synthetic_voice() -> None:
    args = config_mod.parse_args(["--voice", "synthetic", "--synthetic-cost", "devices=2"])
    cfg = config_mod.build(args, environ={})
    assert cfg.voice == Path("synthetic") and cfg.synthetic_cost == "devices=2"
    env = config_mod.build(environ={"LITESTREAM_SYNTHETIC_COST": "decode_frame_us=5"})
    assert env.synthetic_cost == "decode_frame_us=5"
    # It batches as a GPU does: 8 windows per run unless told otherwise, and its windows grow
    # to 512 frames, a CPU voice's to 256, unless told otherwise.
    assert startup.max_batch(cfg, {"synthetic-gpu": free_voice()}) == 8
    assert startup.max_window_frames(cfg, {"synthetic-gpu": free_voice()}) == 512
    told = config_mod.build(environ={"LITESTREAM_MAX_WINDOW_FRAMES": "384"})
    assert startup.max_window_frames(told, {"synthetic-gpu": free_voice()}) == 384


def test_a_cpu_voice_keeps_windows_of_256_frames(voice: PiperVoice) -> None:
    # A window is one run a newcomer's first audio may wait behind: 0.1-0.3 s on a CPU.
    assert voice.provider.startswith("CPU")
    assert startup.max_window_frames(config_mod.build(environ={}), {"joe": voice}) == 256


# ---- end to end: a real server speaking with the synthetic voice ----------------------------


async def speak(url: str, text: str) -> tuple[list[dict[str, Any]], dict[int, bytearray]]:
    """(events, seq -> PCM) of one stream that sends `text` and ends."""
    events: list[dict[str, Any]] = []
    audio: dict[int, bytearray] = {}
    seq = -1
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "text", "text": text}))
        await ws.send(json.dumps({"type": "end"}))
        async with asyncio.timeout(60):
            async for frame in ws:
                if isinstance(frame, bytes):
                    audio.setdefault(seq, bytearray()).extend(frame)
                    continue
                msg = json.loads(frame)
                events.append(msg)
                if msg["type"] == "chunk":
                    seq = msg["seq"]
    return events, audio


async def test_streams_get_exactly_the_synthetic_audio_in_order() -> None:
    stand_in = SyntheticVoice()  # the default (H200 estimate) costs, really slept
    texts = [f"Listener {n} hears this sentence, slowly. Then a second line for {n}."
             for n in range(16)]
    async with run_server({stand_in.description.id: stand_in}, workers=2, max_batch=8,
                          cache_bytes=0) as srv:
        results = await asyncio.gather(*(speak(srv.url, t) for t in texts))
        metrics = srv.server.metrics.render()[0].decode()
        stats = srv.server.synthesis.scheduler.stats()
    for text, (events, audio) in zip(texts, results, strict=True):
        assert events[0]["sample_rate"] == 22050 and events[-1]["type"] == "done"
        chunks = [e for e in events if e["type"] == "chunk"]
        assert " ".join(c["text"] for c in chunks) == text
        for c in chunks:
            # Exactly the sentence's tone, byte for byte: no frame lost, repeated, reordered
            # or taken from another stream, across every window and batch it went through.
            want = protocol.to_pcm(stand_in.synthesize(c["text"]), "s16le")
            assert bytes(audio[c["seq"]]) == want
            assert abs(len(want) / 2 / 22050 * 1000 - c["duration_ms"]) <= 1
    # Sixteen streams at once on a GPU-shaped voice: runs carry several steps, and the
    # histogram accounts for every step the scheduler handed out.
    runs = parse_batches(metrics)
    decode = runs["decode"]
    assert decode.runs > 0 and decode.share_batched > 0
    assert decode.steps == stats.decode_steps and runs["encode"].steps == stats.encode_steps
