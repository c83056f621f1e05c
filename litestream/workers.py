"""Inference threads: run the engine off the event loop.

A fixed pool of threads, each with its own ONNX Runtime session (measured faster than one
shared session on CPU: see docs/benchmarks.md). The event loop owns the scheduler; it hands a
worker a batch only when that worker is idle, so the scheduler decides as late as possible
(a step cannot be paused once started). Results go back with `call_soon_threadsafe`.

A step is a sentence's encode (front pass: phonemize, then `Voice.encode`) or one decode window
(`Voice.decode`, or `Voice.decode_batch` for a batch of equal windows); the scheduler makes every
batch homogeneous (one kind, voice, speed and window length).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from litestream.engine.base import DecodeWindow, Latent, Voice
from litestream.scheduler import StepKind, SynthesisStep

log = logging.getLogger("litestream.workers")


@dataclass(frozen=True)
class WorkResult:
    step: SynthesisStep
    compute_s: float             # wall time this step took on its worker (batch time shared)
    latent: Latent | None = None  # ENCODE: the sentence's front pass
    audio: np.ndarray | None = None  # DECODE: float32 mono window
    error: str | None = None     # why it failed, for the log (never sent with text)

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass(frozen=True)
class Calibration:
    """One worker's measurement of one voice: a sentence encoded, then decoded in windows."""

    chars: int
    encode_s: float
    frames: int  # the sentence's frames
    decode_s: float  # all its windows
    windows: int


class WorkerPool:
    """N threads; `dispatch` hands a batch to an idle one, `on_result` runs on the loop."""

    def __init__(
        self,
        voices: Mapping[str, Voice],
        workers: int,
        loop: asyncio.AbstractEventLoop,
        on_result: Callable[[WorkResult], None],
    ) -> None:
        self._loop = loop
        self._on_result = on_result
        self._idle: list[int] = list(range(workers))
        self._inboxes: list[queue.SimpleQueue[list[SynthesisStep] | None]] = []
        self._threads: list[threading.Thread] = []
        self._sessions: list[Mapping[str, Voice]] = []
        for index in range(workers):
            # Worker 0 uses the loaded sessions; the others get their own, so no two threads
            # share a session (measured: per-worker sessions give more throughput on CPU).
            own = dict(voices) if index == 0 else {k: v.new_session() for k, v in voices.items()}
            self._sessions.append(own)
            inbox: queue.SimpleQueue[list[SynthesisStep] | None] = queue.SimpleQueue()
            thread = threading.Thread(
                target=self._run, args=(index, own, inbox), name=f"litestream-worker-{index}",
                daemon=True,
            )
            self._inboxes.append(inbox)
            self._threads.append(thread)
            thread.start()

    @property
    def size(self) -> int:
        return len(self._threads)

    @property
    def idle(self) -> int:
        return len(self._idle)

    def dispatch(self, steps: Sequence[SynthesisStep]) -> None:
        """Hand a batch to an idle worker. Call only when `idle > 0`, on the loop thread."""
        index = self._idle.pop()
        self._inboxes[index].put(list(steps))

    def _finished(self, index: int, results: list[WorkResult]) -> None:
        # On the loop thread: the worker is idle again before results are handled, so the
        # result handler's dispatch can give it the next batch at once.
        self._idle.append(index)
        for result in results:
            self._on_result(result)

    def _run(self, index: int, voices: Mapping[str, Voice],
             inbox: queue.SimpleQueue[list[SynthesisStep] | None]) -> None:
        while True:
            steps = inbox.get()
            if steps is None:
                return
            results = run_steps(voices, steps)
            try:
                self._loop.call_soon_threadsafe(self._finished, index, results)
            except RuntimeError:  # loop closed during shutdown
                return

    def calibrate(self, voice: str, text: str, window_frames: int) -> list[Calibration]:
        """Encode `text` and decode it in windows of `window_frames` on every worker's session
        at once, as under full load (blocking; call before any step is dispatched)."""
        results: list[Calibration] = []
        lock = threading.Lock()

        def run(sessions: Mapping[str, Voice]) -> None:
            found = _calibrate(sessions[voice], text, window_frames)
            with lock:
                results.append(found)

        threads = [threading.Thread(target=run, args=(own,)) for own in self._sessions]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    def close(self, timeout_s: float = 5.0) -> None:
        for inbox in self._inboxes:
            inbox.put(None)
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def _calibrate(voice: Voice, text: str, window_frames: int) -> Calibration:
    started = time.perf_counter()
    latent = voice.encode(voice.phoneme_ids(text))
    encoded = time.perf_counter()
    windows = 0
    for start in range(0, latent.frames, window_frames):
        voice.decode(latent, start, min(window_frames, latent.frames - start))
        windows += 1
    return Calibration(len(text), encoded - started, latent.frames,
                       time.perf_counter() - encoded, windows)


def run_steps(voices: Mapping[str, Voice], steps: list[SynthesisStep]) -> list[WorkResult]:
    """Run one homogeneous batch: encode steps one by one (each phonemized first), decode
    windows as one `decode_batch`. A failure fails only its own step."""
    voice = voices.get(steps[0].voice)
    if voice is None:
        return [WorkResult(step, 0.0, error=f"voice {step.voice!r} not loaded") for step in steps]
    if steps[0].kind is StepKind.ENCODE:
        return [_encode(voice, step) for step in steps]
    if len(steps) == 1:
        return [_decode(voice, steps[0])]
    started = time.perf_counter()
    try:
        audios = voice.decode_batch([_window(step) for step in steps])
    except Exception:  # retry one by one so one bad window fails alone
        return [_decode(voice, step) for step in steps]
    share = (time.perf_counter() - started) / len(steps)
    return [WorkResult(step, share, audio=audio)
            for step, audio in zip(steps, audios, strict=True)]


def _window(step: SynthesisStep) -> DecodeWindow:
    if not isinstance(step.latent, Latent):
        raise TypeError(f"decode step of seq {step.seq} has no latent")
    return DecodeWindow(step.latent, step.start_frame, step.frames)


def _encode(voice: Voice, step: SynthesisStep) -> WorkResult:
    started = time.perf_counter()
    try:
        latent = voice.encode(voice.phoneme_ids(step.text), step.speed)
    except Exception as exc:  # one bad sentence must not kill the worker or other streams
        return _failed(step, started, exc)
    return WorkResult(step, time.perf_counter() - started, latent=latent)


def _decode(voice: Voice, step: SynthesisStep) -> WorkResult:
    started = time.perf_counter()
    try:
        window = _window(step)
        audio = voice.decode(window.latent, window.start_frame, window.frames)
    except Exception as exc:
        return _failed(step, started, exc)
    return WorkResult(step, time.perf_counter() - started, audio=audio)


def _failed(step: SynthesisStep, started: float, exc: Exception) -> WorkResult:
    log.warning("session=%s seq=%d %s step failed: %s", step.stream_id, step.seq,
                step.kind.value, type(exc).__name__)
    return WorkResult(step, time.perf_counter() - started, error=repr(exc) or "failed")
