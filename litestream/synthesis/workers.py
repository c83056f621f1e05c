"""Inference threads: run the engine off the event loop, and keep them serving.

A fixed pool of threads, each with its own ONNX Runtime session (measured faster than one
shared session on CPU: see docs/benchmarks.md). The event loop owns the scheduler; it hands a
worker a batch only when that worker is idle, so the scheduler decides as late as possible
(a step cannot be paused once started). Results go back with `call_soon_threadsafe`, in
batches: runs that finish while the loop has not yet taken the earlier ones join them, so the
loop wakes once for all of them and dispatches once after them (`on_drained`).

A step is a sentence's encode (front pass: phonemize, then `Voice.encode`) or one decode window
(`Voice.decode`, or `Voice.decode_batch` for a batch of equal windows); the scheduler makes every
batch homogeneous (one kind, voice, speed and window length).

The watchdog (issue 10). Every run has a time limit, `max(floor, factor x predicted compute)`;
a loop timer armed at dispatch sets the run's `RunOptions.terminate` when it passes, and ONNX
Runtime then stops the run with an error: its steps fail (`synthesis_failed`), the worker
takes work again. A worker not back within `grace_s` after that (stuck outside ONNX Runtime,
in a native call that ignores the flag), or whose thread died, is abandoned: its steps fail
at once and a new thread with new sessions replaces it. Until the replacement is warm the pool
serves with one worker fewer, and says so (`serving`, `on_change`) so that admission follows.

Everything about workers' states happens on the loop thread; worker threads only read their
inbox, run the engine and post back. So the pool needs no lock.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import dataclasses
import enum
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Any, TypeVar

import numpy as np
import onnxruntime as ort

from litestream import protocol
from litestream.engine.base import DecodeWindow, Latent, Phonemes, Voice
from litestream.engine.words import timed
from litestream.logs import stream_fields
from litestream.scheduler import StepKind, SynthesisStep

log = logging.getLogger("litestream.workers")

TERMINATED = "terminated by the watchdog"
# A busy worker gives freed memory back at most this often, and an idle one this long after
# its last run. The trim itself is cheap; what costs is the next runs' allocations faulting
# their pages in again: trimming after every run cost 11-15% of a CPU worker's throughput on
# ordinary sentences (the engine on the campaign's sentences, 2 threads, 2026-12-05: 19.6 ->
# 16.6 audio s/s), and most of a worker's CPU when a GPU runs a window in 3 ms (docs/
# benchmarks.md, "One process, 1,000 listeners"). Once in 10 s while busy keeps that under 1%
# and still bounds what a hostile sentence leaves behind (docs/operations.md, "Memory stays
# flat"); the idle trim gives it all back as soon as the work stops.
TRIM_BUSY_S = 10.0
TRIM_IDLE_S = 1.0
T = TypeVar("T")


@dataclass(frozen=True)
class WorkResult:
    step: SynthesisStep
    compute_s: float             # wall time this step took on its worker (batch time shared)
    latent: Latent | None = None  # ENCODE: the sentence's front pass
    audio: np.ndarray | None = None  # DECODE: float32 mono window
    pcm_s16: bytes | None = None  # DECODE: the same as s16le PCM, made here, off the event loop
    error: str | None = None     # why it failed, for the log (never sent with text)
    batch: int = 1               # the steps of the run that shared compute_s (one engine run)

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass(frozen=True)
class WatchdogConfig:
    """Time limit of one run: max(floor_s, factor x predicted compute); factor 0 = no limit."""

    factor: float = 3.0
    floor_s: float = 10.0
    grace_s: float = 5.0  # after terminate, how long a worker has to come back

    def limit_s(self, predicted_compute_s: float) -> float | None:
        if self.factor <= 0:
            return None
        return max(self.floor_s, self.factor * predicted_compute_s)


class PoolEvent(enum.Enum):
    SERVING = "serving"          # the number of workers taking work changed (see `serving`)
    TERMINATED = "terminated"    # the watchdog terminated a run past its limit
    REPLACED = "replaced"        # a wedged or dead worker was abandoned and replaced


class _State(enum.Enum):
    WARMING = "warming"  # building its sessions (each warms itself: Voice.warmup)
    IDLE = "idle"
    BUSY = "busy"
    GONE = "gone"        # abandoned (wedged or dead); whatever it posts later is ignored


_Task = tuple[int, list[SynthesisStep], ort.RunOptions]  # (run number, steps, options)


@dataclass(eq=False)
class _Worker:
    name: str
    inbox: queue.SimpleQueue[_Task | None] = field(default_factory=queue.SimpleQueue)
    state: _State = _State.WARMING
    sessions: Mapping[str, Voice] = field(default_factory=dict)
    thread: threading.Thread | None = None
    # The run in progress (state BUSY): its steps, options, start (loop clock) and a number
    # that tells a stale timer or result from the current run's.
    steps: list[SynthesisStep] = field(default_factory=list)
    run_options: ort.RunOptions | None = None
    started_s: float = 0.0
    run_no: int = 0
    terminated: bool = False
    timer: asyncio.TimerHandle | None = None


class WorkerPool:
    """N threads; `dispatch` hands a batch to an idle one, `on_result` runs on the loop.

    Finished runs are handed to the loop together: every worker that finished since the loop
    last took results is idle again first, then `on_result` gets each result (a run's in
    order, runs in the order they finished), then `on_drained` once, where the caller hands
    the idle workers their next work.

    Create it on the loop thread, then `await pool.ready()`: each worker builds its own
    sessions in its own thread (worker 0 uses the loaded ones); `new_session` warms each on the
    shapes it will meet (Voice.warmup)."""

    def __init__(
        self,
        voices: Mapping[str, Voice],
        workers: int,
        loop: asyncio.AbstractEventLoop,
        on_result: Callable[[WorkResult], None],
        *,
        watchdog: WatchdogConfig | None = None,
        on_change: Callable[[PoolEvent], None] | None = None,
        on_drained: Callable[[], None] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self._loop = loop
        self._on_result = on_result
        self._on_change = on_change
        self._on_drained = on_drained
        # Runs finished and not yet taken by the loop (worker threads append, the loop takes
        # them all), and whether a take is already posted: one wake-up for all of them. The
        # flag: the run is over (False: an encode step's result ahead of the rest of its run).
        self._done_lock = threading.Lock()
        self._done: list[tuple[_Worker, int, list[WorkResult], bool]] = []
        self._take_posted = False
        self._voices = voices
        self._size = workers
        self.watchdog = watchdog or WatchdogConfig()
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._abandoned: list[_Worker] = []
        self._names = count()
        self._all_warm = asyncio.Event()
        self._closed = False
        keep_freed_memory_until_trim()  # the workers trim; every run reuses what they freed
        for index in range(workers):
            # Worker 0 uses the loaded sessions; the others get their own, so no two threads
            # share a session (measured: per-worker sessions give more throughput on CPU).
            self._start_worker(voices if index == 0 else None)

    # ------------------------------------------------------------ state, on the loop thread

    @property
    def size(self) -> int:
        """Workers the pool keeps (serving, warming or being replaced)."""
        return self._size

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def serving(self) -> int:
        """Workers taking work now: warm and not abandoned."""
        return sum(1 for w in self._workers if w.state in (_State.IDLE, _State.BUSY))

    @property
    def exhausted(self) -> bool:
        """No worker serving and none warming to replace one: every worker was abandoned past
        the limit of stuck threads (or failed to start). Only a restart serves again."""
        return not self._workers and not self._closed

    @property
    def abandoned_alive(self) -> int:
        """Abandoned threads still running (stuck in a call that never returned)."""
        self._abandoned = [w for w in self._abandoned
                           if w.thread is not None and w.thread.is_alive()]
        return len(self._abandoned)

    async def ready(self) -> None:
        """Wait until every worker has built and warmed its sessions."""
        await self._all_warm.wait()

    def dispatch(self, steps: Sequence[SynthesisStep]) -> None:
        """Hand a batch to an idle worker. Call only when `idle > 0`, on the loop thread."""
        worker = self._idle.pop()
        worker.state = _State.BUSY
        worker.steps = list(steps)
        worker.run_options = ort.RunOptions()  # fresh per run: terminate stops this run only
        worker.started_s = self._loop.time()
        worker.run_no += 1
        worker.terminated = False
        limit = self.watchdog.limit_s(sum(step.predicted_compute_s for step in steps))
        if limit is not None:
            worker.timer = self._loop.call_at(worker.started_s + limit, self._overdue, worker,
                                              worker.run_no, limit)
        worker.inbox.put((worker.run_no, worker.steps, worker.run_options))

    def _start_worker(self, sessions: Mapping[str, Voice] | None) -> _Worker:
        worker = _Worker(name=f"litestream-worker-{next(self._names)}")
        worker.thread = threading.Thread(target=self._run, args=(worker, sessions),
                                         name=worker.name, daemon=True)
        self._workers.append(worker)
        worker.thread.start()
        return worker

    def _warmed(self, worker: _Worker, sessions: Mapping[str, Voice]) -> None:
        if worker.state is not _State.WARMING:
            return
        worker.sessions = sessions
        worker.state = _State.IDLE
        self._idle.append(worker)
        log.info("%s warm and serving (%d of %d)", worker.name, self.serving, self._size)
        if all(w.state is not _State.WARMING for w in self._workers):
            self._all_warm.set()
        self._emit(PoolEvent.SERVING)

    def _finish_runs(self, done: list[tuple[_Worker, int, list[WorkResult], bool]]) -> None:
        """On the loop thread: finished runs (and encode steps finished ahead of the rest of
        their run), in the order they finished. Workers whose run is over are idle again
        before any result is handled, so `on_drained` can give each its next work at once."""
        results: list[WorkResult] = []
        for worker, run_no, run_results, over in done:
            if worker.state is _State.GONE or run_no != worker.run_no:
                continue  # abandoned: its steps were failed when it was; the thread exits
            if not over:  # the worker goes on with its run; these steps are no longer its
                taken = {id(result.step) for result in run_results}
                worker.steps = [step for step in worker.steps if id(step) not in taken]
                results += run_results
                continue
            if worker.timer is not None:
                worker.timer.cancel()
                worker.timer = None
            if worker.terminated:
                log.info("%s back after terminate, %.2f s after its run started", worker.name,
                         self._loop.time() - worker.started_s)
            worker.state = _State.IDLE
            worker.steps = []
            worker.run_options = None
            self._idle.append(worker)
            results += run_results
        for result in results:
            self._on_result(result)
        if results and self._on_drained is not None:
            self._on_drained()

    def _take_finished(self) -> None:
        """On the loop thread: take every run finished since the last take."""
        with self._done_lock:
            done, self._done = self._done, []
            self._take_posted = False
        self._finish_runs(done)

    def _post_finished(self, worker: _Worker, run_no: int, results: list[WorkResult],
                       over: bool = True) -> bool:
        """From a worker thread: hand a finished run (`over`), or results ahead of the rest
        of it, to the loop. Only the first post since the loop's last take posts a callback;
        later ones join it."""
        with self._done_lock:
            self._done.append((worker, run_no, results, over))
            if self._take_posted:
                return True
            self._take_posted = True
        return self._post(self._take_finished)

    def _overdue(self, worker: _Worker, run_no: int, limit_s: float) -> None:
        """The watchdog: the run is past its limit. Stop it; replace the worker if it does
        not come back within the grace."""
        if worker.state is not _State.BUSY or run_no != worker.run_no:
            return
        head = worker.steps[0]
        predicted = sum(step.predicted_compute_s for step in worker.steps)
        # The run's first step names the line; a batch's other streams are listed too.
        others = sorted({step.stream_id for step in worker.steps} - {head.stream_id})
        log.warning("%s step past its limit of %.2f s (predicted %.2f s, %d steps) on %s: "
                    "terminating the run", head.kind.value, limit_s, predicted,
                    len(worker.steps), worker.name,
                    extra={**stream_fields(head.stream_id), "seq": head.seq,
                           **({"other_sessions": ",".join(others)} if others else {})})
        worker.terminated = True
        if worker.run_options is not None:
            worker.run_options.terminate = True
        self._emit(PoolEvent.TERMINATED)
        worker.timer = self._loop.call_later(self.watchdog.grace_s, self._wedged, worker,
                                             run_no)

    def _wedged(self, worker: _Worker, run_no: int) -> None:
        if worker.state is not _State.BUSY or run_no != worker.run_no:
            return
        log.error("%s did not come back %.1f s after terminate: abandoning it", worker.name,
                  self.watchdog.grace_s)
        self._abandon(worker, "abandoned: did not stop after terminate")

    def _died(self, worker: _Worker, exc: BaseException) -> None:
        if worker.state is _State.GONE:
            return
        if worker.state is _State.WARMING:
            # Building or warming its sessions failed: a replacement would fail the same way.
            log.error("%s failed to start: %r; serving with %d workers", worker.name, exc,
                      self.serving)
            worker.state = _State.GONE
            self._workers.remove(worker)
            if all(w.state is not _State.WARMING for w in self._workers):
                self._all_warm.set()
            self._emit(PoolEvent.SERVING)
            return
        log.error("%s died: %r", worker.name, exc)
        self._abandon(worker, f"worker died: {type(exc).__name__}")

    def _abandon(self, worker: _Worker, why: str) -> None:
        """Fail what the worker holds, and start a replacement (new thread, new sessions)."""
        if worker.timer is not None:
            worker.timer.cancel()
            worker.timer = None
        if worker in self._idle:
            self._idle.remove(worker)
        worker.state = _State.GONE
        worker.inbox.put(None)  # should it ever come back, it exits
        self._workers.remove(worker)
        self._abandoned.append(worker)
        steps, worker.steps = worker.steps, []
        elapsed = self._loop.time() - worker.started_s
        if self._closed:
            pass
        elif self.abandoned_alive > self._size:
            # Each stuck thread holds a session's memory: past this many, stop replacing and
            # let readiness (capacity follows `serving`) take the pod out of rotation.
            log.error("%d abandoned workers still stuck: not replacing %s", self.abandoned_alive,
                      worker.name)
        else:
            # The prototypes' sessions may be the stuck ones: new_session only reads the
            # shared model bytes, so building from them is safe.
            self._start_worker(None)
            self._emit(PoolEvent.REPLACED)
        self._emit(PoolEvent.SERVING)
        for step in steps:
            self._on_result(WorkResult(step, elapsed, error=why))
        if steps and self._on_drained is not None:
            self._on_drained()

    def _emit(self, event: PoolEvent) -> None:
        if self._on_change is not None:
            self._on_change(event)

    def _post(self, callback: Callable[..., None], *args: object) -> bool:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # loop closed during shutdown
            return False
        return True

    # ------------------------------------------------------------ worker threads

    def _run(self, worker: _Worker, prototypes: Mapping[str, Voice] | None) -> None:
        name_native_thread(f"ls-infer-{worker.name.rsplit('-', 1)[-1]}")
        try:
            sessions = (dict(prototypes) if prototypes is not None
                        else {k: v.new_session() for k, v in self._voices.items()})
            if not self._post(self._warmed, worker, sessions):
                return
            trimmed_at = time.monotonic()
            untrimmed = False  # a run's garbage is not yet given back
            while True:
                try:
                    task = worker.inbox.get(timeout=TRIM_IDLE_S if untrimmed else None)
                except queue.Empty:  # idle: give the last runs' memory back now
                    release_memory()
                    trimmed_at, untrimmed = time.monotonic(), False
                    continue
                if task is None:
                    return
                run_no, steps, run_options = task

                def ahead(result: WorkResult, run_no: int = run_no) -> None:
                    self._post_finished(worker, run_no, [result], over=False)

                results = run_steps(sessions, steps, run_options, ahead=ahead)
                untrimmed = True
                if time.monotonic() - trimmed_at >= TRIM_BUSY_S:
                    release_memory()
                    trimmed_at, untrimmed = time.monotonic(), False
                if not self._post_finished(worker, run_no, results):
                    return
        except BaseException as exc:  # the thread dies: say so, so the pool replaces it
            self._post(self._died, worker, exc)

    def on_every_idle_worker(self, run: Callable[[Mapping[str, Voice]], T]) -> list[T]:
        """Call `run` with each serving worker's own sessions, on threads of its own, all at
        once, as under full load (blocking; call before any step is dispatched). Start-up
        calibration (calibration.py) measures this way."""
        results: list[T] = []
        lock = threading.Lock()

        def one(sessions: Mapping[str, Voice]) -> None:
            found = run(sessions)
            with lock:
                results.append(found)

        threads = [threading.Thread(target=one, args=(w.sessions,)) for w in list(self._workers)
                   if w.state is _State.IDLE]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    def close(self, timeout_s: float = 5.0) -> None:
        self._closed = True
        workers = [*self._workers, *self._abandoned]
        for worker in workers:
            worker.inbox.put(None)
        deadline = time.monotonic() + timeout_s
        for worker in workers:
            if worker.thread is not None:
                worker.thread.join(max(0.0, deadline - time.monotonic()))


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except (OSError, TypeError):
        return None


_libc = _load_libc()


def _load_malloc_trim() -> Callable[[int], int] | None:
    trim = getattr(_libc, "malloc_trim", None)  # glibc only
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_malloc_trim = _load_malloc_trim()

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
# Freed memory at the top of a heap is kept up to this before free() gives it back: in effect
# never, as `release_memory` gives it all back on the workers' own schedule.
_KEEP_FREED_BYTES = 1 << 30
# glibc's own environment for its malloc (mallopt(3)): an operator who set one tunes it himself.
_GLIBC_MALLOC_ENV = ("MALLOC_ARENA_MAX", "MALLOC_ARENA_TEST", "MALLOC_MMAP_MAX_",
                     "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_TRIM_THRESHOLD_")
_malloc_tuned = False


def malloc_set_by_operator(environ: Mapping[str, str]) -> str | None:
    """The name of the first glibc malloc setting in `environ` (its MALLOC_* variables, or a
    ``glibc.malloc.`` tunable in GLIBC_TUNABLES), None when there is none."""
    for name in _GLIBC_MALLOC_ENV:
        if name in environ:
            return name
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES"
    return None


def keep_freed_memory_until_trim(environ: Mapping[str, str] | None = None) -> None:
    """Make glibc keep freed memory for the next run instead of giving it back at once
    (process-wide, once; a no-op without glibc): one arena for every thread, no mmap for large
    blocks, no trim on free. ``release_memory`` still gives it all back, every `TRIM_BUSY_S`
    while busy and `TRIM_IDLE_S` after. Call it before threads start: a thread that has
    allocated keeps the arena it had.

    By default glibc serves a block over its mmap threshold (at most 32 MB) with a fresh mmap
    and unmaps it on free, gives back the top of a heap on free, and gives each thread an arena
    of heaps of at most 64 MB, which it unmaps as they empty: a run whose tensors need such
    blocks faults every page of them in again, every run. A 256-frame decode window (the
    CPU's longest) faulted 13,441 pages a run, 21-26 ms of kernel time in 140 ms. Two workers
    decoding windows of 32-256 frames (docs/benchmarks.md, "Page faults in every long window"):
    1.8 million faults in 12 s and 3,520-3,657 frames a second by default; with mmap off and no
    trim on free but an arena per thread, 0.8 million and 3,750-3,882; with one arena as
    well, 11,000-14,000 and 4,055-4,271 (+15%), at a lower peak RSS (549-560 MB against
    568-581) and less after a trim (309 MB against 360-419). One arena costs a lock per large
    allocation; small ones come from each thread's cache without it.

    When the environment (`environ`, default os.environ) already sets glibc's malloc
    (``MALLOC_ARENA_MAX`` and the like, or GLIBC_TUNABLES), the operator's settings stand and
    this changes nothing: the way to turn it off, or to tune it otherwise."""
    global _malloc_tuned
    mallopt = getattr(_libc, "mallopt", None)  # glibc only
    if _malloc_tuned or mallopt is None:
        return
    _malloc_tuned = True  # decided once, either way
    operator = malloc_set_by_operator(os.environ if environ is None else environ)
    if operator is not None:
        log.info("malloc: %s is set, so glibc's settings are left as the environment gives them"
                 " (runs may fault their memory in again)", operator)
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    for param, value in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0),
                         (_M_TRIM_THRESHOLD, _KEEP_FREED_BYTES)):
        if mallopt(param, value) != 1:
            log.warning("mallopt(%d, %d) refused: runs fault their memory in again", param,
                        value)


_prctl: Callable[..., int] | None = getattr(_libc, "prctl", None)


def name_native_thread(name: str) -> None:
    """Give the calling thread an OS-visible name (Linux; at most 15 bytes), so `top -H`,
    /proc/PID/task/TID/comm and the load generator tell inference threads from the event loop
    (Python before 3.14 names only its own Thread objects)."""
    if _prctl is not None:
        _prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def release_memory() -> None:
    """Give the freed heap back to the OS (glibc; a no-op elsewhere). Workers call it at most
    every `TRIM_BUSY_S` while busy, and once `TRIM_IDLE_S` after going idle.

    With the ORT arena off, a long sentence's tensors are freed to malloc, but glibc keeps most
    of a fragmented heap: RSS still grew 250 -> 890 MB over hostile traffic. `malloc_trim(0)`
    returns free pages from every arena and kept it flat (docs/operations.md); ctypes releases
    the GIL while it runs, so other threads go on."""
    if _malloc_trim is not None:
        _malloc_trim(0)


def run_steps(voices: Mapping[str, Voice], steps: list[SynthesisStep],
              run_options: Any = None,
              ahead: Callable[[WorkResult], None] | None = None) -> list[WorkResult]:
    """Run one homogeneous batch: encode steps one by one (each phonemized first), or as one
    `encode_batch` where the voice batches its fronts (a GPU), decode windows as one
    `decode_batch`. A failure fails only its own step. `run_options` (an `ort.RunOptions`)
    goes to every engine run: the watchdog may terminate it.

    `ahead`, when given, takes each encode step's result as soon as it is done, all but the
    last (which is returned): nothing gains from waiting for the rest of the batch, and a
    burst's first encode steps ran in batches of 8, each member's first window held back by
    the seven other front passes."""
    voice = voices.get(steps[0].voice)
    if voice is None:
        return [WorkResult(step, 0.0, error=f"voice {step.voice!r} not loaded") for step in steps]
    if steps[0].kind is StepKind.ENCODE and len(steps) > 1 and voice.batches_fronts:
        return _encode_batch(voice, steps, run_options)
    if steps[0].kind is StepKind.ENCODE:
        results: list[WorkResult] = []
        for step in steps[:-1]:
            result = _encode(voice, step, run_options)
            if ahead is not None:
                ahead(result)
            else:
                results.append(result)
        return [*results, _encode(voice, steps[-1], run_options)]
    if len(steps) == 1:
        return [_decode(voice, steps[0], run_options)]
    started = time.perf_counter()
    try:
        audios = voice.decode_batch([_window(step) for step in steps], run_options=run_options)
    except Exception:  # retry one by one so one bad window fails alone (fast if terminated)
        return [_decode(voice, step, run_options) for step in steps]
    share = (time.perf_counter() - started) / len(steps)
    return [WorkResult(step, share, audio=audio, pcm_s16=protocol.to_pcm(audio, "s16le"),
                       batch=len(steps))
            for step, audio in zip(steps, audios, strict=True)]


def _window(step: SynthesisStep) -> DecodeWindow:
    if not isinstance(step.latent, Latent):
        raise TypeError(f"decode step of seq {step.seq} has no latent")
    return DecodeWindow(step.latent, step.start_frame, step.frames)


def _phonemize(voice: Voice, step: SynthesisStep) -> Phonemes | list[int]:
    """The step's ids, with its words' where someone may see their times (SynthesisStep.words)."""
    return voice.phonemes(step.text) if step.words else voice.phoneme_ids(step.text)


def _ids(found: Phonemes | list[int]) -> list[int]:
    return found.ids if isinstance(found, Phonemes) else found


def _with_words(latent: Latent, found: Phonemes | list[int]) -> Latent:
    """The latent with its words' times, when they were asked for: they ride to the chunk's
    plan, and with its last decode window to the sentence cache."""
    if not isinstance(found, Phonemes):
        return latent
    return dataclasses.replace(latent, words=timed(found, latent))


def _encode(voice: Voice, step: SynthesisStep, run_options: Any) -> WorkResult:
    started = time.perf_counter()
    try:
        found = _phonemize(voice, step)
        latent = _with_words(voice.encode(_ids(found), step.speed, run_options=run_options),
                             found)
    except Exception as exc:  # one bad sentence must not kill the worker or other streams
        return _failed(step, started, exc, run_options)
    return WorkResult(step, time.perf_counter() - started, latent=latent)


def _encode_batch(voice: Voice, steps: list[SynthesisStep], run_options: Any) -> list[WorkResult]:
    """Encode steps of one speed as one `encode_batch` run, each phonemized first. A sentence
    that fails to phonemize fails alone; if the run fails, each runs alone, so that one bad
    sentence fails only itself."""
    started = time.perf_counter()
    results: dict[int, WorkResult] = {}
    phonemes: dict[int, Phonemes | list[int]] = {}
    for index, step in enumerate(steps):
        try:
            phonemes[index] = _phonemize(voice, step)
        except Exception as exc:
            results[index] = _failed(step, started, exc, run_options)
    order = sorted(phonemes)
    if order:
        try:
            latents = voice.encode_batch([_ids(phonemes[index]) for index in order],
                                         steps[0].speed, run_options=run_options)
        except Exception as exc:
            if run_options is not None and getattr(run_options, "terminate", False):
                return [results.get(index) or _failed(step, started, exc, run_options)
                        for index, step in enumerate(steps)]
            return [results.get(index) or _encode(voice, step, run_options)
                    for index, step in enumerate(steps)]
        # The run's time over the steps it ran (their WorkResult.batch), as a decode batch's.
        share = (time.perf_counter() - started) / len(order)
        for index, latent in zip(order, latents, strict=True):
            results[index] = WorkResult(steps[index], share,
                                        latent=_with_words(latent, phonemes[index]),
                                        batch=len(order))
    return [results[index] for index in range(len(steps))]


def _decode(voice: Voice, step: SynthesisStep, run_options: Any) -> WorkResult:
    started = time.perf_counter()
    try:
        window = _window(step)
        audio = voice.decode(window.latent, window.start_frame, window.frames,
                             run_options=run_options)
    except Exception as exc:
        return _failed(step, started, exc, run_options)
    return WorkResult(step, time.perf_counter() - started, audio=audio,
                      pcm_s16=protocol.to_pcm(audio, "s16le"))


def _failed(step: SynthesisStep, started: float, exc: Exception,
            run_options: Any = None) -> WorkResult:
    terminated = run_options is not None and bool(getattr(run_options, "terminate", False))
    log.warning("%s step failed: %s", step.kind.value,
                TERMINATED if terminated else type(exc).__name__,
                extra={**stream_fields(step.stream_id), "seq": step.seq})
    error = TERMINATED if terminated else (repr(exc) or "failed")
    return WorkResult(step, time.perf_counter() - started, error=error)
