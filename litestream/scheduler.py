"""Deadlines, order, fairness, lookahead, admission for text chunks. Pure: the caller passes `now`.

# The core idea: a stream is its sent audio racing its listener's playback clock; the next chunk
# is due before the listener runs dry.

Everything here serves that (protocol-v1: Timing promise). The event loop owns one `Scheduler`;
nothing in this module reads a clock, sleeps, logs or locks: counters and per-job results are
returned for the caller to log and export.

Deadlines. A stream's playback clock starts at its first `audio_sent`; buffered audio is
`sent - (now - playback_start)`, so the listener runs dry at `playback_start + sent`. A queued chunk
is due when the audio ahead of it (sent, plus completed-not-sent, plus the predicted audio of its
in-flight and earlier queued chunks) runs out, less `jitter_s`. Before playback starts, the first
chunk is due at its text's arrival plus `first_audio_target_s`, later ones at that deadline plus the
predicted audio before them, less jitter. A stream whose buffer drained while it had no work is
idle, not stalled: its next text starts a fresh "first chunk" (the player is waiting on text).

Order. Latest start time (deadline - predicted compute, since a chunk cannot be paused), shifted
by priority class; near-ties (within `tie_window_s`) go to the stream with the least attained
service (compute seconds), VTC style. A heap keyed per stream by its head chunk holds the order:
every chunk of a stream moves together when its playback state changes, and stale entries are
skipped by a version counter, so a decision is O(log streams).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, replace
from enum import StrEnum
from itertools import count

from litestream.costmodel import CostModel, CostPriors

__all__ = [
    "Admission",
    "ChunkJob",
    "ChunkShape",
    "Priority",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerStats",
]


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


@dataclass(frozen=True)
class SchedulerConfig:
    """Every scheduling knob, each with its unit in its name. Defaults fit the 2-core CPU box."""

    # protocol-v1: Timing promise. First audio of a stream is due this long after its text.
    first_audio_target_s: float = 0.25
    # A first chunk is sized to the target, but ordered as due this much later: a listener who
    # has not started yet can wait a little longer, one who is playing would hear a stall
    # (Andes: lateness hurts a started stream most). Bounded, so first audio stays bounded.
    first_chunk_slack_s: float = 0.5
    # Audio must arrive this long before the listener would run dry (network, frame pacing).
    jitter_s: float = 0.15
    # Near-ties in latest start go to the least attained service; at most this many are looked at.
    tie_window_s: float = 0.05
    tie_candidates: int = 8
    # Priority classes shift deadlines. Bounded shifts mean no class starves: a low chunk past its
    # deadline still beats normal chunks due more than `low_shift_s` after it.
    high_shift_s: float = -0.2
    normal_shift_s: float = 0.0
    low_shift_s: float = 0.5
    # Unplayed audio beyond `lookahead_s` buys nothing and is lost at barge-in: such a stream waits
    # unless a worker would otherwise idle; beyond `max_lookahead_s` it waits regardless.
    lookahead_s: float = 4.0
    max_lookahead_s: float = 20.0
    # The segmenter's first chunk is sized so its synthesis fits the first-audio target after
    # the urgent work already queued (see `first_chunk_chars`); this margin is kept for
    # phonemization, frame sending and the network.
    first_chunk_margin_s: float = 0.04
    min_first_chunk_chars: int = 12
    max_first_chunk_chars: int = 120
    # After the first chunk, each chunk may be `chunk_growth` x the last (see `chunk_growth`):
    # about 1/utilization, times this headroom, within these bounds.
    growth_headroom: float = 0.85
    min_chunk_growth: float = 1.15
    max_chunk_growth: float = 4.0
    # Admission (acceptance test): steady demand in worker units must stay under this share.
    target_utilization: float = 0.8
    # Admission: refuse when urgent work is already this far behind the first-audio target.
    admit_backlog_s: float = 1.0
    admit_first_chunk_chars: int = 40  # assumed first chunk of a stream being admitted
    open_grace_s: float = 1.0  # a stream opened this recently, without text yet, counts as active
    max_streams: int = 0  # 0 = unlimited
    # Batching (GPU): candidates within `batch_window_s` of the most urgent job's latest start.
    batch_window_s: float = 0.05
    batch_candidates: int = 32
    # Predicted time of a batch: its longest member plus this share of the others (padding, etc.).
    batch_marginal_cost: float = 0.25
    # A batch whose seed is already late may still grow to this multiple of the seed's time:
    # catching up needs throughput.
    batch_late_growth: float = 1.5
    # A job is an overrun when it took > factor x its prediction and more than min seconds.
    overrun_factor: float = 3.0
    overrun_min_s: float = 0.5
    # Cost model priors (see litestream/costmodel.py), per voice, learned by EWMA in complete().
    audio_per_char_s: float = 0.065
    compute_per_audio_s: float = 0.072
    chunk_overhead_s: float = 0.005
    cost_ewma_alpha: float = 0.2

    def shift_s(self, priority: Priority) -> float:
        if priority is Priority.HIGH:
            return self.high_shift_s
        if priority is Priority.LOW:
            return self.low_shift_s
        return self.normal_shift_s


@dataclass(slots=True)
class ChunkJob:
    """One unit of synthesis work. Prediction and deadline fields are refreshed at pick time."""

    stream_id: str
    seq: int  # per-stream, from 0, never reused (not even across clear)
    text: str
    speed: float  # 0.5..2.0, divides the audio length
    voice: str
    chars: int  # len(text)
    predicted_audio_s: float  # audio seconds this chunk should make
    predicted_compute_s: float  # synthesis seconds on one worker
    latest_start_s: float  # deadline_s - predicted_compute_s, at pick time
    deadline_s: float  # when the audio must be sent (listener runs dry, less jitter)
    priority: Priority = Priority.NORMAL
    submitted_s: float = 0.0  # when the text was submitted (caller's clock)
    dispatched_s: float | None = None  # when next_jobs handed it out
    # Set by complete(): deadline_s - completion time (negative = late), for the slack histogram.
    slack_s: float | None = None
    overrun: bool = False  # set by complete(): ran far past its prediction; the caller logs it


@dataclass(frozen=True)
class ChunkShape:
    """How the segmenter should cut a stream's text (scheduler-notes: the burst problem)."""

    first_chunk_chars: int  # the first chunk's limit, characters
    chunk_growth: float  # each later chunk may be this many times the last (less the margin)
    ramp_margin_chars: float  # the jitter budget in characters of speech


@dataclass(frozen=True)
class Admission:
    accepted: bool
    retry_after_s: float  # 0 when accepted; else >= 1 s, the estimated backlog drain time
    reason: str  # "" or "capacity" / "streams"


@dataclass
class SchedulerStats:
    """Counters (since start) and gauges (now) for metrics. Times in seconds."""

    queued_jobs: int = 0  # gauge: chunks waiting
    in_flight: int = 0  # gauge: chunks handed out, not yet complete/fail (cancelled ones excluded)
    open_streams: int = 0  # gauge
    active_streams: int = 0  # gauge: streams with queued or in-flight work
    held_streams: int = 0  # gauge: backlogged streams held back by the lookahead cap
    dispatched: int = 0  # jobs handed out by next_jobs
    completed: int = 0  # complete() calls
    failed: int = 0  # fail() calls
    deadline_misses: int = 0  # jobs handed out after their deadline
    late_completions: int = 0  # jobs completed after their deadline (negative slack)
    overruns: int = 0  # jobs that ran > overrun_factor x their prediction (and > overrun_min_s)
    refused: int = 0  # admit() refusals
    lookahead_fallbacks: int = 0  # held-back jobs handed out because a worker would idle
    cleared_chunks: int = 0  # queued chunks dropped by clear/close
    cancelled_in_flight: int = 0  # in-flight jobs whose audio will be dropped
    dropped_results: int = 0  # complete() calls answered False
    stalls: int = 0  # estimated listener underruns (audio sent after the buffer ran out)
    stall_s: float = 0.0  # their total length
    batches: int = 0  # next_jobs calls that returned more than one job
    batched_jobs: int = 0  # jobs in those batches
    service_spread_s: float = 0.0  # gauge: max - min attained service among backlogged streams


class _Stream:
    """Per-stream state. Heap entries name a stream and its `version`; any change bumps it."""

    __slots__ = (
        "attained_s",
        "closed",
        "deadline_s",
        "eligible_s",
        "first_deadline_s",
        "id",
        "in_flight",
        "inflight_audio_s",
        "next_seq",
        "opened_s",
        "playback_start_s",
        "priority",
        "queue",
        "queued_audio_s",
        "queued_compute_s",
        "rank_s",
        "ready_audio_s",
        "sent_audio_s",
        "shift_s",
        "stall_s",
        "submitted",
        "version",
        "voice",
    )

    def __init__(self, stream_id: str, priority: Priority, shift_s: float, now: float) -> None:
        self.id = stream_id
        self.priority = priority
        self.shift_s = shift_s
        self.opened_s = now
        self.queue: deque[ChunkJob] = deque()
        self.in_flight: dict[int, ChunkJob] = {}
        self.queued_audio_s = 0.0  # predicted audio of queued chunks
        self.queued_compute_s = 0.0  # predicted compute of queued chunks
        self.inflight_audio_s = 0.0  # predicted audio of in-flight chunks
        self.ready_audio_s = 0.0  # audio completed but not yet reported sent
        self.playback_start_s: float | None = None
        self.sent_audio_s = 0.0  # since playback_start_s
        self.first_deadline_s: float | None = None  # before playback: the first chunk's deadline
        self.next_seq = 0
        self.attained_s = 0.0  # VTC counter: compute seconds charged to this stream
        self.version = 0
        self.closed = False
        self.submitted = False
        self.voice = ""  # last voice used: admission prices the stream at this voice's RTF
        self.stall_s = 0.0
        # Key of the head chunk, valid for the current version.
        self.deadline_s = 0.0
        self.rank_s = 0.0
        self.eligible_s = 0.0


# (key, tiebreak, version, stream); the tiebreak is unique so streams are never compared.
_Entry = tuple[float, int, int, _Stream]


class Scheduler:
    """Deadline-ordered, fair chunk scheduler for `workers` identical workers. Not thread-safe."""

    def __init__(self, config: SchedulerConfig, workers: int) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.config = config
        self.workers = workers
        self.serving = workers  # workers taking work now (see set_workers)
        self.model = CostModel(
            CostPriors(
                audio_per_char_s=config.audio_per_char_s,
                compute_per_audio_s=config.compute_per_audio_s,
                overhead_s=config.chunk_overhead_s,
                ewma_alpha=config.cost_ewma_alpha,
            )
        )
        self._streams: dict[str, _Stream] = {}
        self._backlogged: set[_Stream] = set()  # streams with queued chunks
        self._ready: list[_Entry] = []  # eligible heads, keyed by rank (shifted latest start)
        self._held: list[_Entry] = []  # heads over the lookahead cap, keyed by eligible time
        self._service: list[tuple[float, int, _Stream]] = []  # backlogged, by attained service
        self._tiebreak = count()
        self._queued = 0
        self._in_flight = 0
        self._epoch = 0  # bumped on every change; keys the urgent-compute cache
        self._urgent_cache: tuple[float, int, float] = (-1.0, -1, 0.0)
        self._stats = SchedulerStats()
        self._first_due_s = config.first_audio_target_s + config.first_chunk_slack_s
        # Streams opened but without text yet (insertion order = opening order). In a burst
        # their first chunks are about to arrive: they count as urgent work (_fresh_compute).
        self._fresh: dict[str, float] = {}

    # ---- streams -------------------------------------------------------------------------

    def admit(self, now: float) -> Admission:
        """Acceptance test for a NEW stream: would it make urgent chunks late?

        Refused (reason "capacity") when either
        - steady demand: the sum of the RTF shares of active streams plus the new one exceeds
          `workers * target_utilization` (EDF under overload makes every chunk late: the domino
          effect); open-but-idle streams cost nothing;
        - backlog: the queued compute due within `first_audio_target_s`, plus the new stream's
          first chunk, divided by workers, is more than `first_audio_target_s + admit_backlog_s`
          (urgent work is already that far behind: a new stream would wait at least that long).
        Reason "streams" when `max_streams` streams are open. retry_after_s is the time to drain
        the whole queued backlog on all workers, at least 1 s.
        """
        admission = self._admission(now)
        if not admission.accepted:
            self._stats.refused += 1
        return admission

    def _admission(self, now: float) -> Admission:
        cfg = self.config
        if self.serving == 0:
            return self._refuse("capacity")
        if cfg.max_streams and len(self._streams) >= cfg.max_streams:
            return self._refuse("streams")
        demand, new_rtf = self._demand(now)
        if demand + new_rtf > self.workers * cfg.target_utilization:
            return self._refuse("capacity")
        first_compute = cfg.chunk_overhead_s + new_rtf * (
            cfg.admit_first_chunk_chars * cfg.audio_per_char_s
        )
        urgent = self._urgent_compute(now) + self._fresh_compute(now)
        if (urgent + first_compute) / self.workers > cfg.first_audio_target_s + cfg.admit_backlog_s:
            return self._refuse("capacity")
        return Admission(accepted=True, retry_after_s=0.0, reason="")

    def load(self, now: float) -> float:
        """Predicted compute demand of active streams over capacity: 1.0 = every worker busy.

        The per-pod signal for autoscaling (litestream_scheduler_load)."""
        return self._demand(now)[0] / self.workers

    def _demand(self, now: float) -> tuple[float, float]:
        """(summed RTF share of active streams, the price of a new stream in the same units)."""
        demand = 0.0
        rtf_sum = 0.0
        known = 0
        for s in self._streams.values():
            if s.submitted:
                rtf_sum += self.model.rtf(s.voice)
                known += 1
            if self._is_active(s, now):
                demand += self.model.rtf(s.voice)
        # A new stream's voice is not known yet: price it at the mean RTF of streams seen so far.
        new_rtf = rtf_sum / known if known else self.model.rtf("")
        return demand, new_rtf

    def set_workers(self, n: int, now: float) -> None:
        """Capacity follows the workers actually serving: a wedged worker is abandoned and,
        until its replacement is warm, admission and load count one fewer. None serving:
        admission refuses."""
        del now  # the contract's signature; capacity takes effect at the next decision
        if n < 0:
            raise ValueError("workers must be >= 0")
        self.serving = n
        self.workers = max(1, n)  # the divisor of every per-worker figure
        self._epoch += 1

    def has_capacity(self, now: float) -> bool:
        """Would a new stream be admitted now? For readiness probes: counts no refusal."""
        return self._admission(now).accepted

    def _refuse(self, reason: str) -> Admission:
        backlog = sum(s.queued_compute_s for s in self._backlogged)
        return Admission(False, max(1.0, backlog / self.workers), reason)

    def _is_active(self, s: _Stream, now: float) -> bool:
        if s.queue or s.in_flight or s.ready_audio_s > 0.0:
            return True
        if s.playback_start_s is not None and s.playback_start_s + s.sent_audio_s > now:
            return True  # healthy playback: the listener is still playing
        return not s.submitted and now - s.opened_s < self.config.open_grace_s

    def open_stream(self, stream_id: str, priority: Priority | str, now: float) -> None:
        """Open (or re-open with a new priority) a stream; re-opening keeps its queue, counter."""
        prio = Priority(priority)
        s = self._streams.get(stream_id)
        if s is None:
            s = _Stream(stream_id, prio, self.config.shift_s(prio), now)
            self._streams[stream_id] = s
            self._fresh[stream_id] = now
        else:
            s.priority = prio
            s.shift_s = self.config.shift_s(prio)
        # VTC: a (re)opened stream starts at the lowest active counter, so idling earns no credit.
        s.attained_s = max(s.attained_s, self._service_floor())
        if s.queue:
            self._push_service(s)
            self._rekey(s, now)

    def submit(
        self, stream_id: str, text: str, *, speed: float, voice: str, now: float
    ) -> ChunkJob:
        """Queue one chunk (the segmenter's output) at its stream's tail. KeyError if unknown."""
        s = self._streams[stream_id]
        if speed <= 0.0:
            raise ValueError("speed must be > 0")
        if not s.queue and not s.in_flight:
            buffered = (
                s.playback_start_s + s.sent_audio_s - now if s.playback_start_s is not None else 0.0
            )
            if s.ready_audio_s <= 0.0 and buffered <= 0.0:
                # Idle, not stalled: the listener drained its buffer waiting for text. Start over
                # as a first chunk (protocol-v1: Timing promise, first audio).
                s.playback_start_s = None
                s.sent_audio_s = 0.0
                s.first_deadline_s = now + self._first_due_s
            elif s.playback_start_s is None and s.first_deadline_s is None:
                s.first_deadline_s = now + self._first_due_s
        if not s.queue:
            # VTC: returning from idle starts at the lowest active counter (no saved-up credit).
            s.attained_s = max(s.attained_s, self._service_floor())
        chars = len(text)
        audio_s, compute_s = self.model.predict(voice, chars, speed)
        deadline = self._deadline(s, s.ready_audio_s + s.inflight_audio_s + s.queued_audio_s)
        job = ChunkJob(
            stream_id=stream_id,
            seq=s.next_seq,
            text=text,
            speed=speed,
            voice=voice,
            chars=chars,
            predicted_audio_s=audio_s,
            predicted_compute_s=compute_s,
            latest_start_s=deadline - compute_s,
            deadline_s=deadline,
            priority=s.priority,
            submitted_s=now,
        )
        s.next_seq += 1
        s.submitted = True
        self._fresh.pop(stream_id, None)
        s.voice = voice
        s.queue.append(job)
        s.queued_audio_s += audio_s
        s.queued_compute_s += compute_s
        self._queued += 1
        if len(s.queue) == 1:
            self._backlogged.add(s)
            self._push_service(s)
            self._rekey(s, now)
        else:
            self._epoch += 1
        return job

    def clear(self, stream_id: str, now: float) -> int:
        """Barge-in: drop every queued chunk (returned: how many) and cancel in-flight ones, whose
        complete() will answer False. The stream stays open; the client's player dropped its
        buffer too, so the playback clock restarts with the next audio sent."""
        s = self._streams.get(stream_id)
        if s is None:
            return 0
        dropped = len(s.queue)
        self._queued -= dropped
        self._stats.cleared_chunks += dropped
        s.queue.clear()
        s.queued_audio_s = s.queued_compute_s = 0.0
        self._in_flight -= len(s.in_flight)
        self._stats.cancelled_in_flight += len(s.in_flight)
        s.in_flight.clear()
        s.inflight_audio_s = s.ready_audio_s = s.sent_audio_s = 0.0
        s.playback_start_s = s.first_deadline_s = None
        self._backlogged.discard(s)
        s.version += 1
        self._epoch += 1
        return dropped

    def close_stream(self, stream_id: str, now: float) -> int:
        """Clear and forget the stream; returns how many queued chunks were dropped."""
        dropped = self.clear(stream_id, now)
        s = self._streams.pop(stream_id, None)
        self._fresh.pop(stream_id, None)
        if s is not None:
            s.closed = True
        return dropped

    # ---- decisions -----------------------------------------------------------------------

    def next_jobs(self, now: float, max_jobs: int = 1) -> list[ChunkJob]:
        """Up to `max_jobs` jobs for ONE idle worker (a batch when > 1); [] when nothing may run.

        Eligible work (under the lookahead cap) goes first, most urgent latest start first.
        Held-back work is handed out only when no eligible work exists, and never past
        `max_lookahead_s` (see next_wakeup_s)."""
        if max_jobs < 1:
            return []
        self._maybe_compact(now)
        self._promote(now)
        picked = self._pick_ready()
        fallback = False
        if picked is None:
            picked = self._pick_held(now)
            if picked is None:
                return []
            fallback = True
        seed_rank = picked.rank_s
        jobs = [self._dispatch(picked, now, fallback)]
        if max_jobs > 1 and not fallback:
            self._fill_batch(jobs, seed_rank, now, max_jobs)
            if len(jobs) > 1:
                self._stats.batches += 1
                self._stats.batched_jobs += len(jobs)
        return jobs

    def complete(self, job: ChunkJob, *, audio_s: float, compute_s: float, now: float) -> bool:
        """Record a finished job: True = send the audio; False = its stream was cleared or
        closed meanwhile, drop it. Sets job.slack_s and job.overrun for the caller to export."""
        cfg = self.config
        self.model.observe(job.voice, job.chars, job.speed, audio_s=audio_s, compute_s=compute_s)
        st = self._stats
        st.completed += 1
        job.slack_s = job.deadline_s - now
        if job.slack_s < 0.0:
            st.late_completions += 1
        job.overrun = (
            compute_s > cfg.overrun_factor * job.predicted_compute_s
            and compute_s > cfg.overrun_min_s
        )
        if job.overrun:
            st.overruns += 1
        s = self._streams.get(job.stream_id)
        if s is None or s.in_flight.get(job.seq) is not job:
            st.dropped_results += 1
            return False
        self._release(s, job)
        s.ready_audio_s += audio_s
        # VTC: the counter was charged the prediction at dispatch; settle to what it really cost.
        s.attained_s += compute_s - job.predicted_compute_s
        if s.queue:
            self._push_service(s)
            self._rekey(s, now)
        return True

    def fail(self, job: ChunkJob, now: float) -> None:
        """Release a job whose synthesis failed; the stream goes on without it."""
        self._stats.failed += 1
        s = self._streams.get(job.stream_id)
        if s is None or s.in_flight.get(job.seq) is not job:
            return
        self._release(s, job)
        if s.queue:
            self._rekey(s, now)

    def audio_sent(self, stream_id: str, audio_s: float, now: float) -> None:
        """The caller sent `audio_s` seconds of audio (a chunk or a frame) to the client.

        The playback clock starts at the first call; buffered = sent - (now - start). Audio sent
        after the buffer ran out is counted as a stall, and the clock moves to where the
        listener's player resumes (now)."""
        s = self._streams.get(stream_id)
        if s is None:
            return
        if s.playback_start_s is None:
            s.playback_start_s = now
            s.sent_audio_s = 0.0
            s.first_deadline_s = None
        else:
            dry_at = s.playback_start_s + s.sent_audio_s
            if dry_at < now:
                self._stats.stalls += 1
                self._stats.stall_s += now - dry_at
                s.stall_s += now - dry_at
                s.playback_start_s = now - s.sent_audio_s
        s.sent_audio_s += audio_s
        s.ready_audio_s = max(0.0, s.ready_audio_s - audio_s)
        if s.queue:
            # Sending ready audio moves it from "ready" to "sent": the deadline stays put unless
            # the clock just started or moved. Skip the heap push when nothing changed.
            deadline = self._deadline(s, s.inflight_audio_s + s.ready_audio_s)
            if abs(deadline - s.deadline_s) > 1e-6:
                self._rekey(s, now)

    # ---- load signals --------------------------------------------------------------------

    def first_chunk_chars(self, now: float, voice: str = "") -> int:
        """The segmenter's limit for a new stream's first chunk, in characters.

        protocol-v1: Timing promise. A first chunk waits for the urgent work already queued
        (compute due before its own deadline, shared by the workers), then synthesizes;
        its size is whatever fits in what is left of the target, at `voice`'s learned cost,
        clamped to [min_first_chunk_chars, max_first_chunk_chars]. Idle: a clause or a short
        sentence, so one listener hears audio within the target. Bursty: a few words, so the
        twentieth listener does too (scheduler-notes: the burst problem).
        """
        cfg = self.config
        # Work ahead of this chunk: urgent chunks queued, and the first chunks of the other
        # streams of a burst that opened with this one (the asking stream is one of them).
        others = max(0.0, self._fresh_compute(now) - self._fresh_compute_one())
        wait_s = (self._urgent_compute(now) + others) / self.workers
        budget_s = cfg.first_audio_target_s - cfg.first_chunk_margin_s - wait_s
        cost = self.model.voice(voice)
        per_char_s = cost.compute_per_audio_s * cost.audio_per_char_s
        chars = int((budget_s - cfg.chunk_overhead_s) / per_char_s) if per_char_s > 0 else 0
        return max(cfg.min_first_chunk_chars, min(cfg.max_first_chunk_chars, chars))

    def chunk_shape(self, now: float, voice: str = "") -> ChunkShape:
        """The segmenter's three knobs for a stream whose text starts now (see ChunkShape)."""
        cost = self.model.voice(voice)
        return ChunkShape(
            first_chunk_chars=self.first_chunk_chars(now, voice),
            chunk_growth=self.chunk_growth(now),
            ramp_margin_chars=self.config.jitter_s / cost.audio_per_char_s,
        )

    def chunk_growth(self, now: float) -> float:
        """How much each chunk after a short first one may grow over the last.

        Every active stream's next chunk must be synthesized while its previous chunk plays;
        at utilization u the workers get through a round of chunks 1/u times faster than it
        plays, so sizes can grow by about 1/u per round (scheduler-notes). Headroom covers
        jitter and the prediction error.
        """
        cfg = self.config
        u = max(self.load(now), 1e-6)
        return max(cfg.min_chunk_growth, min(cfg.max_chunk_growth, cfg.growth_headroom / u))

    def next_wakeup_s(self, now: float) -> float | None:
        """The earliest time at which next_jobs would hand an idle worker work, absent other
        events: `now` when work is runnable, the time the first held-back stream drops under
        `max_lookahead_s` when all queued work is past it, None when nothing is queued."""
        self._promote(now)
        if self._peek(self._ready) is not None:
            return now
        top = self._peek(self._held)
        if top is None:
            return None
        return max(now, self._hard_s(top[3]))

    def queued_jobs(self, stream_id: str | None = None) -> int:
        if stream_id is None:
            return self._queued
        s = self._streams.get(stream_id)
        return len(s.queue) if s is not None else 0

    def priority(self, stream_id: str) -> Priority | None:
        s = self._streams.get(stream_id)
        return s.priority if s is not None else None

    def underrun_s(self, stream_id: str) -> float:
        """Estimated seconds this stream's listener ran dry (for `done.stats.underrun_ms`)."""
        s = self._streams.get(stream_id)
        return s.stall_s if s is not None else 0.0

    def stats(self) -> SchedulerStats:
        """A snapshot: counters since start, gauges now. O(streams): call it for metrics only."""
        snap = replace(self._stats)
        snap.queued_jobs = self._queued
        snap.in_flight = self._in_flight
        snap.open_streams = len(self._streams)
        snap.active_streams = sum(1 for s in self._streams.values() if s.queue or s.in_flight)
        live = {id(e[3]) for e in self._held if e[2] == e[3].version and e[3].queue}
        snap.held_streams = len(live)
        if self._backlogged:
            counters = [s.attained_s for s in self._backlogged]
            snap.service_spread_s = max(counters) - min(counters)
        return snap

    # ---- internals -----------------------------------------------------------------------

    def _deadline(self, s: _Stream, ahead_s: float) -> float:
        """Deadline of a chunk with `ahead_s` of audio (ready, in flight, queued) before it."""
        jitter = self.config.jitter_s
        if s.playback_start_s is not None:
            return s.playback_start_s + s.sent_audio_s + ahead_s - jitter
        first = s.first_deadline_s
        if first is None:  # only reachable with nothing queued; keep the arithmetic total
            first = s.opened_s + self._first_due_s
        if ahead_s <= 0.0:
            return first
        return max(first, first + ahead_s - jitter)

    def _hard_s(self, s: _Stream) -> float:
        """When a held head drops under max_lookahead_s (eligible for an otherwise idle worker)."""
        return s.eligible_s - (self.config.max_lookahead_s - self.config.lookahead_s)

    def _rekey(self, s: _Stream, now: float) -> None:
        """Recompute the head chunk's key and push a fresh heap entry (old ones go stale)."""
        s.version += 1
        self._epoch += 1
        if not s.queue:
            return
        head = s.queue[0]
        self._refresh(s, head)
        cfg = self.config
        deadline = self._deadline(s, s.inflight_audio_s + s.ready_audio_s)
        s.deadline_s = deadline
        s.rank_s = deadline - head.predicted_compute_s + s.shift_s
        # Lead = audio buffered or on its way = deadline + jitter - now; held while > lookahead.
        s.eligible_s = deadline + cfg.jitter_s - cfg.lookahead_s
        if s.eligible_s <= now:
            heapq.heappush(self._ready, (s.rank_s, next(self._tiebreak), s.version, s))
        else:
            heapq.heappush(self._held, (s.eligible_s, next(self._tiebreak), s.version, s))

    def _refresh(self, s: _Stream, job: ChunkJob) -> None:
        """Re-predict a queued job with the current cost model, keeping the stream's sums."""
        audio_s, compute_s = self.model.predict(job.voice, job.chars, job.speed)
        s.queued_audio_s += audio_s - job.predicted_audio_s
        s.queued_compute_s += compute_s - job.predicted_compute_s
        job.predicted_audio_s = audio_s
        job.predicted_compute_s = compute_s

    def _release(self, s: _Stream, job: ChunkJob) -> None:
        del s.in_flight[job.seq]
        self._in_flight -= 1
        s.inflight_audio_s = s.inflight_audio_s - job.predicted_audio_s if s.in_flight else 0.0

    def _dispatch(self, s: _Stream, now: float, fallback: bool) -> ChunkJob:
        job = s.queue.popleft()
        self._refresh(s, job)
        job.deadline_s = self._deadline(s, s.inflight_audio_s + s.ready_audio_s)
        job.latest_start_s = job.deadline_s - job.predicted_compute_s
        job.dispatched_s = now
        if s.queue:
            s.queued_audio_s -= job.predicted_audio_s
            s.queued_compute_s -= job.predicted_compute_s
        else:
            s.queued_audio_s = s.queued_compute_s = 0.0
            self._backlogged.discard(s)
        s.in_flight[job.seq] = job
        s.inflight_audio_s += job.predicted_audio_s
        # VTC: charge the prediction now so concurrent picks see it; complete() settles it.
        s.attained_s += job.predicted_compute_s
        self._queued -= 1
        self._in_flight += 1
        st = self._stats
        st.dispatched += 1
        if now > job.deadline_s:
            st.deadline_misses += 1
        if fallback:
            st.lookahead_fallbacks += 1
        if s.queue:
            self._push_service(s)
        self._rekey(s, now)
        return job

    def _peek(self, heap: list[_Entry]) -> _Entry | None:
        while heap:
            top = heap[0]
            if top[2] == top[3].version:
                return top
            heapq.heappop(heap)
        return None

    def _promote(self, now: float) -> None:
        """Move heads that dropped under the lookahead cap from the held heap to the ready one."""
        held = self._held
        while held and held[0][0] <= now:
            _, tb, version, s = heapq.heappop(held)
            if version == s.version:
                heapq.heappush(self._ready, (s.rank_s, tb, version, s))

    def _pick_ready(self) -> _Stream | None:
        """The most urgent eligible stream; among near-ties, the least attained service.

        Near-ties are looked for in the top `tie_candidates` slots of the heap array (its upper
        levels), without popping: the pick is dispatched, which bumps its version, so its entry
        goes stale and is dropped lazily. O(tie_candidates) per decision, whatever the queue."""
        heap = self._ready
        top = self._peek(heap)
        if top is None:
            return None
        limit = top[0] + self.config.tie_window_s
        best = top
        for entry in heap[1 : self.config.tie_candidates]:
            if (
                entry[0] <= limit
                and entry[2] == entry[3].version
                and (entry[3].attained_s, entry[0]) < (best[3].attained_s, best[0])
            ):
                best = entry
        return best[3]

    def _pick_held(self, now: float) -> _Stream | None:
        """A held-back stream for a worker that would otherwise idle: the one with the least
        audio ahead, unless even that one is past max_lookahead_s. (Its entry goes stale.)"""
        top = self._peek(self._held)
        if top is None or self._hard_s(top[3]) > now:
            return None
        return top[3]

    def _fill_batch(self, jobs: list[ChunkJob], seed_rank: float, now: float, n: int) -> None:
        """Grow a batch around the most urgent job: candidates within batch_window_s of its
        latest start, similar lengths first; stop before the batch would make its most urgent
        member late (Triton's dynamic batcher, with deadlines)."""
        cfg = self.config
        heap = self._ready
        limit = seed_rank + cfg.batch_window_s
        pool: list[_Entry] = []
        while heap and len(pool) < cfg.batch_candidates and heap[0][0] <= limit:
            entry = heapq.heappop(heap)
            if entry[2] == entry[3].version:
                pool.append(entry)
        seed = jobs[0]
        pool.sort(key=lambda e: abs(e[3].queue[0].chars - seed.chars))
        earliest = seed.deadline_s
        computes = [seed.predicted_compute_s]
        used = 0
        for entry in pool:
            s = entry[3]
            if len(jobs) >= n or entry[2] != s.version:
                break
            head = s.queue[0]
            trial = [*computes, head.predicted_compute_s]
            longest = max(trial)
            batch_s = longest + cfg.batch_marginal_cost * (sum(trial) - longest)
            earliest_if = min(earliest, self._deadline(s, s.inflight_audio_s + s.ready_audio_s))
            allowed = max(earliest_if - now, cfg.batch_late_growth * seed.predicted_compute_s)
            if batch_s > allowed:
                break
            earliest, computes = earliest_if, trial
            jobs.append(self._dispatch(s, now, False))
            used += 1
        for entry in pool[used:]:
            if entry[2] == entry[3].version:
                heapq.heappush(heap, entry)

    def _service_floor(self) -> float:
        """The lowest attained service among backlogged streams (0 when none)."""
        heap = self._service
        while heap:
            attained, _, s = heap[0]
            if s.queue and not s.closed and s.attained_s == attained:
                return attained
            heapq.heappop(heap)
        return 0.0

    def _push_service(self, s: _Stream) -> None:
        heapq.heappush(self._service, (s.attained_s, next(self._tiebreak), s))

    def _fresh_compute_one(self) -> float:
        """Predicted compute of one burst stream's first chunk (voice not known yet: "")."""
        return self.model.predict("", self.config.min_first_chunk_chars, 1.0)[1]

    def _fresh_compute(self, now: float) -> float:
        """Predicted compute of the first chunks that streams opened within open_grace_s, and
        still without text, are about to submit (each a min_first_chunk_chars chunk)."""
        cfg = self.config
        while self._fresh:
            stream_id, opened_s = next(iter(self._fresh.items()))
            if now - opened_s < cfg.open_grace_s:
                break
            del self._fresh[stream_id]  # it waited too long to count as part of a burst
        return len(self._fresh) * self._fresh_compute_one()

    def _urgent_compute(self, now: float) -> float:
        """Predicted compute of queued chunks due within a first chunk's deadline of now
        (first_audio_target_s + first_chunk_slack_s)."""
        cached_now, cached_epoch, value = self._urgent_cache
        if cached_now == now and cached_epoch == self._epoch:
            return value
        horizon = now + self._first_due_s
        total = 0.0
        for s in self._backlogged:
            ahead = s.inflight_audio_s + s.ready_audio_s
            for job in s.queue:
                if self._deadline(s, ahead) > horizon:
                    break
                total += job.predicted_compute_s
                ahead += job.predicted_audio_s
        self._urgent_cache = (now, self._epoch, total)
        return total

    def _maybe_compact(self, now: float) -> None:
        """Rebuild the heaps when stale entries outnumber live ones (amortized O(1))."""
        live = len(self._backlogged)
        if len(self._ready) + len(self._held) > 4 * live + 1024:
            self._ready.clear()
            self._held.clear()
            for s in self._backlogged:
                self._rekey(s, now)
        if len(self._service) > 4 * live + 1024:
            self._service = [(s.attained_s, next(self._tiebreak), s) for s in self._backlogged]
            heapq.heapify(self._service)
