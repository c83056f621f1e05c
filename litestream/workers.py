"""Inference threads: run the engine off the event loop.

A fixed pool of threads, each with its own ONNX Runtime session (measured faster than one
shared session on CPU: see docs/benchmarks.md). The event loop owns the scheduler; it hands a
worker a batch only when that worker is idle, so the scheduler decides as late as possible
(a chunk cannot be paused once started). Results go back with `call_soon_threadsafe`.
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

from litestream.engine import ServedVoice
from litestream.scheduler import ChunkJob

log = logging.getLogger("litestream.workers")


@dataclass(frozen=True)
class WorkResult:
    job: ChunkJob
    audio: np.ndarray | None     # float32 mono; None when synthesis failed
    compute_s: float             # wall time this job took on its worker (batch time shared)
    error: str | None = None     # why it failed, for the log (never sent with text)


class WorkerPool:
    """N threads; `dispatch` hands a batch to an idle one, `on_result` runs on the loop."""

    def __init__(
        self,
        voices: Mapping[str, ServedVoice],
        workers: int,
        loop: asyncio.AbstractEventLoop,
        on_result: Callable[[WorkResult], None],
    ) -> None:
        self._loop = loop
        self._on_result = on_result
        self._idle: list[int] = list(range(workers))
        self._inboxes: list[queue.SimpleQueue[list[ChunkJob] | None]] = []
        self._threads: list[threading.Thread] = []
        self._sessions: list[Mapping[str, ServedVoice]] = []
        for index in range(workers):
            # Worker 0 uses the loaded sessions; the others get their own, so no two threads
            # share a session (measured: per-worker sessions give more throughput on CPU).
            own = dict(voices) if index == 0 else {k: v.new_session() for k, v in voices.items()}
            self._sessions.append(own)
            inbox: queue.SimpleQueue[list[ChunkJob] | None] = queue.SimpleQueue()
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

    def dispatch(self, jobs: Sequence[ChunkJob]) -> None:
        """Hand a batch to an idle worker. Call only when `idle > 0`, on the loop thread."""
        index = self._idle.pop()
        self._inboxes[index].put(list(jobs))

    def _finished(self, index: int, results: list[WorkResult]) -> None:
        # On the loop thread: the worker is idle again before results are handled, so the
        # result handler's dispatch can give it the next batch at once.
        self._idle.append(index)
        for result in results:
            self._on_result(result)

    def _run(self, index: int, voices: Mapping[str, ServedVoice],
             inbox: queue.SimpleQueue[list[ChunkJob] | None]) -> None:
        while True:
            jobs = inbox.get()
            if jobs is None:
                return
            results = _synthesize(voices, jobs)
            try:
                self._loop.call_soon_threadsafe(self._finished, index, results)
            except RuntimeError:  # loop closed during shutdown
                return

    def calibrate(self, voice: str, text: str) -> list[WorkResult]:
        """Synthesize `text` on every worker's session at once, as under full load, and
        return the results (blocking; call before any job is dispatched)."""
        job = ChunkJob(stream_id="calibration", seq=0, text=text, speed=1.0, voice=voice,
                       chars=len(text), predicted_audio_s=0.0, predicted_compute_s=0.0,
                       latest_start_s=0.0, deadline_s=0.0)
        results: list[WorkResult] = []
        lock = threading.Lock()

        def run(sessions: Mapping[str, ServedVoice]) -> None:
            found = _synthesize(sessions, [job])
            with lock:
                results.extend(found)

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


def _synthesize(voices: Mapping[str, ServedVoice], jobs: list[ChunkJob]) -> list[WorkResult]:
    """Phonemize and synthesize one batch. Jobs of one batch share voice and speed."""
    started = time.perf_counter()
    voice = voices.get(jobs[0].voice)
    if voice is None:
        return [WorkResult(job, None, 0.0, f"voice {job.voice!r} not loaded") for job in jobs]
    try:
        ids = [voice.phoneme_ids(job.text) for job in jobs]
        audios = voice.synthesize_ids(ids, speed=jobs[0].speed)
    except Exception as exc:  # one bad chunk must not kill the worker or other streams
        if len(jobs) > 1:
            # Retry one by one so one bad item fails alone.
            return [r for job in jobs for r in _synthesize(voices, [job])]
        log.warning("session=%s seq=%d synthesis failed: %s", jobs[0].stream_id, jobs[0].seq,
                    type(exc).__name__)
        return [WorkResult(jobs[0], None, time.perf_counter() - started, repr(exc))]
    share = (time.perf_counter() - started) / len(jobs)
    return [WorkResult(job, audio, share) for job, audio in zip(jobs, audios, strict=True)]
