"""Admission: the acceptance test for a new stream, and the load figures it rests on.

A new stream is refused when it would make urgent steps late (`AdmissionReason`): too many
streams open, steady demand past the workers' target utilization or playing listeners of two
streams late just now, or urgent work already so far behind that its first audio would be late.
`AdmissionControl` also tracks the streams opened without text yet (a burst in progress, whose
first audio is about to be asked for). Pure.
"""

from __future__ import annotations

import math

from litestream.scheduler._pacing import Pacing
from litestream.scheduler._state import StreamRecord
from litestream.scheduler.costmodel import StepKind
from litestream.scheduler.types import Admission, AdmissionReason, Pace, SchedulerConfig

__all__ = ["AdmissionControl"]

_BELOW_ONE = math.nextafter(1.0, 0.0)  # the most a replica that still admits reports
# A refusal's Retry-After sums the work queued on every stream: priced at most this often,
# refusals in between reuse the last price. At 1,000 open streams the sum per refusal was a
# fifth of the event loop's time while refusing (docs/benchmarks.md, "One process, 1,000
# listeners"); the header carries whole seconds, rounded up, so half a second of staleness is
# within its resolution.
RETRY_PRICE_EVERY_S = 0.5
# The urgent work (_urgent_compute) is summed over every backlogged stream at most this often;
# in between, only the streams whose work changed are priced again. The sum looks this much
# further ahead, so a newer `now` within it counts no less work than an exact sum would. In a
# burst of 200 handshakes the sum per admission was 14% of the event loop's time.
URGENT_REFRESH_S = 0.01


class _Urgent:
    """The last full sum of urgent work: its horizon, until when it stands, each stream's
    part and the total."""

    __slots__ = ("horizon_s", "parts", "total_s", "until_s")

    def __init__(self, horizon_s: float, until_s: float, parts: dict[StreamRecord, float]) -> None:
        self.horizon_s = horizon_s
        self.until_s = until_s
        self.parts = parts
        self.total_s = sum(parts.values())


class AdmissionControl:
    """Answers `Scheduler.admit`, `has_capacity`, `fullness` and `load` over the scheduler's
    streams."""

    def __init__(
        self,
        config: SchedulerConfig,
        pacing: Pacing,
        streams: dict[str, StreamRecord],
        backlogged: set[StreamRecord],
        changed: set[StreamRecord],
    ) -> None:
        self.config = config
        self._pacing = pacing
        self._streams = streams  # the scheduler's: every open stream
        self._backlogged = backlogged  # the scheduler's: streams with sentences
        self._default_voice = ""  # the first voice registered: prices a stream of unknown voice
        self._registered = False
        # Streams opened but without text yet (insertion order = opening order). In a burst
        # their first audio is about to be asked for: it counts as urgent work (_fresh_count).
        self._fresh: dict[str, float] = {}
        # The run queue's: streams whose work or deadline changed since it was last emptied.
        self._changed = changed
        self._urgent: _Urgent | None = None
        self._retry_price: tuple[float, float] = (-math.inf, 0.0)  # (priced at, retry_after_s)

    def register_voice(self, voice: str) -> None:
        if not self._registered:
            self._default_voice = voice
        self._registered = True

    def invalidate(self) -> None:
        """Prices or voices changed for every stream: the next urgent sum is a full one."""
        self._urgent = None

    def opened(self, stream_id: str, now: float) -> None:
        """A new stream, without text yet: part of a burst while open_grace_s lasts."""
        self._fresh[stream_id] = now

    def forget(self, stream_id: str) -> None:
        """The stream is no longer part of a burst: its text arrived, or it closed."""
        self._fresh.pop(stream_id, None)

    def decide(self, now: float, voice: str | None, pace: Pace, *,
               priced: bool = True) -> Admission:
        """The answer for a new stream speaking `voice` at `pace` (see Scheduler.admit). A
        refusal's retry_after_s is priced only when `priced` (0.0 otherwise: readiness and
        the load signal ask only whether a stream would be let in).

        What a download costs the listeners is its first audio (the BACKLOG test counts it
        like a listener's) and then only capacity they leave idle: it adds no steady share to
        the CAPACITY test, and `demand` leaves it out."""
        cfg = self.config
        pacing = self._pacing
        workers = pacing.workers
        if cfg.max_streams and len(self._streams) >= cfg.max_streams:
            return self._refuse(AdmissionReason.STREAMS, now, priced)
        if workers == 0:
            return self._refuse(AdmissionReason.CAPACITY, now, priced)
        new_voice = self._default_voice if voice is None else voice
        own_rtf = pacing.stream_rtf(new_voice) if pace is Pace.LISTENER else 0.0
        if self.demand(now) + own_rtf > workers * cfg.target_utilization:
            return self._refuse(AdmissionReason.CAPACITY, now, priced)
        if pace is Pace.LISTENER and now - pacing.listener_late_s < cfg.admit_late_hold_s:
            # What the prices cannot see: playing listeners of two streams just got their
            # audio past its deadline (`Pacing.listener_late`). Offered 2,000 stand-in
            # listeners in 10 s on two cores, the GIL ran out before the workers did, and the
            # prices admitted 1,350 who nearly all stalled.
            return self._refuse(AdmissionReason.CAPACITY, now, priced)
        # A burst: the streams opened without text yet, and this one, are about to start; each
        # needs its first audio and the window after it, at the windows that load allows.
        fresh = self._fresh_count(now)
        extra_rtf = (fresh + 1) * pacing.stream_rtf(new_voice)
        first = pacing.first_audio_cost_s(new_voice, cfg.admit_sentence_chars, extra_rtf=extra_rtf)
        # Each first audio counts at most at the target: a voice slower than the target even on
        # an idle server (Kokoro on CPU) has a late first audio but is served, not refused for
        # its own cost; and one long encode step holds one worker, not all of them.
        own = min(first, cfg.first_audio_target_s)
        urgent = self._urgent_compute(now)
        if pace is Pace.DOWNLOAD:
            # A download's first audio waits behind every first audio owed, however far out
            # their deadlines (a burst of downloads spreads them out; a listener's steady share
            # bounds a burst of listeners, a download has none).
            urgent = max(urgent, pacing.pending_first_s)
        urgent += fresh * own
        if urgent / workers + own > cfg.first_audio_target_s + cfg.admit_backlog_s:
            return self._refuse(AdmissionReason.BACKLOG, now, priced)
        return Admission(accepted=True, retry_after_s=0.0, reason=AdmissionReason.ACCEPTED)

    def fullness(self, now: float) -> float:
        """Admitted load over capacity, 0..1: 1.0 exactly when `decide` refuses a new stream
        of the default voice now (for any reason: streams, capacity, backlog, no worker);
        below, the larger of the steady demand over the most demand that still admits one
        more stream, and the open streams over `max_streams`."""
        if not self.decide(now, None, Pace.LISTENER, priced=False).accepted:
            return 1.0
        cfg = self.config
        pacing = self._pacing
        shares = [0.0]
        if cfg.max_streams:
            shares.append(len(self._streams) / cfg.max_streams)
        room = pacing.workers * cfg.target_utilization - pacing.stream_rtf(self._default_voice)
        if room > 0.0:
            shares.append(self.demand(now) / room)
        # Admitted, so every share is at most 1; one exactly at its limit still admits.
        return min(max(shares), _BELOW_ONE)

    def demand(self, now: float) -> float:
        """Summed steady RTF share of active listener streams (open-but-idle ones cost nothing;
        a download runs on the capacity they leave idle)."""
        # Every admission test sums over all open streams: price each voice once per call
        # (the cost model cannot change during it), not once per stream (CostModel.rtf walks
        # the pricing functions: at 1,000 streams that was most of an admission's cost). The
        # sum itself, in the same order, is unchanged.
        shares: dict[str, float] = {}
        stream_rtf = self._pacing.stream_rtf
        total = 0.0
        for s in self._streams.values():
            if s.pace is not Pace.LISTENER or not self._is_active(s, now):
                continue
            # Before its first text, at the voice it was admitted for: a burst of Japanese
            # streams opened at once, priced at the default voice (an eighth of Kokoro's
            # cost on a CPU), was admitted four to a worker and every one of them stalled.
            voice = s.voice or self._default_voice
            share = shares.get(voice)
            if share is None:
                share = shares[voice] = stream_rtf(voice)
            total += share
        return total

    def _refuse(self, reason: AdmissionReason, now: float, priced: bool) -> Admission:
        return Admission(False, self._retry_after_s(now) if priced else 0.0, reason)

    def _retry_after_s(self, now: float) -> float:
        """How long a refused client should wait: the backlog (`backlog_s`) over the workers,
        at least 1 s; priced at most every RETRY_PRICE_EVERY_S, refusals in between reuse it."""
        priced_at, retry_after_s = self._retry_price
        if not priced_at <= now < priced_at + RETRY_PRICE_EVERY_S:
            retry_after_s = max(1.0, self.backlog_s() / max(self._pacing.workers, 1))
            self._retry_price = (now, retry_after_s)
        return retry_after_s

    def backlog_s(self) -> float:
        """The work that goes before a new stream's first audio (O(queued sentences)): the
        listeners' queued text, and of a download only its first audio while owed
        (first_cost_s, 0 after it): the rest of its text runs on capacity listeners leave
        idle and yields to every newcomer's first audio (the pick order), so counting it
        (minutes of audio in a campaign of downloads) would only send clients away for longer
        while the workers could serve them."""
        return sum(self._work_s(s, math.inf) if s.pace is Pace.LISTENER else s.first_cost_s
                   for s in self._backlogged)

    def _is_active(self, s: StreamRecord, now: float) -> bool:
        if s.sentences or s.ready_audio_s > 0.0:
            return True
        if s.playback_start_s is not None and s.playback_start_s + s.sent_audio_s > now:
            return True  # healthy playback: the listener is still playing
        return not s.submitted and now - s.opened_s < self.config.open_grace_s

    def _work_s(self, s: StreamRecord, audio_limit_s: float) -> float:
        """Predicted compute of a stream's remaining work, until `audio_limit_s` of its audio
        is covered: encode steps whole, decode windows only as far as the limit (the windows
        past it are not due yet; a stream streams inside its sentences)."""
        total = 0.0
        audio = 0.0
        window = max(s.window_frames, self.config.first_window_frames)
        model = self._pacing.model
        for sentence in s.sentences:
            step = sentence.encode
            if sentence.cached:  # slices of cached audio: no compute
                audio += model.audio_s(step.voice, (sentence.frames or 0) - sentence.next_frame)
                if audio >= audio_limit_s:
                    break
                continue
            if sentence.frames is None:
                total += model.price(step.voice, StepKind.ENCODE, step.chars)
                frames = model.sentence_frames(step.voice, step.chars, step.speed)
            else:
                frames = sentence.frames - sentence.next_frame
            if math.isfinite(audio_limit_s):
                per_frame_s = model.audio_s(step.voice, 1.0)
                if per_frame_s > 0.0:
                    frames = min(frames, max(1.0, (audio_limit_s - audio) / per_frame_s))
            total += model.decode_cost_s(step.voice, frames, window)
            audio += model.audio_s(step.voice, frames)
            if audio >= audio_limit_s:
                break
        return total

    def _urgent_compute(self, now: float) -> float:
        """Predicted compute of queued work due within a first audio's deadline of now
        (first_audio_target_s + first_audio_slack_s), looking up to URGENT_REFRESH_S further:
        summed over every backlogged stream at most that often, and in between updated for the
        streams whose work changed (`changed`, filled by the run queue's rekeys)."""
        urgent = self._urgent
        if urgent is None or not urgent.until_s - URGENT_REFRESH_S <= now < urgent.until_s:
            horizon = now + self._pacing.first_due_s + URGENT_REFRESH_S
            parts: dict[StreamRecord, float] = {}
            for s in self._backlogged:
                part = self._urgent_part(s, horizon)
                if part > 0.0:
                    parts[s] = part
            self._urgent = urgent = _Urgent(horizon, now + URGENT_REFRESH_S, parts)
            self._changed.clear()
        elif self._changed:
            parts = urgent.parts
            for s in self._changed:
                old = parts.pop(s, 0.0)
                new = self._urgent_part(s, urgent.horizon_s) if s in self._backlogged else 0.0
                if new > 0.0:
                    parts[s] = new
                urgent.total_s += new - old
            self._changed.clear()
        return max(urgent.total_s, 0.0)

    def _urgent_part(self, s: StreamRecord, horizon: float) -> float:
        """One stream's work due by `horizon` (0 when none)."""
        if s.pace is Pace.DOWNLOAD and s.playback_start_s is not None:
            return 0.0  # past its first audio a download is due to no listener
        due = self._pacing.due_s(s)
        return self._work_s(s, horizon - due) if due <= horizon else 0.0

    def _fresh_count(self, now: float) -> int:
        """How many streams opened within open_grace_s are still without text: a burst in
        progress, whose first audio is about to be asked for."""
        while self._fresh:
            stream_id, opened_s = next(iter(self._fresh.items()))
            if now - opened_s < self.config.open_grace_s:
                break
            del self._fresh[stream_id]  # it waited too long to count as part of a burst
        return len(self._fresh)
