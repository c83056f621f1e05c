"""Deadlines, order, fairness, lookahead, admission for synthesis steps. Pure: the caller passes
`now`.

# The core idea: a stream is its sent audio racing its listener's playback clock; the next step
# is due before the listener runs dry, less the jitter budget.

Everything here serves that (protocol-v1: Timing promise). The event loop owns one `Scheduler`;
nothing in this module reads a clock, sleeps, logs or locks: counters and per-step results are
returned for the caller to log and export.

Units of work. A sentence (one segmenter chunk, with the `seq` the caller's session gave it) is
an ENCODE step (the front pass: it fixes the sentence's length in frames), then DECODE windows
in order (engine/base.py). A stream has at most one step in flight, so its results come back in
order and the session never reorders them. Window size is the control the scheduler turns: a
stream's first window is small (`first_window_frames`: ~0.2 s of audio, so first audio = one
front pass + one small window); each later window may grow by about 1/utilization while its
compute fits inside the playback of the audio already buffered, up to `max_window_frames`
(context margins then cost little); a thin buffer shrinks it again (scheduler-notes: streaming
inside the model). Every cost is priced by `CostModel.price`, learned per voice and step kind.

Deadlines. A stream's playback clock starts at its first `audio_sent`; the listener runs dry at
`playback_start + sent`. The next step is due when the audio ahead of it (sent, plus completed
but not sent) runs out, less `jitter_s`; an encode step is due earlier by its first window's
compute, since that window must follow it before any audio of the sentence exists. Before
playback starts, first audio is due at the text's arrival plus `first_audio_target_s` (ordered as
due `first_audio_slack_s` later: a listener who has not started can wait a little, one who is
playing would hear a stall). A stream whose buffer drained while it had no work is idle, not
stalled: its next text starts a fresh first audio and a small first window again.

Order. Latest start time (deadline - predicted compute, since a step cannot be paused), shifted
by priority class; near-ties (within `tie_window_s`) go to the stream with the least attained
service (compute seconds), VTC style. A heap keyed per stream by its next step holds the order;
stale entries are skipped by a version counter, so a decision is O(log streams).

Call sequence (the server/session side; `now` from the caller's monotonic clock):

    sched.register_voice(voice_id, context_frames=16, sample_rate=22050)   # once per voice
    sched.set_workers(n, now)                  # at start, and whenever workers die or come back
    adm = sched.admit(now, voice)              # new connection; adm.reason -> client, metrics
    sched.open_stream(stream_id, priority, now)
    sched.submit(stream_id, seq, sentence, speed=..., voice=..., now=now)   # per segmenter chunk
    # whenever a worker is idle:
    steps = sched.next_steps(now, max_steps)   # one kind, voice, speed (and window length)
    #   cannot dispatch them after all:  sched.requeue(steps, now)
    #   ENCODE done:  keep = sched.encoded(step, frames=latent.frames,
    #                     samples_per_frame=latent.samples_per_frame, latent=latent,
    #                     compute_s=..., now=now)     -> session ChunkPlanned(seq, text, samples)
    #                 (frames == 0: nothing to decode; the caller ends the sentence itself)
    #   DECODE done:  keep = sched.decoded(step, audio_s=..., compute_s=..., now=now)
    #                     -> session ChunkAudio(seq, audio, last=step.last); decode with
    #                     voice.decode(step.latent, step.start_frame, step.frames)
    #   keep is False: the stream was cleared or closed meanwhile; drop the result
    #   error:        sched.fail(step, now)       -> session ChunkFailed(seq, message)
    sched.audio_sent(stream_id, audio_s, now)  # as audio frames go out to the client
    wake = sched.next_wakeup_s(now)            # when nothing is runnable: sleep until then
    sched.clear(stream_id, now) / sched.close_stream(stream_id, now)    # barge-in / end
"""

from __future__ import annotations

import bisect
import heapq
import math
from dataclasses import replace
from itertools import count

from litestream.costmodel import CostModel, CostPriors, StepKind
from litestream.scheduler_state import Sentence, StreamState
from litestream.scheduler_types import (
    Admission,
    AdmissionReason,
    Priority,
    SchedulerConfig,
    SchedulerStats,
    SynthesisStep,
)

__all__ = [
    "Admission",
    "AdmissionReason",
    "Priority",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerStats",
    "StepKind",
    "SynthesisStep",
]


# (key, tiebreak, version, stream); the tiebreak is unique so streams are never compared.
_Entry = tuple[float, int, int, StreamState]


def _window_ladder(cfg: SchedulerConfig) -> list[int]:
    """The window lengths handed out: 1x and 1.5x powers of two within the bounds, plus the
    bounds and the first window. Few distinct lengths let windows of different streams batch
    as one run (equal frame counts), and keep the engine's set of shapes small."""
    lo, hi = cfg.min_window_frames, cfg.max_window_frames
    if not 1 <= lo <= cfg.first_window_frames <= hi:
        raise ValueError("need 1 <= min_window_frames <= first_window_frames <= max_window_frames")
    sizes = {lo, hi, cfg.first_window_frames}
    p = 1
    while p <= hi:
        sizes.update(w for w in (p, p + p // 2) if lo <= w <= hi)
        p *= 2
    return sorted(sizes)


class Scheduler:
    """Deadline-ordered, fair step scheduler for `workers` identical workers. Not thread-safe."""

    def __init__(
        self, config: SchedulerConfig, workers: int, *, priors: CostPriors | None = None
    ) -> None:
        if workers < 0:
            raise ValueError("workers must be >= 0")
        self.config = config
        self.workers = workers
        self.model = CostModel(priors)
        self._ladder = _window_ladder(config)
        self._default_voice = ""  # the first voice registered: prices a stream of unknown voice
        self._registered = False
        self._streams: dict[str, StreamState] = {}
        self._backlogged: set[StreamState] = set()  # streams with sentences
        self._ready: list[_Entry] = []  # eligible next steps, keyed by rank (shifted latest start)
        self._held: list[_Entry] = []  # next steps over the lookahead cap, keyed by eligible time
        self._service: list[tuple[float, int, StreamState]] = []  # backlogged, by attained
        self._tiebreak = count()
        self._sentences = 0
        self._in_flight = 0
        # Summed steady RTF of streams with work: the utilization that sets window growth.
        self._busy_rtf = 0.0
        # Predicted compute of the first audio (encode + first window) of streams waiting for it.
        self._pending_first_s = 0.0
        self._epoch = 0  # bumped on every change; keys the urgent-compute cache
        self._urgent_cache: tuple[float, int, float] = (-1.0, -1, 0.0)
        self._stats = SchedulerStats()
        self._first_due_s = config.first_audio_target_s + config.first_audio_slack_s
        # Streams opened but without text yet (insertion order = opening order). In a burst
        # their first audio is about to be asked for: it counts as urgent work (_fresh_count).
        self._fresh: dict[str, float] = {}
        self._sample_rates: dict[str, int] = {}

    # ---- voices and workers --------------------------------------------------------------

    def register_voice(
        self, voice: str, *, context_frames: int, sample_rate: int | None = None
    ) -> None:
        """Declare a voice before its first stream: frames of context its decode windows compute
        on each side (0 for a non-streaming voice) and its sample rate (with each encode step's
        samples_per_frame it gives the exact audio per frame). The first voice registered
        prices admission for a stream whose voice is not known yet."""
        if not self._registered:
            self._default_voice = voice
        self._registered = True
        self.model.register(voice, context_frames=context_frames)
        if sample_rate is not None:
            if sample_rate <= 0:
                raise ValueError("sample_rate must be > 0")
            self._sample_rates[voice] = sample_rate
        self._epoch += 1

    def set_workers(self, n: int, now: float) -> None:
        """Capacity follows the workers actually serving (a worker lost to the watchdog, or one
        restarted): admission, load, window growth and retry-after use `n`. With 0, every new
        stream is refused; queued work waits for a worker."""
        if n < 0:
            raise ValueError("workers must be >= 0")
        self.workers = n
        self._epoch += 1

    # ---- streams -------------------------------------------------------------------------

    def admit(self, now: float, voice: str | None = None) -> Admission:
        """Acceptance test for a NEW stream speaking `voice` (None: not known yet; priced at
        the first voice registered): would it make urgent steps late?

        Refused (reason, see AdmissionReason) when
        - STREAMS: `max_streams` streams are open;
        - CAPACITY: the summed steady RTF shares of active streams plus the new one exceed
          `workers * target_utilization` (EDF under overload makes every step late: the domino
          effect); open-but-idle streams cost nothing; or no worker is serving;
        - BACKLOG: the compute due within a first audio's deadline, plus the new stream's first
          audio (its first encode step and first window), divided by workers, is more than
          `first_audio_target_s + admit_backlog_s`.
        retry_after_s is the time to drain the whole queued backlog on all workers, at least 1 s.
        Every price comes from `CostModel.price`, per voice.
        """
        admission = self._admission(now, voice)
        if not admission.accepted:
            self._stats.refused += 1
        return admission

    def has_capacity(self, now: float) -> bool:
        """Would a new stream be admitted now? For readiness probes: counts no refusal."""
        return self._admission(now, None).accepted

    def load(self, now: float) -> float:
        """Predicted compute demand of active streams over capacity: 1.0 = every worker busy.

        The per-pod signal for autoscaling (litestream_scheduler_load); infinite when work is
        active and no worker is serving."""
        demand = self._demand(now)
        if self.workers == 0:
            return math.inf if demand > 0.0 else 0.0
        return demand / self.workers

    def open_stream(self, stream_id: str, priority: Priority | str, now: float) -> None:
        """Open (or re-open with a new priority) a stream; re-opening keeps its work, counter."""
        prio = Priority(priority)
        s = self._streams.get(stream_id)
        if s is None:
            s = StreamState(stream_id, prio, self.config.shift_s(prio), now)
            self._streams[stream_id] = s
            self._fresh[stream_id] = now
        else:
            s.priority = prio
            s.shift_s = self.config.shift_s(prio)
        # VTC: a (re)opened stream starts at the lowest active counter, so idling earns no credit.
        s.attained_s = max(s.attained_s, self._service_floor())
        if s.sentences:
            self._push_service(s)
            self._rekey(s, now)

    def submit(
        self, stream_id: str, seq: int, text: str, *, speed: float, voice: str, now: float
    ) -> SynthesisStep:
        """Queue one sentence (a segmenter chunk, `seq` from the caller's session) at its
        stream's tail; returns its encode step. KeyError if the stream is unknown."""
        s = self._streams[stream_id]
        if speed <= 0.0:
            raise ValueError("speed must be > 0")
        if not s.sentences:
            buffered = (
                s.playback_start_s + s.sent_audio_s - now if s.playback_start_s is not None else 0.0
            )
            if s.ready_audio_s <= 0.0 and buffered <= 0.0:
                # Idle, not stalled: the listener drained its buffer waiting for text. Start over
                # as a first audio (protocol-v1: Timing promise), with a small first window.
                s.playback_start_s = None
                s.sent_audio_s = 0.0
                s.window_frames = 0
                self._await_first(s, voice, len(text), speed, now)
            elif s.playback_start_s is None and s.first_deadline_s is None:
                self._await_first(s, voice, len(text), speed, now)
            # VTC: returning from idle starts at the lowest active counter (no saved-up credit).
            s.attained_s = max(s.attained_s, self._service_floor())
        step = SynthesisStep(
            stream_id=stream_id,
            seq=seq,
            kind=StepKind.ENCODE,
            text=text,
            voice=voice,
            speed=speed,
            predicted_compute_s=self.model.price(voice, StepKind.ENCODE, len(text)),
            priority=s.priority,
            submitted_s=now,
        )
        s.sentences.append(Sentence(step))
        s.submitted = True
        self._fresh.pop(stream_id, None)
        s.voice = voice
        self._sentences += 1
        if len(s.sentences) == 1:
            self._backlogged.add(s)
            self._push_service(s)
            self._set_busy(s)
            self._rekey(s, now)
            step.deadline_s, step.latest_start_s = s.deadline_s, s.rank_s - s.shift_s
        else:
            self._epoch += 1
        return step

    def clear(self, stream_id: str, now: float) -> int:
        """Barge-in: drop every sentence (returned: how many, the one under way included) and
        cancel the in-flight step, whose encoded()/decoded() will answer False: no later window
        of a cleared sentence is handed out. The stream stays open; the client's player dropped
        its buffer too, so the playback clock restarts with the next audio sent."""
        s = self._streams.get(stream_id)
        if s is None:
            return 0
        dropped = len(s.sentences)
        self._sentences -= dropped
        self._stats.cleared_sentences += dropped
        s.sentences.clear()
        if s.in_flight is not None:
            self._in_flight -= 1
            self._stats.cancelled_in_flight += 1
            s.in_flight = None
        s.inflight_audio_s = s.ready_audio_s = s.sent_audio_s = 0.0
        s.playback_start_s = s.first_deadline_s = None
        self._pending_first_s -= s.first_cost_s
        s.first_cost_s = 0.0
        s.first_rank_s = None
        s.window_frames = 0
        self._backlogged.discard(s)
        self._set_busy(s)
        s.version += 1
        self._epoch += 1
        return dropped

    def close_stream(self, stream_id: str, now: float) -> int:
        """Clear and forget the stream; returns how many sentences were dropped."""
        dropped = self.clear(stream_id, now)
        s = self._streams.pop(stream_id, None)
        self._fresh.pop(stream_id, None)
        if s is not None:
            s.closed = True
        return dropped

    # ---- decisions -----------------------------------------------------------------------

    def next_steps(self, now: float, max_steps: int = 1) -> list[SynthesisStep]:
        """Up to `max_steps` steps for ONE idle worker (a batch when > 1); [] when nothing may run.

        A batch is homogeneous: one kind, one voice, one speed, and decode windows of one frame
        count (GPU batching with no padding). Eligible work (under the lookahead cap) goes
        first, most urgent latest start first. Held-back work is handed out only when no
        eligible work exists, and never past `max_lookahead_s` (see next_wakeup_s)."""
        if max_steps < 1:
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
        steps = [self._dispatch(picked, now, fallback)]
        if max_steps > 1 and not fallback:
            self._fill_batch(steps, seed_rank, now, max_steps)
            if len(steps) > 1:
                self._stats.batches += 1
                self._stats.batched_steps += len(steps)
        return steps

    def requeue(self, steps: list[SynthesisStep], now: float) -> None:
        """Put back steps that were handed out but could not be dispatched (no worker took
        them): each returns to the head of its stream, as if never handed out. Never lost."""
        for step in steps:
            s = self._streams.get(step.stream_id)
            if s is None or s.in_flight is not step:
                continue  # cleared or closed meanwhile: nothing to put back
            self._release(s)
            s.attained_s -= step.predicted_compute_s  # VTC: it was charged at dispatch
            if step.kind is StepKind.DECODE:
                s.sentences[0].next_frame = step.start_frame
            step.dispatched_s = None
            self._stats.requeued += 1
            self._push_service(s)
            self._rekey(s, now)

    def encoded(
        self,
        step: SynthesisStep,
        *,
        frames: int,
        samples_per_frame: int,
        latent: object,
        compute_s: float,
        now: float,
    ) -> bool:
        """Record a finished encode step: the sentence is `frames` frames long. True = go on
        (send the sentence's `chunk` event; its windows follow); False = its stream was cleared
        or closed meanwhile, drop it. A sentence of 0 frames is finished here."""
        self.model.observe_encode(
            step.voice, chars=step.chars, speed=step.speed, frames=frames, compute_s=compute_s
        )
        rate = self._sample_rates.get(step.voice)
        if rate is not None and samples_per_frame > 0:
            self.model.voice(step.voice).audio_per_frame_s = samples_per_frame / rate
        s = self._finish(step, compute_s, now)
        if s is None:
            return False
        sentence = s.sentences[0]
        sentence.frames = frames
        sentence.latent = latent
        sentence.next_frame = 0
        if frames <= 0:
            self._pop_sentence(s)
        self._after_step(s, now)
        return True

    def decoded(self, step: SynthesisStep, *, audio_s: float, compute_s: float, now: float) -> bool:
        """Record a finished decode window: True = send its audio (`audio_s` seconds; the
        sentence's last piece when step.last); False = its stream was cleared or closed
        meanwhile, drop it."""
        self.model.observe_decode(step.voice, frames=step.frames, audio_s=audio_s,
                                  compute_s=compute_s)
        s = self._finish(step, compute_s, now)
        if s is None:
            return False
        s.ready_audio_s += audio_s
        if step.last:
            self._pop_sentence(s)
        self._after_step(s, now)
        return True

    def fail(self, step: SynthesisStep, now: float) -> None:
        """Release a step whose synthesis failed and drop the rest of its sentence (no later
        window of it is handed out); the stream goes on with its next sentence."""
        self._stats.failed += 1
        s = self._streams.get(step.stream_id)
        if s is None or s.in_flight is not step:
            return
        self._release(s)
        self._pop_sentence(s)
        self._after_step(s, now)

    def audio_sent(self, stream_id: str, audio_s: float, now: float) -> None:
        """The caller sent `audio_s` seconds of audio (a window or a frame) to the client.

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
            self._pending_first_s -= s.first_cost_s
            s.first_cost_s = 0.0
            s.first_rank_s = None
        else:
            dry_at = s.playback_start_s + s.sent_audio_s
            if dry_at < now:
                self._stats.stalls += 1
                self._stats.stall_s += now - dry_at
                s.stall_s += now - dry_at
                s.playback_start_s = now - s.sent_audio_s
        s.sent_audio_s += audio_s
        s.ready_audio_s = max(0.0, s.ready_audio_s - audio_s)
        # Sending ready audio moves it from "ready" to "sent": the deadline stays put unless
        # the clock just started or moved. Skip the heap push when nothing changed.
        if (
            s.sentences
            and s.in_flight is None
            and abs(self._due_s(s) - s.due_s) > 1e-6
        ):
            self._rekey(s, now)

    # ---- load signals --------------------------------------------------------------------

    def next_wakeup_s(self, now: float) -> float | None:
        """The earliest time at which next_steps would hand an idle worker work, absent other
        events: `now` when work is runnable, the time the first held-back stream drops under
        `max_lookahead_s` when all queued work is past it, None when nothing is runnable."""
        self._promote(now)
        if self._peek(self._ready) is not None:
            return now
        top = self._peek(self._held)
        if top is None:
            return None
        return max(now, self._hard_s(top[3]))

    def queued_sentences(self, stream_id: str | None = None) -> int:
        """Sentences submitted and not finished (the one under way included)."""
        if stream_id is None:
            return self._sentences
        s = self._streams.get(stream_id)
        return len(s.sentences) if s is not None else 0

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
        snap.queued_sentences = self._sentences
        snap.in_flight = self._in_flight
        snap.workers = self.workers
        snap.open_streams = len(self._streams)
        snap.active_streams = len(self._backlogged)
        live = {id(e[3]) for e in self._held if e[2] == e[3].version and e[3].sentences}
        snap.held_streams = len(live)
        if self._backlogged:
            counters = [s.attained_s for s in self._backlogged]
            snap.service_spread_s = max(counters) - min(counters)
        return snap

    # ---- internals: admission ------------------------------------------------------------

    def _admission(self, now: float, voice: str | None) -> Admission:
        cfg = self.config
        if cfg.max_streams and len(self._streams) >= cfg.max_streams:
            return self._refuse(AdmissionReason.STREAMS)
        if self.workers == 0:
            return self._refuse(AdmissionReason.CAPACITY)
        new_voice = self._default_voice if voice is None else voice
        if self._demand(now) + self._stream_rtf(new_voice) > self.workers * cfg.target_utilization:
            return self._refuse(AdmissionReason.CAPACITY)
        # A burst: the streams opened without text yet, and this one, are about to start; each
        # needs its first audio and the window after it, at the windows that load allows.
        fresh = self._fresh_count(now)
        extra_rtf = (fresh + 1) * self._stream_rtf(new_voice)
        first = self._first_audio_cost_s(new_voice, cfg.admit_sentence_chars, extra_rtf=extra_rtf)
        # Each first audio counts at most at the target: a voice slower than the target even on
        # an idle server (Kokoro on CPU) has a late first audio but is served, not refused for
        # its own cost; and one long encode step holds one worker, not all of them.
        own = min(first, cfg.first_audio_target_s)
        urgent = self._urgent_compute(now) + fresh * own
        if urgent / self.workers + own > cfg.first_audio_target_s + cfg.admit_backlog_s:
            return self._refuse(AdmissionReason.BACKLOG)
        return Admission(accepted=True, retry_after_s=0.0, reason=AdmissionReason.ACCEPTED)

    def _refuse(self, reason: AdmissionReason) -> Admission:
        backlog = sum(self._work_s(s, math.inf) for s in self._backlogged)
        return Admission(False, max(1.0, backlog / max(self.workers, 1)), reason)

    def _stream_rtf(self, voice: str) -> float:
        """A stream's steady share of one worker: typical sentences in the largest windows."""
        cfg = self.config
        return self.model.rtf(
            voice, sentence_chars=cfg.admit_sentence_chars, window_frames=cfg.max_window_frames
        )

    def _first_audio_cost_s(
        self, voice: str, chars: int, speed: float = 1.0, extra_rtf: float = 0.0
    ) -> float:
        """The work a new stream needs before it plays safely: its first encode step, its first
        window, and the window that must follow within that window's playback (at the floor).
        Admission, the burst's first-audio deadlines and the urgent backlog all price a new
        stream with it."""
        model = self.model
        frames = math.ceil(model.sentence_frames(voice, chars, speed))
        floor = self._floor_window(voice, extra_rtf)
        first = min(frames, self._first_window(voice, floor))
        second = min(frames - first, self._ladder_ceil(floor))
        cost = model.price(voice, StepKind.ENCODE, chars)
        cost += model.price(voice, StepKind.DECODE, first)
        if second > 0:
            cost += model.price(voice, StepKind.DECODE, second)
        return cost

    def _demand(self, now: float) -> float:
        """Summed steady RTF share of active streams (open-but-idle ones cost nothing)."""
        return sum(
            self._stream_rtf(s.voice if s.submitted else self._default_voice)
            for s in self._streams.values()
            if self._is_active(s, now)
        )

    def _is_active(self, s: StreamState, now: float) -> bool:
        if s.sentences or s.ready_audio_s > 0.0:
            return True
        if s.playback_start_s is not None and s.playback_start_s + s.sent_audio_s > now:
            return True  # healthy playback: the listener is still playing
        return not s.submitted and now - s.opened_s < self.config.open_grace_s

    def _work_s(self, s: StreamState, audio_limit_s: float) -> float:
        """Predicted compute of a stream's remaining work, until `audio_limit_s` of its audio
        is covered: encode steps whole, decode windows only as far as the limit (the windows
        past it are not due yet; a stream streams inside its sentences)."""
        total = 0.0
        audio = 0.0
        window = max(s.window_frames, self.config.first_window_frames)
        model = self.model
        for sentence in s.sentences:
            step = sentence.encode
            if sentence.frames is None:
                total += model.price(step.voice, StepKind.ENCODE, step.chars)
                frames = model.sentence_frames(step.voice, step.chars, step.speed)
            else:
                frames = sentence.frames - sentence.next_frame
            if math.isfinite(audio_limit_s):
                per_frame_s = model.audio_s(step.voice, 1.0)
                if per_frame_s > 0.0:
                    frames = min(frames, max(1.0, (audio_limit_s - audio) / per_frame_s))
            windows = max(1, math.ceil(frames / window))
            total += windows * model.price(step.voice, StepKind.DECODE, frames / windows)
            audio += model.audio_s(step.voice, frames)
            if audio >= audio_limit_s:
                break
        return total

    def _urgent_compute(self, now: float) -> float:
        """Predicted compute of queued work due within a first audio's deadline of now
        (first_audio_target_s + first_audio_slack_s)."""
        cached_now, cached_epoch, value = self._urgent_cache
        if cached_now == now and cached_epoch == self._epoch:
            return value
        horizon = now + self._first_due_s
        total = 0.0
        for s in self._backlogged:
            due = self._due_s(s)
            if due <= horizon:
                total += self._work_s(s, horizon - due)
        self._urgent_cache = (now, self._epoch, total)
        return total

    def _fresh_count(self, now: float) -> int:
        """How many streams opened within open_grace_s are still without text: a burst in
        progress, whose first audio is about to be asked for."""
        while self._fresh:
            stream_id, opened_s = next(iter(self._fresh.items()))
            if now - opened_s < self.config.open_grace_s:
                break
            del self._fresh[stream_id]  # it waited too long to count as part of a burst
        return len(self._fresh)

    # ---- internals: deadlines and windows ------------------------------------------------

    def _due_s(self, s: StreamState) -> float:
        """When the stream's next audio must be sent: the listener runs dry, less jitter."""
        ahead = s.ready_audio_s + s.inflight_audio_s
        jitter = self.config.jitter_s
        if s.playback_start_s is not None:
            return s.playback_start_s + s.sent_audio_s + ahead - jitter
        first = s.first_deadline_s
        if first is None:  # only reachable with nothing queued; keep the arithmetic total
            first = s.opened_s + self._first_due_s
        if ahead <= 0.0:
            return first
        return max(first, first + ahead - jitter)

    def _await_first(
        self, s: StreamState, voice: str, chars: int, speed: float, now: float
    ) -> None:
        """Set the deadline of a stream's first audio (its text arrived at `now`).

        protocol-v1: Timing promise: `first_audio_target_s`, ordered as `first_audio_slack_s`
        later; in a burst, no earlier than the workers could get to it if every first audio
        waiting went first. A deadline the workers cannot meet would outrank every playing
        stream and stall them all (EDF's domino effect), for no first audio sooner."""
        cost = self._first_audio_cost_s(voice, chars, speed)
        self._pending_first_s += cost - s.first_cost_s
        s.first_cost_s = cost
        queued_s = self._pending_first_s / max(self.workers, 1)
        s.first_deadline_s = now + max(self._first_due_s, queued_s)

    def _buffer_s(self, s: StreamState, now: float) -> float:
        """Audio the listener has ahead of the next window (sent and unplayed, plus ready)."""
        ahead = s.ready_audio_s + s.inflight_audio_s
        if s.playback_start_s is None:
            return ahead
        return s.playback_start_s + s.sent_audio_s + ahead - now

    def _window(self, s: StreamState, remaining: int, now: float) -> int:
        """The next window's length for stream `s` with `remaining` frames left in its sentence.

        First window of a stream (or after idle or clear): `first_window_frames`. Later: the
        last window x growth (about 1/utilization: while the workers get through a round of
        windows 1/u times faster than it plays, each may be that much longer), but no longer
        than what can be computed within the audio already buffered less the jitter budget
        (scheduler-notes). Rounded down to the ladder; a tail shorter than min_window_frames
        joins this window rather than costing a window of its own."""
        cfg = self.config
        ladder = self._ladder
        if s.window_frames <= 0:
            frames = self._first_window(s.voice)
        else:
            u = self._busy_rtf / self.workers if self.workers else 1.0
            growth = cfg.window_growth_headroom / max(u, 1e-6)
            growth = max(cfg.min_window_growth, min(cfg.max_window_growth, growth))
            # Nearest on the ladder (in ratio), so growth by less than a ladder step still grows.
            grown = s.window_frames * growth
            at = bisect.bisect_right(ladder, grown)
            if at == len(ladder) or (at > 0 and grown * grown < ladder[at - 1] * ladder[at]):
                at -= 1
            frames = ladder[max(at, 0)]
            fit = self.model.window_within(s.voice, self._buffer_s(s, now) - cfg.jitter_s)
            frames = min(frames, ladder[max(bisect.bisect_right(ladder, fit) - 1, 0)])
            floor = self._floor_window(s.voice)
            at = bisect.bisect_left(ladder, floor)
            frames = max(frames, ladder[min(at, len(ladder) - 1)])
        if remaining - frames < cfg.min_window_frames:
            return max(remaining, 1)
        return frames

    def _ladder_ceil(self, frames: float) -> int:
        """The shortest ladder window of at least `frames` (the longest when none is)."""
        ladder = self._ladder
        return ladder[min(bisect.bisect_left(ladder, frames), len(ladder) - 1)]

    def _first_window(self, voice: str, floor: float | None = None) -> int:
        """A stream's first window: `first_window_frames`, or under load long enough that the
        next window, at the floor, fits in its playback (first_window_margin times over)."""
        cfg = self.config
        ladder = self._ladder
        if floor is None:
            floor = self._floor_window(voice)
        if floor <= cfg.first_window_frames:
            return cfg.first_window_frames
        next_frames = ladder[min(bisect.bisect_left(ladder, floor), len(ladder) - 1)]
        need_s = cfg.jitter_s + cfg.first_window_margin * self.model.price(
            voice, StepKind.DECODE, next_frames
        )
        apf = self.model.voice(voice).audio_per_frame_s
        at = bisect.bisect_left(ladder, max(need_s / apf, cfg.first_window_frames))
        return ladder[min(at, len(ladder) - 1)]

    def _floor_window(self, voice: str, extra_rtf: float = 0.0) -> float:
        """The shortest window that keeps the streams with work (plus `extra_rtf` of streams
        about to start) under window_floor_utilization of the workers."""
        cfg = self.config
        busy = self._busy_rtf + extra_rtf
        if not self.workers or busy <= 0.0:
            return 0.0
        rtf_max = self._stream_rtf(voice)
        target = rtf_max * cfg.window_floor_utilization * self.workers / busy
        return self.model.window_for_rtf(voice, rtf=target, sentence_chars=cfg.admit_sentence_chars)

    def _head_cost(self, s: StreamState, now: float) -> tuple[float, float, int]:
        """(predicted compute of the stream's next step, compute that must follow it before its
        audio exists, its window length or 0 for an encode step)."""
        sentence = s.sentences[0]
        step = sentence.encode
        model = self.model
        if sentence.frames is None:
            frames = math.ceil(model.sentence_frames(step.voice, step.chars, step.speed))
            first = self._window(s, frames, now)
            after = model.price(step.voice, StepKind.DECODE, first)
            return model.price(step.voice, StepKind.ENCODE, step.chars), after, 0
        window = self._window(s, sentence.frames - sentence.next_frame, now)
        return model.price(step.voice, StepKind.DECODE, window), 0.0, window

    def _hard_s(self, s: StreamState) -> float:
        """When a held head drops under max_lookahead_s (eligible for an otherwise idle worker)."""
        return s.eligible_s - (self.config.max_lookahead_s - self.config.lookahead_s)

    def _rekey(self, s: StreamState, now: float) -> None:
        """Recompute the next step's key and push a fresh heap entry (old ones go stale)."""
        s.version += 1
        self._epoch += 1
        if not s.sentences or s.in_flight is not None or s.closed:
            return
        compute, after, _ = self._head_cost(s, now)
        cfg = self.config
        due = self._due_s(s)
        s.due_s = due
        s.deadline_s = due - after
        s.rank_s = s.deadline_s - compute + s.shift_s
        if s.first_rank_s is not None and s.playback_start_s is None:
            # A first audio, once begun, finishes before another begins: its first window
            # ranks a tie window ahead of the encode step it follows, so the encode steps of
            # other new streams (due as soon) do not slip in between (first audio of the
            # stream that started first comes first, rather than all of them late).
            s.rank_s = min(s.rank_s, s.first_rank_s - self.config.tie_window_s)
        # Lead = audio buffered or on its way = due + jitter - now; held while > lookahead.
        # Before playback nothing is buffered but what is ready: a first audio due far ahead
        # (a burst's queue) is not held back by the cap.
        s.eligible_s = due + cfg.jitter_s - cfg.lookahead_s
        if s.playback_start_s is None and s.ready_audio_s <= cfg.lookahead_s:
            s.eligible_s = min(s.eligible_s, now)
        if s.eligible_s <= now:
            heapq.heappush(self._ready, (s.rank_s, next(self._tiebreak), s.version, s))
        else:
            heapq.heappush(self._held, (s.eligible_s, next(self._tiebreak), s.version, s))

    # ---- internals: steps ----------------------------------------------------------------

    def _dispatch(
        self, s: StreamState, now: float, fallback: bool, frames: int | None = None
    ) -> SynthesisStep:
        """Hand out the stream's next step (a window of `frames` when given: batching)."""
        sentence = s.sentences[0]
        model = self.model
        st = self._stats
        compute, after, window = self._head_cost(s, now)
        if sentence.frames is None:
            step = sentence.encode
            step.predicted_audio_s = 0.0
            st.encode_steps += 1
            if s.playback_start_s is None and s.window_frames == 0:
                s.first_rank_s = s.rank_s
        else:
            head = sentence.encode
            if frames is not None:
                window = frames
                compute = model.price(head.voice, StepKind.DECODE, window)
            step = SynthesisStep(
                stream_id=s.id,
                seq=head.seq,
                kind=StepKind.DECODE,
                text=head.text,
                voice=head.voice,
                speed=head.speed,
                start_frame=sentence.next_frame,
                frames=window,
                last=sentence.next_frame + window >= sentence.frames,
                latent=sentence.latent,
                predicted_audio_s=model.audio_s(head.voice, window),
                priority=s.priority,
                submitted_s=head.submitted_s,
            )
            sentence.next_frame += window
            s.window_frames = window
            st.decode_steps += 1
            st.decoded_frames += window
            st.context_frames += 2 * model.voice(head.voice).context_frames
        step.predicted_compute_s = compute
        step.deadline_s = self._due_s(s) - after
        step.latest_start_s = step.deadline_s - compute
        step.priority = s.priority
        step.dispatched_s = now
        s.in_flight = step
        s.inflight_audio_s = step.predicted_audio_s
        # VTC: charge the prediction now so concurrent picks see it; completion settles it.
        s.attained_s += compute
        self._in_flight += 1
        st.dispatched += 1
        if now > step.deadline_s:
            st.deadline_misses += 1
        if fallback:
            st.lookahead_fallbacks += 1
        self._rekey(s, now)  # its entries go stale: a stream has one step in flight at a time
        return step

    def _finish(self, step: SynthesisStep, compute_s: float, now: float) -> StreamState | None:
        """Common bookkeeping of a finished step; the stream, or None when the result is stale
        (cleared or closed meanwhile)."""
        cfg = self.config
        st = self._stats
        st.completed += 1
        step.slack_s = step.deadline_s - now
        if step.slack_s < 0.0:
            st.late_completions += 1
        step.overrun = (
            compute_s > cfg.overrun_factor * step.predicted_compute_s
            and compute_s > cfg.overrun_min_s
        )
        if step.overrun:
            st.overruns += 1
        s = self._streams.get(step.stream_id)
        if s is None or s.in_flight is not step:
            st.dropped_results += 1
            return None
        self._release(s)
        # VTC: the counter was charged the prediction at dispatch; settle to what it really cost.
        s.attained_s += compute_s - step.predicted_compute_s
        return s

    def _release(self, s: StreamState) -> None:
        s.in_flight = None
        s.inflight_audio_s = 0.0
        self._in_flight -= 1

    def _pop_sentence(self, s: StreamState) -> None:
        s.sentences.popleft()
        self._sentences -= 1

    def _after_step(self, s: StreamState, now: float) -> None:
        if s.sentences:
            self._push_service(s)
        else:
            self._backlogged.discard(s)
            self._set_busy(s)
        self._rekey(s, now)

    def _set_busy(self, s: StreamState) -> None:
        """Keep `_busy_rtf` = the summed steady RTF of streams with work, in O(1)."""
        share = self._stream_rtf(s.voice) if s.sentences and not s.closed else 0.0
        self._busy_rtf += share - s.busy_rtf
        s.busy_rtf = share

    # ---- internals: heaps ----------------------------------------------------------------

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

    def _pick_ready(self) -> StreamState | None:
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

    def _pick_held(self, now: float) -> StreamState | None:
        """A held-back stream for a worker that would otherwise idle: the one with the least
        audio ahead, unless even that one is past max_lookahead_s. (Its entry goes stale.)"""
        top = self._peek(self._held)
        if top is None or self._hard_s(top[3]) > now:
            return None
        return top[3]

    def _batchable(self, s: StreamState, seed: SynthesisStep, now: float) -> bool:
        """Can the stream's next step join a batch seeded by `seed` (one kind, voice, speed;
        a window of exactly seed.frames that its buffer allows, leaving no tiny tail)?"""
        sentence = s.sentences[0]
        head = sentence.encode
        if head.voice != seed.voice or head.speed != seed.speed:
            return False
        if seed.kind is StepKind.ENCODE:
            return sentence.frames is None
        if sentence.frames is None:
            return False
        remaining = sentence.frames - sentence.next_frame
        if remaining != seed.frames and remaining - seed.frames < self.config.min_window_frames:
            return False
        return self._window(s, remaining, now) >= seed.frames

    def _fill_batch(self, steps: list[SynthesisStep], seed_rank: float, now: float,
                    n: int) -> None:
        """Grow a homogeneous batch around the most urgent step: candidates within
        batch_window_s of its latest start, of its kind, voice and speed (windows of its frame
        count; encode steps of similar length first); stop before the batch would make its
        most urgent member late (Triton's dynamic batcher, with deadlines)."""
        cfg = self.config
        heap = self._ready
        limit = seed_rank + cfg.batch_window_s
        seed = steps[0]
        pool: list[_Entry] = []
        rest: list[_Entry] = []
        while heap and len(pool) + len(rest) < cfg.batch_candidates and heap[0][0] <= limit:
            entry = heapq.heappop(heap)
            if entry[2] != entry[3].version:
                continue
            (pool if self._batchable(entry[3], seed, now) else rest).append(entry)
        if seed.kind is StepKind.ENCODE:
            pool.sort(key=lambda e: abs(e[3].sentences[0].encode.chars - seed.chars))
        earliest = seed.deadline_s
        computes = [seed.predicted_compute_s]
        used = 0
        for entry in pool:
            s = entry[3]
            if len(steps) >= n:
                break
            compute, after, _ = self._head_cost(s, now)
            if seed.kind is StepKind.DECODE:
                compute = seed.predicted_compute_s
            trial = [*computes, compute]
            longest = max(trial)
            batch_s = longest + cfg.batch_marginal_cost * (sum(trial) - longest)
            earliest_if = min(earliest, self._due_s(s) - after)
            allowed = max(earliest_if - now, cfg.batch_late_growth * seed.predicted_compute_s)
            if batch_s > allowed:
                break
            earliest, computes = earliest_if, trial
            frames = seed.frames if seed.kind is StepKind.DECODE else None
            steps.append(self._dispatch(s, now, False, frames))
            used += 1
        for entry in [*pool[used:], *rest]:
            if entry[2] == entry[3].version:
                heapq.heappush(heap, entry)

    def _service_floor(self) -> float:
        """The lowest attained service among backlogged streams (0 when none)."""
        heap = self._service
        while heap:
            attained, _, s = heap[0]
            if s.sentences and not s.closed and s.attained_s == attained:
                return attained
            heapq.heappop(heap)
        return 0.0

    def _push_service(self, s: StreamState) -> None:
        heapq.heappush(self._service, (s.attained_s, next(self._tiebreak), s))

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
