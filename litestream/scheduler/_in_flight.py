"""Steps in flight: a step's life once the queue has picked its stream.

Handed out (built from the stream's head sentence, its prediction charged to the stream's VTC
counter), then finished (slack and overrun noted, the charge settled to what it cost), or taken
back (requeued: as if never handed out), or cancelled (its stream was cleared: the result will be
dropped). A stream has at most one step in flight per sentence (Pacing.next_sentence). Pure.
"""

from __future__ import annotations

from litestream.scheduler._pacing import Pacing
from litestream.scheduler._state import StreamRecord, sentence_of
from litestream.scheduler.costmodel import StepKind, context_sides
from litestream.scheduler.types import Pace, SchedulerConfig, SchedulerStats, SynthesisStep

__all__ = ["InFlight"]


class InFlight:
    """The steps handed out and not yet finished, and the counters of their lives."""

    def __init__(self, config: SchedulerConfig, pacing: Pacing, stats: SchedulerStats) -> None:
        self.config = config
        self._pacing = pacing
        self._stats = stats  # the scheduler's counters
        self.count = 0  # handed out, not yet finished (cancelled ones excluded)

    def hand_out(
        self, s: StreamRecord, now: float, fallback: bool, frames: int | None = None
    ) -> SynthesisStep:
        """The stream's next step (a window of `frames` when given: batching), now in flight.
        The caller rekeys the stream: its heap entries go stale."""
        sentence = self._pacing.next_sentence(s)
        assert sentence is not None
        model = self._pacing.model
        st = self._stats
        compute, after, window = self._pacing.head_cost(s, now, handing_out=frames is None)
        if sentence.frames is None:
            step = sentence.encode
            step.predicted_audio_s = 0.0
            st.encode_steps += 1
            if s.playback_start_s is None and s.window_frames == 0:
                s.first_rank_s = s.rank_s
        else:
            head = sentence.encode
            if frames is not None and not sentence.cached:
                window = frames
                compute = model.price(head.voice, StepKind.DECODE, window, context_sides(
                    sentence.next_frame, window, sentence.frames))
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
                cached=sentence.cached,
                predicted_audio_s=model.audio_s(head.voice, window),
                priority=s.priority,
                submitted_s=head.submitted_s,
            )
            sentence.next_frame += window
            if not step.last or window > s.window_frames:
                # A sentence's last window is what was left of it: shorter than the windows
                # had grown to, it does not set the next sentence's windows back.
                s.window_frames = window
            if sentence.cached:
                st.cached_windows += 1
            else:
                st.decode_steps += 1
                st.decoded_frames += window
                st.context_frames += 2 * model.voice(head.voice).context_frames
        step.predicted_compute_s = compute
        step.deadline_s = self._pacing.due_s(s) - after
        step.latest_start_s = step.deadline_s - compute
        step.priority = s.priority
        step.dispatched_s = now
        s.in_flight.append(step)
        s.inflight_audio_s += step.predicted_audio_s
        # VTC: charge the prediction now so concurrent picks see it; completion settles it.
        s.attained_s += compute
        self.count += 1
        st.dispatched += 1
        if now > step.deadline_s:
            st.late_handouts += 1
        if fallback:
            st.lookahead_fallbacks += 1
        return step

    def finish(
        self, step: SynthesisStep, s: StreamRecord | None, compute_s: float, now: float
    ) -> bool:
        """Common bookkeeping of a finished step of stream `s` (None: closed); False when the
        result is stale (the stream was cleared or closed meanwhile)."""
        cfg = self.config
        st = self._stats
        st.completed += 1
        step.slack_s = step.deadline_s - now
        if step.slack_s < 0.0:
            st.late_completions += 1
            if s is not None and s.pace is Pace.LISTENER and s.playback_start_s is not None:
                self._pacing.listener_late(s.id, now)
        step.overrun = (
            compute_s > cfg.overrun_factor * step.predicted_compute_s
            and compute_s > cfg.overrun_min_s
        )
        if step.overrun:
            st.overruns += 1
        if s is None or step not in s.in_flight:
            st.dropped_results += 1
            return False
        self.release(s, step)
        # VTC: the counter was charged the prediction at dispatch; settle to what it really cost.
        s.attained_s += compute_s - step.predicted_compute_s
        return True

    def take_back(self, s: StreamRecord, step: SynthesisStep) -> None:
        """Put `step`, handed out but never dispatched, back in its sentence."""
        self.release(s, step)
        s.attained_s -= step.predicted_compute_s  # VTC: it was charged at dispatch
        if step.kind is StepKind.DECODE:
            sentence_of(s, step).next_frame = step.start_frame
            if s.playback_start_s is None and s.ready_audio_s <= 0.0 and not any(
                    other.kind is StepKind.DECODE for other in s.in_flight):
                s.window_frames = 0  # no audio of it exists yet: its next window is a first
        step.dispatched_s = None
        self._stats.requeued += 1

    def cancel(self, s: StreamRecord) -> None:
        """The stream was cleared: its steps in flight, if any, will come back stale."""
        self.count -= len(s.in_flight)
        self._stats.cancelled_in_flight += len(s.in_flight)
        s.in_flight = []
        s.inflight_audio_s = 0.0

    def release(self, s: StreamRecord, step: SynthesisStep) -> None:
        s.in_flight.remove(step)
        s.inflight_audio_s = sum(x.predicted_audio_s for x in s.in_flight)
        self.count -= 1
