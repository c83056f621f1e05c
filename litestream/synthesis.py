"""The one place the server talks to the scheduler and the inference workers.

    socket -> StreamSession -> StreamLink.submit -> Scheduler -> Synthesis.dispatch -> workers
    workers -> Synthesis.on_result -> Scheduler.complete/fail -> session inputs -> socket

Sessions ask for work through `StreamLink`, one per stream (it implements
`session.SynthesisLink`); `Synthesis` hands work to idle workers as late as possible and turns
each `WorkResult` back into session inputs (`ChunkPlanned` + `ChunkAudio`, or `ChunkFailed`).
Everything here calls today's scheduler API (submit, next_jobs, complete, fail, clear,
close_stream, audio_sent, admit); when the step API lands (INTERFACES.md section 2) this module
is what changes, and nothing in the per-stream rules.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence

from litestream.config import Config
from litestream.metrics import Metrics
from litestream.scheduler import (
    Admission,
    ChunkJob,
    ChunkShape,
    Priority,
    Scheduler,
    SchedulerConfig,
)
from litestream.session import ChunkAudio, ChunkFailed, ChunkPlanned, SynthesisResult
from litestream.workers import WorkerPool, WorkResult

log = logging.getLogger("litestream.synthesis")

# Where a stream's results go: the server feeds them to that stream's session.
Deliver = Callable[[str, Sequence[SynthesisResult]], None]


def scheduler_config(config: Config) -> SchedulerConfig:
    """The scheduler's view of the settings: every value comes from its Config field."""
    return SchedulerConfig(
        first_audio_target_s=config.first_audio_target_s,
        first_chunk_slack_s=config.first_chunk_slack_s,
        jitter_s=config.jitter_s,
        lookahead_s=config.lookahead_s,
        max_lookahead_s=config.max_lookahead_s,
        target_utilization=config.target_utilization,
        max_streams=config.max_streams,
    )


class StreamLink:
    """One stream's port to the scheduler (a `session.SynthesisLink`).

    The session numbers its sentences; the scheduler numbers its jobs. Both count from 0 per
    stream and never reuse a number, but the link keeps the mapping rather than rely on it.
    """

    def __init__(self, scheduler: Scheduler, stream_id: str, metrics: Metrics) -> None:
        self._scheduler = scheduler
        self.stream_id = stream_id
        self._metrics = metrics
        self._jobs: dict[int, ChunkJob] = {}  # session seq -> its job, until its audio goes out
        self._seqs: dict[int, int] = {}  # job seq -> session seq, until its result comes back
        self.stalls = 0  # the scheduler's estimate of listener underruns

    def chunk_shape(self, now: float, voice: str) -> ChunkShape:
        return self._scheduler.chunk_shape(now, voice)

    def submit(self, seq: int, text: str, *, speed: float, voice: str, now: float) -> None:
        job = self._scheduler.submit(self.stream_id, text, speed=speed, voice=voice, now=now)
        self._jobs[seq] = job
        self._seqs[job.seq] = seq

    def clear(self, now: float) -> None:
        self._scheduler.clear(self.stream_id, now)
        self._jobs.clear()
        self._seqs.clear()

    def set_priority(self, priority: str, now: float) -> None:
        # Re-opening a stream in the scheduler changes its class and keeps its queue.
        self._scheduler.open_stream(self.stream_id, Priority(priority), now)

    def audio_queued(self, seq: int, audio_s: float, nbytes: int, now: float) -> None:
        # The scheduler owns the playback clock and the listener's stall estimate.
        before_s = self._scheduler.underrun_s(self.stream_id)
        self._scheduler.audio_sent(self.stream_id, audio_s, now)
        gap_s = self._scheduler.underrun_s(self.stream_id) - before_s
        if gap_s > 0:
            self.stalls += 1
            self._metrics.stall(gap_s)
        job = self._jobs.pop(seq, None)
        if job is None:  # a later piece of a sentence already counted
            self._metrics.bytes_out(nbytes)
            return
        # Slack at send time: how long before its deadline this chunk's audio went out.
        self._metrics.chunk_sent(job.deadline_s - now, audio_s, nbytes)

    def underrun_s(self) -> float:
        return self._scheduler.underrun_s(self.stream_id)

    def take_result(self, job: ChunkJob, failed: bool) -> int | None:
        """The session seq a finished job belongs to; None if it was cleared meanwhile."""
        seq = self._seqs.pop(job.seq, None)
        if failed and seq is not None:
            self._jobs.pop(seq, None)
        return seq


class Synthesis:
    """The scheduler, the worker pool and the dispatch loop between them. Loop thread only."""

    def __init__(self, config: Config, sample_rates: Mapping[str, int], metrics: Metrics,
                 max_batch: int) -> None:
        self.scheduler = Scheduler(scheduler_config(config), workers=config.workers)
        self._rates = sample_rates
        self._metrics = metrics
        self._max_batch = max_batch
        self._links: dict[str, StreamLink] = {}
        self._pool: WorkerPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.TimerHandle | None = None
        self._deliver: Deliver | None = None

    def start(self, pool: WorkerPool, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self._pool, self._loop, self._deliver = pool, loop, deliver

    def take_pool(self) -> WorkerPool | None:
        """Stop dispatching; the caller closes the pool it gets back (off the loop)."""
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None
        pool, self._pool = self._pool, None
        return pool

    # ------------------------------------------------------------ admission and streams

    def admit(self, now: float) -> Admission:
        return self.scheduler.admit(now)

    def has_capacity(self, now: float) -> bool:
        return self.scheduler.has_capacity(now)

    def open_stream(self, stream_id: str, priority: str, now: float) -> None:
        """At handshake acceptance: in a burst, each admission test must count the ones
        accepted just before it."""
        self.scheduler.open_stream(stream_id, Priority(priority), now)

    def link(self, stream_id: str) -> StreamLink:
        link = self._links.get(stream_id)
        if link is None:
            link = self._links[stream_id] = StreamLink(self.scheduler, stream_id, self._metrics)
        return link

    def close_stream(self, stream_id: str, now: float) -> int:
        """Forget the stream; returns how many queued chunks were dropped."""
        self._links.pop(stream_id, None)
        return self.scheduler.close_stream(stream_id, now)

    def calibrate(self, voice: str, *, audio_per_char_s: float, compute_per_audio_s: float) -> None:
        self.scheduler.model.calibrate(voice, audio_per_char_s=audio_per_char_s,
                                       compute_per_audio_s=compute_per_audio_s)

    def refresh_gauges(self, now: float) -> None:
        self._metrics.set_queue(self.scheduler.stats().queued_jobs, self.scheduler.load(now))

    # ------------------------------------------------------------ the dispatch loop

    def _now(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()

    def dispatch(self) -> None:
        """Give every idle worker the most urgent work, as late as possible."""
        pool = self._pool
        if pool is None:
            return
        now = self._now()
        while pool.idle:
            jobs = self.scheduler.next_jobs(now, self._max_batch)
            if not jobs:
                break
            for group in _same_voice_and_speed(jobs):
                if pool.idle:
                    pool.dispatch(group)
                else:  # cannot happen with max_jobs=1; keeps a mixed batch honest
                    for job in group:
                        self.scheduler.fail(job, now)
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None
        if pool.idle and self._loop is not None:
            wake = self.scheduler.next_wakeup_s(now)
            if wake is not None:
                self._wakeup = self._loop.call_at(max(wake, now + 0.001), self.dispatch)

    def on_result(self, result: WorkResult) -> None:
        """A worker finished a job (on the loop thread): tell the scheduler, then the session."""
        now = self._now()
        job = result.job
        link = self._links.get(job.stream_id)
        failed = result.audio is None
        seq = link.take_result(job, failed) if link is not None else None
        inputs: list[SynthesisResult] = []
        if result.audio is None:
            self.scheduler.fail(job, now)
            log.warning("session=%s seq=%d synthesis failed: %s", job.stream_id, job.seq,
                        result.error or "no reason given")
            if seq is not None:
                inputs.append(ChunkFailed(seq, result.error or "synthesis failed"))
        else:
            audio_s = len(result.audio) / self._rates[job.voice]
            keep = self.scheduler.complete(job, audio_s=audio_s, compute_s=result.compute_s,
                                           now=now)
            self._metrics.synthesized(result.compute_s, audio_s)
            if job.overrun:
                log.warning("session=%s seq=%d took %.2f s, predicted %.2f s", job.stream_id,
                            job.seq, result.compute_s, job.predicted_compute_s)
            if keep and seq is not None:
                # Whole-chunk synthesis: the plan and all of the audio arrive together.
                inputs.append(ChunkPlanned(seq, job.text, len(result.audio)))
                inputs.append(ChunkAudio(seq, result.audio, last=True))
        if inputs and self._deliver is not None:
            self._deliver(job.stream_id, inputs)
        self.dispatch()


def _same_voice_and_speed(jobs: Sequence[ChunkJob]) -> list[list[ChunkJob]]:
    """One session.run takes one voice at one speed."""
    groups: dict[tuple[str, float], list[ChunkJob]] = {}
    for job in jobs:
        groups.setdefault((job.voice, job.speed), []).append(job)
    return list(groups.values())
