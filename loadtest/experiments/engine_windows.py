"""Streaming inside a sentence (issue 8): what the front pass and each decode window cost.

Prints, for the bundled voice on this machine:
- load and warmup time of a split voice, and what the first run of a new window shape costs;
- the front pass (text encoder + duration predictor) for short / medium / long sentences;
- flow + decoder per window size, as a first window and as a window with context on both
  sides, with the frames computed for it and the share of that compute spent on context;
- flow and decoder as one "back" session instead of two (the margin then has to be the sum
  of both, and the decoder runs over it);
- the max abs error of stitched windows against the one-shot decode for a few margins;
- time to first audio for a 98-character sentence: phonemize + front + first window, against
  the unsplit graph in one session (what every sentence cost before);
- decode_batch of equal windows against the same windows one by one;
- the context share of a paragraph under a few window schedules (first, growth, max).

Run it alone (``flock -x /tmp/litestream-cpu.lock python -m loadtest.experiments.engine_windows``):
every figure is a median over ``--runs`` repetitions on 1 intra-op thread.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from litestream.engine.base import DecodeWindow, Latent
from litestream.engine.piper.voice import PiperVoice
from litestream.engine.piper.windows import WINDOW_FRAMES, ContextFrames
from loadtest.lib.texts import PARAGRAPH

SHORT = "Hello there."  # 12 characters
MEDIUM = "The quick brown fox jumps over the lazy dogs."  # 45
LONG_98 = ("A conductor walked along the cars, checking tickets and answering questions about "
           "the connections.")  # 98
MS_PER_FRAME = 256 / 22050 * 1000  # 11.6 ms of audio per frame (hop 256 at 22.05 kHz)


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # this shape's first run is warmup's business, not this figure's
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def schedule_windows(frames: int, first: int, growth: float, largest: int) -> list[tuple[int,
                                                                                         int]]:
    """(start, size) of each window of a sentence under a geometric schedule."""
    windows, start, size = [], 0, float(first)
    while start < frames:
        step = min(int(size), largest)
        windows.append((start, step))
        start += step
        size *= growth
    return windows


@dataclass(frozen=True)
class WindowCost:
    size: int
    first_ms: float  # window at frame 0: context on the right only
    middle_ms: float  # context on both sides
    flow_frames: int  # frames the flow computes for a middle window
    decoder_frames: int
    context_share: float  # of a middle window's flow+decoder time


def window_costs(voice: PiperVoice, latent: Latent, sizes: Sequence[int],
                 runs: int) -> list[WindowCost]:
    middle = voice.context.decoder + voice.context.flow + 1  # full context on the left
    costs = []
    for size in sizes:
        first_ms = median_ms(functools.partial(voice.decode, latent, 0, size), runs)
        middle_ms = median_ms(functools.partial(voice.decode, latent, middle, size), runs)
        voice.counters.reset()
        for _ in range(runs):
            voice.decode(latent, middle, size)
        c = voice.counters
        costs.append(WindowCost(size, first_ms, middle_ms, c.flow_frames // runs,
                                c.decoder_frames // runs, c.context_share()))
    return costs


def back_session_ms(voice: PiperVoice, latent: Latent, size: int, runs: int) -> float:
    """Flow and decoder as one session: its input needs both margins, and so does the
    decoder inside it."""
    import onnx
    import onnxruntime as ort

    from litestream.engine.onnx import session_options

    split = voice._model.split
    assert split is not None
    global _back
    if _back is None:
        model = onnx.shape_inference.infer_shapes(onnx.load(str(voice.info.model_path)))
        part = onnx.utils.Extractor(model).extract_model(
            [split.cuts.z_p, split.cuts.y_mask], ["output"])
        _back = ort.InferenceSession(part.SerializeToString(), session_options(1),
                                     providers=["CPUExecutionProvider"])
    margin = voice.context.decoder + voice.context.flow
    prior = latent.state
    frames = slice(0, size + 2 * margin)
    feeds = {split.cuts.z_p: np.ascontiguousarray(prior.z_p[:, :, frames]),
             split.cuts.y_mask: np.ascontiguousarray(prior.y_mask[:, :, frames])}
    session = _back
    return median_ms(lambda: session.run(None, feeds), runs)


_back = None


def whole_model_session(voice: PiperVoice) -> Any:
    """The unsplit graph in one session: what synthesis cost before issue 8."""
    import onnxruntime as ort

    from litestream.engine.onnx import session_options

    return ort.InferenceSession(str(voice.info.model_path), session_options(1),
                                providers=["CPUExecutionProvider"])


def decode_each(voice: PiperVoice, windows: Sequence[DecodeWindow]) -> list[np.ndarray]:
    return [voice.decode(w.latent, w.start_frame, w.frames) for w in windows]


def stitch_error(voice: PiperVoice, latent: Latent, size: int) -> float:
    one_shot = voice.decode(latent, 0, latent.frames)
    pieces = [voice.decode(latent, start, size) for start in range(0, latent.frames, size)]
    return float(np.abs(np.concatenate(pieces) - one_shot).max())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed repetitions per figure")
    args = parser.parse_args(argv)
    runs = args.runs
    load_before = os.getloadavg()[0]

    began = time.perf_counter()
    voice = PiperVoice.load(intra_op_threads=1, device="cpu", warmup=False)
    load_s = time.perf_counter() - began
    # What warmup is for: the first run of a shape against the next ones, on a cold session.
    long_ids = voice.phoneme_ids(LONG_98)
    cold_latent = voice.encode(long_ids)
    cold = []
    for size in (64, 48):
        start = time.perf_counter()
        voice.decode(cold_latent, 40, size)
        first_ms = (time.perf_counter() - start) * 1000
        again_ms = median_ms(functools.partial(voice.decode, cold_latent, 40, size), runs)
        cold.append((size, first_ms, again_ms))
    began = time.perf_counter()
    voice.warmup()
    warmup_s = time.perf_counter() - began
    print(f"engine windows benchmark: voice {voice.info.id}, {voice.provider}, 1 intra-op "
          f"thread, {os.cpu_count()} CPUs, median of {runs} runs; context "
          f"decoder {voice.context.decoder} + flow {voice.context.flow} frames each side")
    print(f"load (split + 3 sessions) {load_s:.1f} s, warmup {warmup_s:.1f} s")
    for size, first_ms, again_ms in cold:
        print(f"cold session, {size}-frame window: first run {first_ms:.0f} ms, "
              f"then {again_ms:.0f} ms")

    print("\nfront pass (text encoder + duration predictor):")
    for text in (SHORT, MEDIUM, LONG_98):
        ids = voice.phoneme_ids(text)
        frames = voice.encode(ids).frames
        ms = median_ms(functools.partial(voice.encode, ids), runs)
        print(f"  {len(text):>3} chars, {frames:>3} frames ({frames * MS_PER_FRAME:>5.0f} ms "
              f"of audio): {ms:5.1f} ms")

    latent = voice.encode(voice.phoneme_ids(PARAGRAPH.split(". ")[0] + "."))
    print(f"\nflow + decoder per window (a {latent.frames}-frame sentence):")
    print(f"  {'frames':>6} {'audio ms':>8} {'first ms':>8} {'middle ms':>9} {'RTF':>5} "
          f"{'flow fr':>7} {'dec fr':>6} {'context share':>13}")
    costs = window_costs(voice, latent, WINDOW_FRAMES, runs)
    for c in costs:
        audio_ms = c.size * MS_PER_FRAME
        print(f"  {c.size:>6} {audio_ms:>8.0f} {c.first_ms:>8.1f} {c.middle_ms:>9.1f} "
              f"{c.middle_ms / audio_ms:>5.2f} {c.flow_frames:>7} {c.decoder_frames:>6} "
              f"{c.context_share:>13.0%}")

    print("\none back session (flow + decoder, both margins into the decoder) vs two:")
    by_size = {c.size: c for c in costs}
    for size in (16, 32, 64, 128, 256):
        ms = back_session_ms(voice, latent, size, runs)
        print(f"  {size:>4} frames: one session {ms:6.1f} ms, two sessions "
              f"{by_size[size].middle_ms:6.1f} ms")

    print("\nstitched windows of 32 frames vs one-shot decode, max abs error:")
    base = voice.context
    for decoder, flow in ((8, 20), (10, 16), (12, 16), (12, 20), (16, 24)):
        voice.context = ContextFrames(decoder=decoder, flow=flow)
        print(f"  decoder {decoder:>2} + flow {flow:>2} frames: "
              f"{stitch_error(voice, latent, 32):.1e}")
    voice.context = base

    print(f"\ntime to first audio, {len(LONG_98)}-char sentence:")
    whole = whole_model_session(voice)

    def whole_model() -> None:
        ids = voice.phoneme_ids(LONG_98)
        whole.run(None, {"input": np.array([ids], dtype=np.int64),
                         "input_lengths": np.array([len(ids)], dtype=np.int64),
                         "scales": voice._scales(1.0)})

    print(f"  whole model, one session (phonemize + run): {median_ms(whole_model, runs):.0f} ms")
    whole_ms = median_ms(lambda: voice.synthesize_ids([voice.phoneme_ids(LONG_98)]), runs)
    print(f"  synthesize_ids (phonemize + front + flow + decoder, whole sentence): "
          f"{whole_ms:.0f} ms")
    for first in (16, 24, 32, 48):
        def first_audio(size: int = first) -> None:
            voice.decode(voice.encode(voice.phoneme_ids(LONG_98)), 0, size)
        print(f"  phonemize + front + first {first}-frame window "
              f"({first * MS_PER_FRAME:.0f} ms of audio): {median_ms(first_audio, runs):.0f} ms")

    print("\ndecode_batch of 4 middle windows (4 sentences) vs one by one:")
    latents = [voice.encode(voice.phoneme_ids(s + ".")) for s in PARAGRAPH.split(". ")[:4]]
    for size in (32, 64):
        windows = [DecodeWindow(lat, 40, size) for lat in latents]
        together = median_ms(functools.partial(voice.decode_batch, windows), runs)
        apart = median_ms(functools.partial(decode_each, voice, windows), runs)
        print(f"  {size} frames: batched {together:.0f} ms, one by one {apart:.0f} ms")

    print("\ncontext share over the paragraph (5 sentences) per schedule (first, growth, max):")
    sentences = [voice.encode(voice.phoneme_ids(s if s.endswith(".") else s + "."))
                 for s in PARAGRAPH.split(". ")]
    longest = max(lat.frames for lat in sentences)
    for first, growth, largest in ((longest, 1.0, longest), (16, 2.0, 128), (24, 2.0, 128),
                                   (16, 2.0, 256), (32, 2.0, 256), (24, 2.0, 192),
                                   (32, 1.0, 32), (64, 1.0, 64), (16, 1.5, 128)):
        voice.counters.reset()
        for lat in sentences:
            for start, size in schedule_windows(lat.frames, first, growth, largest):
                voice.decode(lat, start, size)
        spent = voice.counters
        audio_s = spent.output_frames * MS_PER_FRAME / 1000
        print(f"  {first:>3}, x{growth:.1f}, {largest:>3}: {spent.windows:>3} windows, "
              f"context {spent.context_share():.0%} of compute, flow+decoder "
              f"{(spent.flow_s + spent.decoder_s) / audio_s:.3f} s per audio s")
    print(f"\n1-min load average: {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
