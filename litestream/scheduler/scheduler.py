"""Deadlines, order, fairness, lookahead, admission for synthesis steps. Pure: the caller passes
`now`.

# The core idea: a stream is its sent audio racing its listener's playback clock; the next step
# is due before the listener runs dry, less the jitter budget.

Everything here serves that (protocol-v1: Timing promise). The event loop owns one `Scheduler`;
nothing in this module or the parts it is built from reads a clock, sleeps, logs or locks:
counters and per-step results are returned for the caller to log and export.

Units of work. A sentence (one segmenter chunk, with the `seq` the caller's session gave it) is
an ENCODE step (the front pass: it fixes the sentence's length in frames), then DECODE windows
in order (engine/base.py). A listener stream has at most one step in flight, so its results come
back in order; a download past its first audio may have one per sentence on as many sentences
as there are workers (each sentence's windows in order; the session orders sentences by seq).
Window size is the control the scheduler turns. Two paces (protocol-v1: Pace; `types.Pace`):
a listener races its player's clock, a download has none after its first audio and runs on idle
capacity, held by what its client has not read.

The parts, each owning one question (`Scheduler` moves streams and steps through their life and
asks them):
    types.py        the public types: Priority, SchedulerConfig, SynthesisStep, Admission...
    costmodel.py    what a step costs: predicted, then learned from measured steps
    _state.py       one stream's state and its queued sentences
    _pacing.py      when a stream's next audio is due, how long its next window is, costs
    _run_queue.py   which step runs next (deadline order, fairness, lookahead cap), batches
    _in_flight.py   a step's life once handed out: finished, taken back, cancelled
    _admission.py   whether a new stream is accepted; the load signal

Call sequence (the server/session side; `now` from the caller's monotonic clock):

    sched.register_voice(voice_id, context_frames=16, sample_rate=22050)   # once per voice
    sched.set_workers(n, now)                  # at start, and whenever workers die or come back
    adm = sched.admit(now, voice, pace)        # new connection; adm.reason -> client, metrics
    sched.open_stream(stream_id, priority, now, pace, voice)  # set_pace(...) before its first text
    sched.submit(stream_id, seq, sentence, speed=..., voice=..., now=now)   # per segmenter chunk
    #   a sentence found in the cache: submit(..., cached_frames=n, latent=its audio); its
    #   windows come out of next_steps with step.cached (slice the audio, run no worker)
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
    sched.audio_delivered(stream_id, audio_s, now)   # a download's client took them: True =
                                               # it may run again, dispatch
    wake = sched.next_wakeup_s(now)            # when nothing is runnable: sleep until then
    sched.clear(stream_id, now) / sched.close_stream(stream_id, now)    # barge-in / end

Every call that changes state takes the caller's `now`, also the three that do not read it yet
(`set_workers`, `clear`, `close_stream`): one rule for callers, and a policy that starts to care
about time needs no new signature. `stats()`, `load(now)` and `priority(stream_id)` are the
read-only views, for the metrics, benchmarks and tests.
"""

from __future__ import annotations

import math
from dataclasses import replace

from litestream.scheduler._admission import AdmissionControl
from litestream.scheduler._in_flight import InFlight
from litestream.scheduler._pacing import Pacing
from litestream.scheduler._run_queue import RunQueue
from litestream.scheduler._state import Sentence, StreamRecord, sentence_of
from litestream.scheduler.costmodel import CostModel, CostPriors, StepKind
from litestream.scheduler.types import (
    Admission,
    Pace,
    Priority,
    SchedulerConfig,
    SchedulerStats,
    SynthesisStep,
)


class Scheduler:
    """Deadline-ordered, fair step scheduler for `workers` identical workers. Not thread-safe."""

    def __init__(
        self, config: SchedulerConfig, workers: int, *, priors: CostPriors | None = None
    ) -> None:
        if workers < 0:
            raise ValueError("workers must be >= 0")
        self.config = config
        self.model = CostModel(priors)
        self._streams: dict[str, StreamRecord] = {}
        self._backlogged: set[StreamRecord] = set()  # streams with sentences
        self._pacing = Pacing(config, self.model, workers)
        self._pacing.streams = self._backlogged
        self._queue = RunQueue(config, self._pacing)
        self._admission = AdmissionControl(config, self._pacing, self._streams, self._backlogged,
                                           self._queue.changed)
        self._stats = SchedulerStats()
        self._steps = InFlight(config, self._pacing, self._stats)
        self._sentences = 0
        self._sample_rates: dict[str, int] = {}

    @property
    def workers(self) -> int:
        """Workers serving now (set_workers)."""
        return self._pacing.workers

    # ---- voices and workers --------------------------------------------------------------

    def register_voice(
        self, voice: str, *, context_frames: int, sample_rate: int | None = None,
        batched_encode: bool = False,
    ) -> None:
        """Declare a voice before its first stream: frames of context its decode windows compute
        on each side (0 for a non-streaming voice), its sample rate (with each encode step's
        samples_per_frame it gives the exact audio per frame) and whether a batch of its encode
        steps is one engine run (`Voice.encode_batch` on a GPU; else its front passes run one
        after another). The first voice registered prices admission for a stream whose voice
        is not known yet."""
        self._admission.register_voice(voice)
        self.model.register(voice, context_frames=context_frames, batched_encode=batched_encode)
        if sample_rate is not None:
            if sample_rate <= 0:
                raise ValueError("sample_rate must be > 0")
            self._sample_rates[voice] = sample_rate
        self._admission.invalidate()

    def set_workers(self, n: int, now: float) -> None:
        """Capacity follows the workers actually serving (a worker lost to the watchdog, or one
        restarted): admission, load, window growth and retry-after use `n`. With 0, every new
        stream is refused; queued work waits for a worker."""
        if n < 0:
            raise ValueError("workers must be >= 0")
        self._pacing.workers = n
        self._admission.invalidate()

    # ---- streams -------------------------------------------------------------------------

    def admit(self, now: float, voice: str | None = None,
              pace: Pace | str = Pace.LISTENER) -> Admission:
        """Acceptance test for a NEW stream speaking `voice` (None: not known yet; priced at
        the first voice registered) at `pace`: would it make urgent steps late?

        Refused (reason, see AdmissionReason) when
        - STREAMS: `max_streams` streams are open;
        - CAPACITY: the summed steady RTF shares of active streams plus the new one exceed
          `workers * target_utilization` (EDF under overload makes every step late: the domino
          effect); open-but-idle streams cost nothing, and a download costs only its first
          audio (BACKLOG), then idle capacity; or no worker is serving; or, for a listener,
          playing listeners of two streams had steps finish past their deadlines within
          `admit_late_hold_s` (`Pacing.listener_late`);
        - BACKLOG: the compute due within a first audio's deadline, plus the new stream's first
          audio (its first encode step and first window), divided by workers, is more than
          `first_audio_target_s + admit_backlog_s`.
        retry_after_s is the time to drain, on all workers, the listeners' queued text and the
        first audio downloads still owe (the rest of a download's text yields to a newcomer's
        first audio), at least 1 s; priced at most every half second
        (`_admission.RETRY_PRICE_EVERY_S`), refusals in between reuse the last price.
        Every price comes from `CostModel.price`, per voice.
        """
        admission = self.would_admit(now, voice, pace)
        if not admission.accepted:
            self._stats.refused += 1
        return admission

    def would_admit(self, now: float, voice: str | None = None,
                    pace: Pace | str = Pace.LISTENER) -> Admission:
        """`admit`'s answer, counting no refusal: for a client asking why its handshake was
        refused (a plain GET of the stream endpoint), which is no new refusal."""
        return self._admission.decide(now, voice, Pace(pace))

    def has_capacity(self, now: float) -> bool:
        """Would a new stream be admitted now? For readiness probes: counts no refusal."""
        return self._admission.decide(now, None, Pace.LISTENER, priced=False).accepted

    def fullness(self, now: float) -> float:
        """Admitted load over capacity, 0..1: the per-replica signal autoscalers scale on
        (litestream_load). 1.0 exactly when `admit` would refuse a new stream now, so readiness
        (`has_capacity`) and refusals agree with it; below 1, the larger of the active streams'
        summed steady RTF over the most that still admits one more stream (`workers x
        target_utilization` less one stream's share) and the open streams over `max_streams`.
        Counts no refusal."""
        return self._admission.fullness(now)

    def load(self, now: float) -> float:
        """Predicted compute demand of active streams over capacity: 1.0 = every worker busy.

        The per-pod signal for autoscaling (litestream_scheduler_load); infinite when work is
        active and no worker is serving."""
        demand = self._admission.demand(now)
        if self.workers == 0:
            return math.inf if demand > 0.0 else 0.0
        return demand / self.workers

    def open_stream(self, stream_id: str, priority: Priority | str, now: float,
                    pace: Pace | str | None = None, voice: str | None = None) -> None:
        """Open (or re-open with a new priority) a stream; re-opening keeps its work, counter
        and pace unless `pace` is given (a new stream: LISTENER unless given). `voice`: the
        voice it was admitted for (`admit`), which prices it until its first text; None: the
        first voice registered."""
        prio = Priority(priority)
        s = self._streams.get(stream_id)
        if s is None:
            s = StreamRecord(stream_id, prio, self.config.shift_s(prio), now,
                             Pace(pace or Pace.LISTENER))
            s.voice = voice or ""
            self._streams[stream_id] = s
            self._admission.opened(stream_id, now)
        elif pace is not None:
            self.set_pace(stream_id, pace, now)
        else:
            s.priority = prio
            s.shift_s = self.config.shift_s(prio)
        # VTC: a (re)opened stream starts at the lowest active counter, so idling earns no credit.
        s.attained_s = max(s.attained_s, self._queue.service_floor())
        if s.sentences:
            self._queue.push_service(s)
            self._queue.rekey(s, now)

    def set_pace(self, stream_id: str, pace: Pace | str, now: float) -> None:
        """protocol-v1: Pace, for the whole stream: the caller sets it before the stream's first
        text (a session refuses it later). Unknown streams are ignored."""
        s = self._streams.get(stream_id)
        if s is None:
            return
        s.pace = Pace(pace)
        self._pacing.set_busy(s)
        if s.sentences:
            self._queue.rekey(s, now)

    def submit(
        self, stream_id: str, seq: int, text: str, *, speed: float, voice: str, now: float,
        cached_frames: int | None = None, latent: object | None = None, words: bool = True,
    ) -> SynthesisStep:
        """Queue one sentence (a segmenter chunk, `seq` from the caller's session) at its
        stream's tail; returns its encode step. KeyError if the stream is unknown.

        A sentence found in the cache comes with `cached_frames` (its length in frames, see
        `samples_per_frame`) and its audio as `latent`: it has no encode step, and its windows
        are handed out in order and at the stream's pace like any other (`step.cached`: the
        caller slices the audio, no worker runs them). `words`: the encode step also times
        the sentence's words (`SynthesisStep.words`)."""
        s = self._streams[stream_id]
        if speed <= 0.0:
            raise ValueError("speed must be > 0")
        if not s.sentences:
            self._pacing.text_arrived(s, voice, len(text), speed, now)
            # VTC: returning from idle starts at the lowest active counter (no saved-up credit).
            s.attained_s = max(s.attained_s, self._queue.service_floor())
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
            words=words,
        )
        if cached_frames is not None and cached_frames < 1:
            raise ValueError("cached_frames must be >= 1")
        s.sentences.append(Sentence(step, cached_frames, latent))
        s.submitted = True
        self._admission.forget(stream_id)
        s.voice = voice
        self._sentences += 1
        if len(s.sentences) == 1:
            self._backlogged.add(s)
            self._queue.push_service(s)
            self._pacing.set_busy(s)
            self._queue.rekey(s, now)
            step.deadline_s, step.latest_start_s = s.deadline_s, s.rank_s - s.shift_s
        else:
            self._queue.touch(s)
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
        self._steps.cancel(s)
        s.inflight_audio_s = s.ready_audio_s = s.sent_audio_s = s.out_s = 0.0
        s.playback_start_s = None
        self._pacing.end_first(s)
        s.window_frames = 0
        self._backlogged.discard(s)
        self._pacing.set_busy(s)
        self._queue.drop(s)
        return dropped

    def close_stream(self, stream_id: str, now: float) -> int:
        """Clear and forget the stream; returns how many sentences were dropped."""
        dropped = self.clear(stream_id, now)
        s = self._streams.pop(stream_id, None)
        self._admission.forget(stream_id)
        if s is not None:
            s.closed = True
        return dropped

    # ---- decisions -----------------------------------------------------------------------

    def next_steps(self, now: float, max_steps: int = 1, *,
                   cached_only: bool = False) -> list[SynthesisStep]:
        """Up to `max_steps` steps for ONE idle worker (a batch when > 1); [] when nothing may run.

        A batch is homogeneous: one kind, one voice, one speed, and decode windows of one frame
        count (GPU batching with no padding). The order (`_run_queue.py`): due work, then first
        audio, then listeners under the lookahead cap, then downloads, then run-ahead for a
        worker that would otherwise idle, never past `max_lookahead_s` (see next_wakeup_s).
        A cached window (step.cached) is always alone. `cached_only`: no worker is idle, hand
        out only a cached window, if one is next (it needs none)."""
        if max_steps < 1:
            return []
        queue = self._queue
        queue.compact(self._backlogged, now)
        found = queue.pick(now)
        if found is None:
            return []
        picked, heap, fallback = found
        head = self._pacing.next_sentence(picked)
        if cached_only and (head is None or not head.cached):
            return []
        seed_rank = picked.rank_s
        seed = self._dispatch(picked, now, fallback)
        steps = [seed]
        if max_steps > 1 and heap is not None and not seed.cached:
            frames = seed.frames if seed.kind is StepKind.DECODE else None
            for s in queue.batch_mates(seed, seed_rank, now, max_steps - 1, heap):
                steps.append(self._dispatch(s, now, False, frames))
            if len(steps) > 1:
                self._stats.batches += 1
                self._stats.batched_steps += len(steps)
        return steps

    def requeue(self, steps: list[SynthesisStep], now: float) -> None:
        """Put back steps that were handed out but could not be dispatched (no worker took
        them): each returns to the head of its stream, as if never handed out. Never lost."""
        for step in steps:
            s = self._streams.get(step.stream_id)
            if s is None or step not in s.in_flight:
                continue  # cleared or closed meanwhile: nothing to put back
            self._steps.take_back(s, step)
            self._queue.push_service(s)
            self._queue.rekey(s, now)

    def encoded(
        self,
        step: SynthesisStep,
        *,
        frames: int,
        samples_per_frame: int,
        latent: object,
        compute_s: float,
        now: float,
        batch: int = 1,
    ) -> bool:
        """Record a finished encode step: the sentence is `frames` frames long. True = go on
        (send the sentence's `chunk` event; its windows follow); False = its stream was cleared
        or closed meanwhile, drop it. A sentence of 0 frames is finished here. `batch`: the
        steps of its run when they ran as one (`compute_s` is the run's share)."""
        self.model.observe_encode(
            step.voice, chars=step.chars, speed=step.speed, frames=frames, compute_s=compute_s,
            batch=batch,
        )
        rate = self._sample_rates.get(step.voice)
        if rate is not None and samples_per_frame > 0:
            self.model.voice(step.voice).audio_per_frame_s = samples_per_frame / rate
        s = self._finish(step, compute_s, now)
        if s is None:
            return False
        sentence = sentence_of(s, step)
        sentence.frames = frames
        sentence.latent = latent
        sentence.next_frame = 0
        if frames <= 0:
            self._pop_sentence(s, sentence)
        self._after_step(s, now)
        return True

    def decoded(self, step: SynthesisStep, *, audio_s: float, compute_s: float, now: float,
                batch: int = 1) -> bool:
        """Record a finished decode window: True = send its audio (`audio_s` seconds; the
        sentence's last piece when step.last); False = its stream was cleared or closed
        meanwhile, drop it. `batch`: the windows of its run (`compute_s` is the run's share)."""
        if not step.cached:
            self.model.observe_decode(step.voice, frames=step.frames, audio_s=audio_s,
                                      compute_s=compute_s, sides=step.context_sides,
                                      batch=batch)
        s = self._finish(step, compute_s, now)
        if s is None:
            return False
        s.ready_audio_s += audio_s
        if step.last:
            self._pop_sentence(s, sentence_of(s, step))
        self._after_step(s, now)
        return True

    def fail(self, step: SynthesisStep, now: float) -> None:
        """Release a step whose synthesis failed and drop the rest of its sentence (no later
        window of it is handed out); the stream goes on with its next sentence."""
        self._stats.failed += 1
        s = self._streams.get(step.stream_id)
        if s is None or step not in s.in_flight:
            return
        self._steps.release(s, step)
        self._pop_sentence(s, sentence_of(s, step))
        self._after_step(s, now)

    def audio_sent(self, stream_id: str, audio_s: float, now: float) -> None:
        """The caller sent `audio_s` seconds of audio (a window or a frame) to the client.

        The playback clock starts at the first call; buffered = sent - (now - start). Audio sent
        after the buffer ran out is counted as a stall, and the clock moves to where the
        listener's player resumes (now)."""
        s = self._streams.get(stream_id)
        if s is None:
            return
        stall_s = self._pacing.audio_sent(s, audio_s, now)
        if s.pace is Pace.DOWNLOAD:
            # No listener's clock: what waits for the client to read holds it instead (a
            # player that listens as it downloads may run dry; that is no listener stall).
            s.out_s += audio_s
            stall_s = 0.0
        if stall_s > 0.0:
            self._stats.stalls += 1
            self._stats.stall_s += stall_s
            s.stall_s += stall_s
        # Sending ready audio moves it from "ready" to "sent": the deadline stays put unless
        # the clock just started or moved. Skip the heap push when nothing changed.
        if (
            s.sentences
            and not s.in_flight
            and abs(self._pacing.due_s(s) - s.due_s) > 1e-6
        ):
            self._queue.rekey(s, now)

    def audio_delivered(self, stream_id: str, audio_s: float, now: float) -> bool:
        """A download's client took `audio_s` seconds of its audio (its socket accepted them).
        True when this lets the stream's synthesis run again: the caller dispatches."""
        s = self._streams.get(stream_id)
        if s is None or s.pace is not Pace.DOWNLOAD:
            return False
        s.out_s = max(0.0, s.out_s - audio_s)
        if s.blocked and not self._pacing.download_held(s, self._pacing.next_sentence(s)):
            self._queue.rekey(s, now)
            return True
        return False

    def samples_per_frame(self, voice: str) -> int:
        """Samples in one of the voice's frames (its vocoder's hop): a cached sentence's length
        in frames is its samples over this, rounded up."""
        rate = self._sample_rates.get(voice)
        if rate is None:
            raise ValueError(f"voice {voice!r} was registered without a sample rate")
        # The frame's audio as the model knows it: frames x audio_per_frame_s is then the
        # cached audio's length, whichever hop the voice has.
        return max(1, round(self.model.voice(voice).audio_per_frame_s * rate))

    # ---- load signals --------------------------------------------------------------------

    def next_wakeup_s(self, now: float) -> float | None:
        """The earliest time at which next_steps would hand an idle worker work, absent other
        events: `now` when work is runnable, the time the first held-back stream drops under
        `max_lookahead_s` when all queued work is past it, None when nothing is runnable."""
        return self._queue.wakeup_s(now)

    def queued_sentences(self, stream_id: str | None = None) -> int:
        """Sentences submitted and not finished (the one under way included)."""
        if stream_id is None:
            return self._sentences
        s = self._streams.get(stream_id)
        return len(s.sentences) if s is not None else 0

    def priority(self, stream_id: str) -> Priority | None:
        """The class a stream's steps are queued in now (None: no such stream)."""
        s = self._streams.get(stream_id)
        return s.priority if s is not None else None

    def audio_ahead_s(self, stream_id: str, now: float) -> float | None:
        """Audio this stream's listener has yet to hear that exists: sent and not played yet,
        plus made and not sent yet. None before its first audio (or for an unknown stream)."""
        s = self._streams.get(stream_id)
        if s is None or s.playback_start_s is None:
            return None
        return max(0.0, s.playback_start_s + s.sent_audio_s - now) + s.ready_audio_s

    def underrun_s(self, stream_id: str) -> float:
        """Estimated seconds this stream's listener ran dry (for `done.stats.underrun_ms`)."""
        s = self._streams.get(stream_id)
        return s.stall_s if s is not None else 0.0

    def stats(self) -> SchedulerStats:
        """A snapshot: counters since start, gauges now. O(streams): call it for metrics only."""
        snap = replace(self._stats)
        snap.queued_sentences = self._sentences
        snap.in_flight = self._steps.count
        snap.workers = self.workers
        snap.open_streams = len(self._streams)
        snap.active_streams = len(self._backlogged)
        snap.held_streams = self._queue.held_streams()
        if self._backlogged:
            counters = [s.attained_s for s in self._backlogged]
            snap.service_spread_s = max(counters) - min(counters)
        return snap

    # ---- internals: steps ----------------------------------------------------------------

    def _dispatch(
        self, s: StreamRecord, now: float, fallback: bool, frames: int | None = None
    ) -> SynthesisStep:
        """Hand out the stream's next step (a window of `frames` when given: batching)."""
        step = self._steps.hand_out(s, now, fallback, frames)
        self._queue.rekey(s, now)  # its entries go stale; a next step it may run now is re-queued
        return step

    def _finish(self, step: SynthesisStep, compute_s: float, now: float) -> StreamRecord | None:
        """Common bookkeeping of a finished step; the stream, or None when the result is stale
        (cleared or closed meanwhile)."""
        s = self._streams.get(step.stream_id)
        return s if self._steps.finish(step, s, compute_s, now) else None

    def _pop_sentence(self, s: StreamRecord, sentence: Sentence) -> None:
        """The sentence is done (its last window, a failure, or 0 frames): it leaves its
        stream's queue (the head, except for a download's sentences decoded in parallel)."""
        if s.sentences[0] is sentence:
            s.sentences.popleft()
        else:
            s.sentences.remove(sentence)
        self._sentences -= 1

    def _after_step(self, s: StreamRecord, now: float) -> None:
        if s.sentences:
            self._queue.push_service(s)
        else:
            self._backlogged.discard(s)
            self._pacing.set_busy(s)
        self._queue.rekey(s, now)

