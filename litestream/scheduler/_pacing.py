"""Pacing: when each stream's next audio is due, how long its next window is, what work costs.

Deadlines. A stream's playback clock starts at its first `audio_sent`; the listener runs dry at
`playback_start + sent`. The next step is due when the audio ahead of it (sent, plus completed
but not sent) runs out, less `jitter_s`; an encode step is due earlier by its first window's
compute, since that window must follow it before any audio of the sentence exists. Before
playback starts, first audio is due at the text's arrival plus `first_audio_target_s` (ordered as
due `first_audio_slack_s` later: a listener who has not started can wait a little, one who is
playing would hear a stall). A stream whose buffer drained while it had no work is idle, not
stalled: its next text starts a fresh first audio and a small first window again.

Windows. Window size is the control the scheduler turns: a stream's first window is small
(`first_window_frames`: 32 frames, 0.37 s of the Piper voice's audio, so first audio = one
front pass + one small window);
each later window may grow by about 1/utilization while its compute fits inside the playback of
the audio already buffered, up to `max_window_frames` (context margins then cost little); a thin
buffer shrinks it again (docs/scheduling.md: streaming inside the model). Every cost is priced by
`CostModel.price`, learned per voice and step kind.

`Pacing` holds what these figures depend on beyond one stream: the workers serving, the load of
the streams with work, and the first audio still owed to streams waiting for one. Pure.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Collection

from litestream.scheduler._state import Sentence, StreamRecord
from litestream.scheduler.costmodel import CostModel, StepKind, context_sides
from litestream.scheduler.types import Pace, SchedulerConfig

__all__ = ["Pacing", "window_ladder"]


def window_ladder(cfg: SchedulerConfig) -> list[int]:
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


class Pacing:
    """Deadlines, window lengths and prices for the scheduler's streams."""

    def __init__(self, config: SchedulerConfig, model: CostModel, workers: int) -> None:
        self.config = config
        self.model = model
        self.workers = workers  # serving now (Scheduler.set_workers)
        self.ladder = window_ladder(config)
        # Summed steady RTF of streams with work: the utilization that sets window growth.
        self.busy_rtf = 0.0
        # Listener streams with work (their count: is anyone's latency at stake?).
        self.busy_streams = 0
        # Since when admission holds new listeners back (for admit_late_hold_s): when playing
        # listeners of two streams were late within that time (`listener_late`).
        self.listener_late_s = -math.inf
        self._last_late: tuple[str, float] | None = None  # the last late listener, and when
        # Predicted compute of the first audio (encode + first window) of streams waiting for it,
        # and how many streams wait.
        self.pending_first_s = 0.0
        self.awaiting_first = 0
        self.first_due_s = config.first_audio_target_s + config.first_audio_slack_s
        # The streams with work (the Scheduler's own set): a burst's first windows are sized
        # against the work they hold (burst_first_window).
        self.streams: Collection[StreamRecord] = ()

    # ---- the playback clock and deadlines ------------------------------------------------

    def text_arrived(
        self, s: StreamRecord, voice: str, chars: int, speed: float, now: float
    ) -> None:
        """A sentence of `chars` characters arrived for a stream with none queued."""
        buffered = (
            s.playback_start_s + s.sent_audio_s - now if s.playback_start_s is not None else 0.0
        )
        if s.ready_audio_s <= 0.0 and buffered <= 0.0:
            # Idle, not stalled: the listener drained its buffer waiting for text. Start over
            # as a first audio (protocol-v1: Timing promise), with a small first window.
            s.playback_start_s = None
            s.sent_audio_s = 0.0
            s.window_frames = 0
            self.await_first(s, voice, chars, speed, now)
        elif s.playback_start_s is None and s.first_deadline_s is None:
            self.await_first(s, voice, chars, speed, now)

    def listener_late(self, stream_id: str, now: float) -> None:
        """A playing listener's step finished past its deadline. Late steps of two streams
        within admit_late_hold_s of each other start a hold: the load, not one stream's own
        cost, is making listeners late. One stream late alone is not the load's doing: a
        Kokoro sentence on the CPU takes longer to make than the one before it plays, on an
        idle server too."""
        last = self._last_late
        if (last is not None and last[0] != stream_id
                and now - last[1] < self.config.admit_late_hold_s):
            self.listener_late_s = now
        self._last_late = (stream_id, now)

    def audio_sent(self, s: StreamRecord, audio_s: float, now: float) -> float:
        """Move the stream's playback clock: `audio_s` seconds of audio went out at `now`.
        Returns how long the listener had run dry before it (0.0: no stall).

        The clock starts at the first audio sent (the stream waits for no first audio any
        more); buffered = sent - (now - start). Audio sent after the buffer ran out moves the
        clock to where the listener's player resumes (now)."""
        stall_s = 0.0
        if s.playback_start_s is None:
            s.playback_start_s = now
            s.sent_audio_s = 0.0
            self.end_first(s)
        else:
            dry_at = s.playback_start_s + s.sent_audio_s
            if dry_at < now:
                stall_s = now - dry_at
                s.playback_start_s = now - s.sent_audio_s
        s.sent_audio_s += audio_s
        s.ready_audio_s = max(0.0, s.ready_audio_s - audio_s)
        return stall_s

    def due_s(self, s: StreamRecord) -> float:
        """When the stream's next audio must be sent: the listener runs dry, less jitter."""
        ahead = s.ready_audio_s + s.inflight_audio_s
        jitter = self.config.jitter_s
        if s.playback_start_s is not None:
            return s.playback_start_s + s.sent_audio_s + ahead - jitter
        first = s.first_deadline_s
        if first is None:  # only reachable with nothing queued; keep the arithmetic total
            first = s.opened_s + self.first_due_s
        if ahead <= 0.0:
            return first
        return max(first, first + ahead - jitter)

    def await_first(
        self, s: StreamRecord, voice: str, chars: int, speed: float, now: float
    ) -> None:
        """Set the deadline of a stream's first audio (its text arrived at `now`).

        protocol-v1: Timing promise: `first_audio_target_s`, ordered as `first_audio_slack_s`
        later; in a burst, no earlier than the workers could get to it if every first audio
        waiting went first. A deadline the workers cannot meet would outrank every playing
        stream and stall them all (EDF's domino effect), for no first audio sooner."""
        cost = self.first_audio_cost_s(voice, chars, speed)
        if s.first_deadline_s is None:
            self.awaiting_first += 1
        self.pending_first_s += cost - s.first_cost_s
        s.first_cost_s = cost
        queued_s = self.pending_first_s / max(self.workers, 1)
        s.first_deadline_s = now + max(self.first_due_s, queued_s)

    def end_first(self, s: StreamRecord) -> None:
        """The stream waits for no first audio any more (it started playing, or was cleared):
        its first-audio deadline and its share of the first audio owed go."""
        if s.first_deadline_s is not None:
            self.awaiting_first -= 1
        s.first_deadline_s = None
        self.pending_first_s -= s.first_cost_s
        s.first_cost_s = 0.0
        s.first_rank_s = None

    def buffer_s(self, s: StreamRecord, now: float) -> float:
        """Audio the listener has ahead of the next window (sent and unplayed, plus ready)."""
        ahead = s.ready_audio_s + s.inflight_audio_s
        if s.playback_start_s is None:
            return ahead
        return s.playback_start_s + s.sent_audio_s + ahead - now

    # ---- windows -------------------------------------------------------------------------

    def window(self, s: StreamRecord, remaining: int, now: float, handing_out: bool = False) -> int:
        """The next window's length for stream `s` with `remaining` frames left in its sentence.

        First window of a stream (or after idle or clear): `first_window_frames`. Later: the
        last window x growth (about 1/utilization: while the workers get through a round of
        windows 1/u times faster than it plays, each may be that much longer), but no longer
        than what can be computed within the audio already buffered less the jitter budget
        (docs/scheduling.md). Rounded down to the ladder; a tail shorter than min_window_frames
        joins this window rather than costing a window of its own."""
        cfg = self.config
        ladder = self.ladder
        if s.window_frames <= 0:
            frames = self.first_window(s.voice)
            if handing_out and self.others_await_first(s):
                frames = self.burst_first_window(s, frames, now)
        else:
            u = self.busy_rtf / self.workers if self.workers else 1.0
            growth = cfg.window_growth_headroom / max(u, 1e-6)
            growth = max(cfg.min_window_growth, min(cfg.max_window_growth, growth))
            # Nearest on the ladder (in ratio), so growth by less than a ladder step still grows.
            grown = s.window_frames * growth
            at = bisect.bisect_right(ladder, grown)
            if at == len(ladder) or (at > 0 and grown * grown < ladder[at - 1] * ladder[at]):
                at -= 1
            frames = ladder[max(at, 0)]
            fit: float = self.model.window_within(s.voice, self.buffer_s(s, now) - cfg.jitter_s)
            if s.pace is Pace.DOWNLOAD and s.playback_start_s is not None and fit < ladder[0]:
                # A download past its first audio keeps no clock: its windows fit in the audio
                # it sent only for a player that may listen as it downloads. When not even the
                # shortest window would reach that player before it runs dry (the download
                # waited behind older ones, or runs on what little capacity listeners leave),
                # short windows keep no promise and only spend capacity on context margins:
                # it grows as if its buffer were healthy.
                fit = math.inf
            frames = min(frames, ladder[max(bisect.bisect_right(ladder, fit) - 1, 0)])
            frames = max(frames, self.ladder_ceil(self.floor_window(s.voice)))
            if frames > s.window_frames and self.newcomers_queued(s, s.window_frames):
                # docs/scheduling.md, "The burst": while newcomers queue for their first audio,
                # the windows after a first window stay as small as it (each interruption of
                # the newcomers is short); they grow once the queue is gone.
                frames = s.window_frames
            if s.pace is Pace.DOWNLOAD and not self.latency_bound(s):
                # No listener needs the workers: a download takes long windows (little context
                # waste) as far as its own buffer allows (a player may listen as it downloads),
                # at once rather than grown to step by step as a listener's are: the growth
                # keeps listeners' windows short while they share the workers, and nobody does.
                frames = max(frames, int(min(cfg.download_window_frames, fit)))
        if remaining - frames < cfg.min_window_frames:
            return max(remaining, 1)
        return frames

    def burst_first_window(self, s: StreamRecord, base: int, now: float) -> int:
        """A first window handed out while other streams wait for their first audio: the
        shortest, from `base` up, after which the window that follows can still be done in
        time, with the work that must come before it: the other newcomers' first audio, the
        playing streams' windows due sooner, and the newcomers' own next windows when those
        are due sooner (docs/scheduling.md, "First audio in a burst"). A first window has
        context on one side only, so a longer one costs less than a short one and the window
        after it; and a stream whose next window falls due after the burst's last first
        audio does not interrupt it. Sized this way the next windows fall due one after
        another, as fast as the workers can run them, rather than together as the burst ends.
        `base` when even the longest tried would be late (an overloaded burst)."""
        cfg = self.config
        model = self.model
        voice = s.voice
        workers = max(self.workers, 1)
        jitter = cfg.jitter_s + cfg.due_margin_s
        encode = model.price(voice, StepKind.ENCODE, cfg.admit_sentence_chars)
        first = model.price(voice, StepKind.DECODE, base, sides=1)  # a first window
        window = model.price(voice, StepKind.DECODE, base)  # a window inside a sentence
        apf = model.voice(voice).audio_per_frame_s
        cap = min(self.ladder[-1], 4 * base)
        longest = model.price(voice, StepKind.DECODE, cap, sides=1)
        # When no longer first window passes: the next window's due after a `base` one.
        s.planned_due_s = now + first + base * apf - cfg.jitter_s
        # Hopeless without looking: the other newcomers' first windows alone (their encode
        # steps may be done) outlast the longest first window's playback. A burst of hundreds.
        others = self.awaiting_first - (1 if s.first_deadline_s is not None else 0)
        if (others * first + longest + window) / workers > longest + cap * apf - jitter:
            return base
        # No due later than the longest first window's matters (the scan runs once per first
        # window handed out in a burst; at a thousand streams most are far ahead).
        horizon = now + longest + cap * apf
        first_s = 0.0  # the other newcomers' first audio not yet handed out
        waiting = 0  # newcomers whose next window's due is not planned yet
        dues: list[tuple[float, float]] = []  # (due, compute) of others' next windows
        prices: dict[int, float] = {}
        for o in self.streams:
            if o is s or o.closed or not o.sentences:
                continue
            start = o.playback_start_s
            if start is None:
                if o.window_frames <= 0:
                    first_s += first + (encode if o.sentences[0].frames is None else 0.0)
                    waiting += 1
                elif o.planned_due_s is not None:
                    dues.append((o.planned_due_s, window))
            elif o.pace is Pace.LISTENER:
                due = start + o.sent_audio_s + o.ready_audio_s + o.inflight_audio_s - cfg.jitter_s
                if due < horizon:  # due_s, inline: the loop's hot path at scale
                    frames = max(o.window_frames, base)
                    price = prices.get(frames)
                    if price is None:
                        price = prices[frames] = model.price(voice, StepKind.DECODE, frames)
                    dues.append((due, price))
        dues.sort()
        for frames in self.ladder:
            if frames < base:
                continue
            if frames > cap:
                break
            own = model.price(voice, StepKind.DECODE, frames, sides=1)
            due = now + own + frames * apf - jitter
            work = first_s + own + window
            # The other newcomers' next windows, when they fall due before this one's: a
            # first window's playback after the burst's last first audio. (Each may yet take
            # a longer first window, which moves its own later; a newcomer served early
            # plans its due when its first window goes out, and the newcomers after it count
            # this one's.)
            last_first = now + (first_s + own) / workers
            if waiting and last_first + base * apf - jitter <= due:
                work += waiting * window
            for other_due, compute in dues:
                if other_due > due:
                    break
                work += compute
            if now + work / workers <= due:
                s.planned_due_s = due + cfg.due_margin_s
                return frames
        return base

    def others_await_first(self, s: StreamRecord) -> bool:
        """Does a stream other than `s` wait for its first audio?"""
        return self.awaiting_first > (1 if s.first_deadline_s is not None else 0)

    def newcomers_outnumber_workers(self) -> bool:
        """A burst: more streams wait for their first audio than there are workers, so they
        queue for them (RunQueue.pick holds back work not yet due meanwhile). Streams arriving
        one after another, even a hundred a second, are fewer at any moment. (Coarser than
        `newcomers_queued`, which weighs the first audio owed against one window's price.)"""
        return self.awaiting_first > self.workers

    def newcomers_queued(self, s: StreamRecord, frames: int) -> bool:
        """Do other streams wait for more first audio than the workers get through while `s`
        computes a `frames`-frame window (a burst in progress: they queue, and the length of
        every window that goes before them adds to their wait)? Streams arriving one after
        another, a hundred a second at a thousand listeners, are served as they come: what
        they owe is less, and holding every playing stream's windows small for them only
        multiplied the windows (3x per second of audio, each a hand-off, a decision and a
        write)."""
        if not self.others_await_first(s):
            return False
        owed_s = self.pending_first_s - s.first_cost_s
        window_s = self.model.price(s.voice, StepKind.DECODE, frames)
        return owed_s > self.workers * window_s

    def latency_bound(self, s: StreamRecord) -> bool:
        """Is another stream's latency at stake: a listener with work, or a first audio owed?"""
        own = 1 if s.pace is Pace.LISTENER and s.busy_rtf > 0.0 else 0
        return self.busy_streams > own or self.others_await_first(s)

    def download_lead_s(self, s: StreamRecord) -> float:
        """A download's audio made or being made and not yet taken by its client."""
        return s.out_s + s.ready_audio_s + s.inflight_audio_s

    def download_held(self, s: StreamRecord, head: Sentence | None) -> bool:
        """Must a download past its first audio wait for its client to read? While
        `download_buffer_s` of its audio is made (or being made) and not taken, yes; but its
        head sentence, the one its session sends next, waits only for what was sent and not
        read: the audio of later sentences made ahead of it (a download decodes several at
        once) cannot be sent before it, so counting that audio held the very sentence it
        waits behind, and the response hung. `head`: its `next_sentence`."""
        buffer = self.config.download_buffer_s
        if self.download_lead_s(s) < buffer:
            return False
        return head is None or head is not s.sentences[0] or s.out_s >= buffer

    def ladder_ceil(self, frames: float) -> int:
        """The shortest ladder window of at least `frames` (the longest when none is)."""
        ladder = self.ladder
        return ladder[min(bisect.bisect_left(ladder, frames), len(ladder) - 1)]

    def first_window(self, voice: str, floor: float | None = None) -> int:
        """A stream's first window: `first_window_frames`, or under load long enough that the
        next window, at the floor, fits in its playback (first_window_margin times over)."""
        cfg = self.config
        if floor is None:
            floor = self.floor_window(voice)
        if floor <= cfg.first_window_frames:
            return cfg.first_window_frames
        next_frames = self.ladder_ceil(floor)
        need_s = cfg.jitter_s + cfg.first_window_margin * self.model.price(
            voice, StepKind.DECODE, next_frames
        )
        apf = self.model.voice(voice).audio_per_frame_s
        return self.ladder_ceil(max(need_s / apf, cfg.first_window_frames))

    def floor_window(self, voice: str, extra_rtf: float = 0.0) -> float:
        """The shortest window that keeps the streams with work (plus `extra_rtf` of streams
        about to start) under window_floor_utilization of the workers."""
        cfg = self.config
        busy = self.busy_rtf + extra_rtf
        if not self.workers or busy <= 0.0:
            return 0.0
        rtf_max = self.stream_rtf(voice)
        target = rtf_max * cfg.window_floor_utilization * self.workers / busy
        return self.model.window_for_rtf(voice, rtf=target, sentence_chars=cfg.admit_sentence_chars)

    # ---- prices --------------------------------------------------------------------------

    def next_sentence(self, s: StreamRecord) -> Sentence | None:
        """The sentence whose step the stream hands out next, or None (none may go now).

        A listener, and any stream before its first audio, has one step in flight at a time:
        its head sentence's. A download past its first audio may have one step in flight per
        sentence, on as many sentences as there are workers, so it can use the whole machine
        when the machine is idle: each sentence's windows still go in order, and the session
        puts the sentences in order."""
        if s.closed or not s.sentences:
            return None
        if s.pace is Pace.LISTENER or s.playback_start_s is None:
            return s.sentences[0] if not s.in_flight else None
        if len(s.in_flight) >= max(self.workers, 1):
            return None
        busy = {step.seq for step in s.in_flight}
        for sentence in s.sentences:
            if sentence.encode.seq in busy:
                continue
            if sentence.frames is None or sentence.next_frame < sentence.frames:
                return sentence
        return None

    def head_cost(
        self, s: StreamRecord, now: float, handing_out: bool = False
    ) -> tuple[float, float, int]:
        """(predicted compute of the stream's next step, compute that must follow it before its
        audio exists, its window length or 0 for an encode step). Only for a stream whose
        `next_sentence` is not None."""
        sentence = self.next_sentence(s)
        assert sentence is not None
        step = sentence.encode
        model = self.model
        if sentence.cached:
            # A cached sentence's windows are slices: free, cut by the same pacing rule.
            return 0.0, 0.0, self.window(s, (sentence.frames or 0) - sentence.next_frame, now)
        if sentence.frames is None:
            frames = math.ceil(model.sentence_frames(step.voice, step.chars, step.speed))
            first = self.window(s, frames, now)
            after = model.price(step.voice, StepKind.DECODE, first,
                                context_sides(0, first, frames))
            return model.price(step.voice, StepKind.ENCODE, step.chars), after, 0
        window = self.window(s, sentence.frames - sentence.next_frame, now, handing_out)
        sides = context_sides(sentence.next_frame, window, sentence.frames)
        return model.price(step.voice, StepKind.DECODE, window, sides), 0.0, window

    def stream_rtf(self, voice: str) -> float:
        """A stream's steady share of one worker: typical sentences in the largest windows."""
        cfg = self.config
        return self.model.rtf(
            voice, sentence_chars=cfg.admit_sentence_chars, window_frames=cfg.max_window_frames
        )

    def set_busy(self, s: StreamRecord) -> None:
        """Keep `busy_rtf` = the summed steady RTF of listener streams with work, and their
        count, in O(1). A download runs on idle capacity: it loads no listener's windows."""
        busy = bool(s.sentences) and not s.closed and s.pace is Pace.LISTENER
        share = self.stream_rtf(s.voice) if busy else 0.0
        self.busy_streams += (share > 0.0) - (s.busy_rtf > 0.0)
        self.busy_rtf += share - s.busy_rtf
        if self.busy_streams == 0:
            self.busy_rtf = 0.0  # no float residue once nobody is busy
        s.busy_rtf = share

    def first_audio_cost_s(
        self, voice: str, chars: int, speed: float = 1.0, extra_rtf: float = 0.0
    ) -> float:
        """The work a new stream needs before it plays safely: its first encode step, its first
        window, and the window that must follow within that window's playback (at the floor).
        Admission, the burst's first-audio deadlines and the urgent backlog all price a new
        stream with it."""
        model = self.model
        frames = math.ceil(model.sentence_frames(voice, chars, speed))
        floor = self.floor_window(voice, extra_rtf)
        first = min(frames, self.first_window(voice, floor))
        second = min(frames - first, self.ladder_ceil(floor))
        cost = model.price(voice, StepKind.ENCODE, chars)
        cost += model.price(voice, StepKind.DECODE, first)
        if second > 0:
            cost += model.price(voice, StepKind.DECODE, second)
        return cost
