"""Order: which stream's next step runs first, which wait under the lookahead cap, which batch.

Latest start time (deadline - predicted compute, since a step cannot be paused), shifted by
priority class; near-ties (within `tie_window_s`) go to the stream with the least attained
service (compute seconds), VTC style. Heaps keyed per stream by its next step hold the order;
stale entries are skipped by a version counter, so a decision is O(log streams).

A pick takes, in this order (docs/scheduling.md, "Who goes first"):
1. due work: the most urgent step, when its latest start is within `due_margin_s` of now;
2. first audio: a stream waiting for its first audio (either pace), most urgent first; so
   in a burst no newcomer's encode step or first window waits behind work not yet due; and
   while more streams wait for their first audio than there are workers (they queue), nothing
   below runs: a worker that finds no newcomer's step ready waits for one (or for due work)
   rather than start a window that is not due, whose run, result and audio would stand
   between the newcomers and the workers and the event loop;
3. a listener's step under `lookahead_s` of audio ahead, most urgent first;
4. a download's step (after its first audio), oldest stream first, so it finishes fast and
   frees its place; a download with `download_buffer_s` not yet read by its client waits in
   no heap until its client reads (Scheduler.audio_delivered);
5. run-ahead: a listener past `lookahead_s`, only for a worker that would otherwise idle,
   never past `max_lookahead_s` (a second heap, keyed by when it drops under the cap).
So the pick is work-conserving within each stream's bound, and anything due goes first at
the next step. A batch grows around the seed with steps of its kind, voice, speed and window
length from the seed's heap, while it would not make its most urgent member late. Pure.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Set
from itertools import count

from litestream.scheduler._pacing import Pacing
from litestream.scheduler._state import Sentence, StreamRecord
from litestream.scheduler.costmodel import StepKind, context_sides
from litestream.scheduler.types import Pace, SchedulerConfig, SynthesisStep

__all__ = ["RunQueue"]

# (key, tiebreak, version, stream); the tiebreak is unique so streams are never compared.
_Entry = tuple[float, int, int, StreamRecord]


class RunQueue:
    """The heaps that order the streams' next steps, and the picks made from them."""

    def __init__(self, config: SchedulerConfig, pacing: Pacing) -> None:
        self.config = config
        self._pacing = pacing
        self._first: list[_Entry] = []  # streams waiting for first audio, keyed by rank
        self._ready: list[_Entry] = []  # listeners under the lookahead cap, keyed by rank
        self._download: list[_Entry] = []  # downloads past first audio, keyed by opening time
        self._held: list[_Entry] = []  # next steps over the lookahead cap, keyed by eligible time
        self._service: list[tuple[float, int, StreamRecord]] = []  # backlogged, by attained
        self._tiebreak = count()
        # The streams whose work or deadline changed since the last look (emptied by whoever
        # looks: AdmissionControl keeps its urgent work up to date from it).
        self.changed: set[StreamRecord] = set()

    def touch(self, s: StreamRecord) -> None:
        """Stream `s`'s work changed without a rekey (a sentence queued behind its head)."""
        self.changed.add(s)

    def drop(self, s: StreamRecord) -> None:
        """The stream's entries go stale (it was cleared)."""
        s.version += 1
        self.changed.add(s)

    def rekey(self, s: StreamRecord, now: float) -> None:
        """Recompute the next step's key and push a fresh heap entry (old ones go stale)."""
        s.version += 1
        self.changed.add(s)
        s.blocked = False
        head = self._pacing.next_sentence(s)
        if head is None:
            return
        compute, after, _ = self._pacing.head_cost(s, now)
        cfg = self.config
        due = self._pacing.due_s(s)
        s.due_s = due
        s.deadline_s = due - after
        s.rank_s = s.deadline_s - compute + s.shift_s
        if head.cached:
            # A cached window costs no worker time: handing it out first delays no one.
            s.rank_s = -math.inf
        if s.pace is Pace.DOWNLOAD and s.playback_start_s is not None:
            # No playback clock: the client's reading paces it (Scheduler.audio_delivered).
            s.eligible_s = now
            if self._pacing.download_held(s, head):
                s.blocked = True
            else:
                heapq.heappush(self._download, (s.opened_s, next(self._tiebreak), s.version, s))
            return
        if s.first_rank_s is not None and s.playback_start_s is None:
            # A first audio, once begun, finishes before another begins: its first window
            # ranks two tie windows ahead of the encode step it follows, so the encode steps
            # of other new streams (due as soon) do not slip in between (first audio of the
            # stream that started first comes first, rather than all of them late). Two: a
            # near-tie pick, which favours streams not yet started (least attained service),
            # never reaches back to the encode steps it ranks ahead of.
            s.rank_s = min(s.rank_s, s.first_rank_s - 2 * self.config.tie_window_s)
        # Lead = audio buffered or on its way = due + jitter - now; held while > lookahead.
        # Before playback nothing is buffered but what is ready: a first audio due far ahead
        # (a burst's queue) is not held back by the cap.
        s.eligible_s = due + cfg.jitter_s - cfg.lookahead_s
        if s.playback_start_s is None and s.ready_audio_s <= cfg.lookahead_s:
            s.eligible_s = min(s.eligible_s, now)
        if s.eligible_s <= now:
            heapq.heappush(self._eligible_heap(s), (s.rank_s, next(self._tiebreak), s.version, s))
        else:
            heapq.heappush(self._held, (s.eligible_s, next(self._tiebreak), s.version, s))

    def _eligible_heap(self, s: StreamRecord) -> list[_Entry]:
        return self._first if s.playback_start_s is None else self._ready

    # ---- picks ---------------------------------------------------------------------------

    def promote(self, now: float) -> None:
        """Move heads that dropped under the lookahead cap from the held heap to an eligible
        one."""
        held = self._held
        while held and held[0][0] <= now:
            _, tb, version, s = heapq.heappop(held)
            if version == s.version:
                heapq.heappush(self._eligible_heap(s), (s.rank_s, tb, version, s))

    def pick(self, now: float) -> tuple[StreamRecord, list[_Entry] | None, bool] | None:
        """The stream whose step runs next, in the order of the module's docstring: (stream,
        the heap its batch mates come from or None, handed out as run-ahead fallback)."""
        self.promote(now)
        first = self._peek(self._first)
        ready = self._peek(self._ready)
        top, heap = (first, self._first) if first is not None else (ready, self._ready)
        if ready is not None and first is not None and ready[0] < first[0]:
            top, heap = ready, self._ready
        due_by = now + self.config.due_margin_s
        if top is not None and top[0] <= due_by:
            return self._near_tie(heap, due_by), heap, False  # 1: due (near-ties only if due)
        if first is not None:
            return self._near_tie(self._first), self._first, False  # 2: first audio
        if self._pacing.newcomers_outnumber_workers():
            return None  # a burst: nothing not yet due goes before the newcomers' next steps
        if top is not None:
            return self._near_tie(heap), heap, False  # 3
        download = self._peek(self._download)
        if download is not None:
            return download[3], None, False  # 4
        held = self.pick_held(now)
        return (held, None, True) if held is not None else None  # 5, or nothing to do

    def _near_tie(self, heap: list[_Entry], until: float = math.inf) -> StreamRecord:
        """The most urgent stream of a non-empty `heap`; among near-ties (ranked no later than
        `until` too), the least attained service.

        Near-ties are looked for in the top `tie_candidates` slots of the heap array (its upper
        levels), without popping: the pick is dispatched, which bumps its version, so its entry
        goes stale and is dropped lazily. O(tie_candidates) per decision, whatever the queue."""
        top = self._peek(heap)
        assert top is not None
        limit = min(top[0] + self.config.tie_window_s, max(until, top[0]))
        best = top
        for entry in heap[1 : self.config.tie_candidates]:
            if (
                entry[0] <= limit
                and entry[2] == entry[3].version
                and (entry[3].attained_s, entry[0]) < (best[3].attained_s, best[0])
            ):
                best = entry
        return best[3]

    def pick_held(self, now: float) -> StreamRecord | None:
        """A held-back stream for a worker that would otherwise idle: the one with the least
        audio ahead, unless even that one is past max_lookahead_s. (Its entry goes stale.)"""
        top = self._peek(self._held)
        if top is None or self._hard_s(top[3]) > now:
            return None
        return top[3]

    def wakeup_s(self, now: float) -> float | None:
        """When a pick would find work (see Scheduler.next_wakeup_s)."""
        self.promote(now)
        if self._peek(self._first) is not None:
            return now
        held = self._peek(self._held)
        if self._pacing.newcomers_outnumber_workers():
            # Only due work runs: the ready head when it falls due, a held head when it joins
            # the ready heap (its due comes later). Each newcomer's step that becomes ready,
            # and the burst's end, come with a finished run, which dispatches anyway.
            ready = self._peek(self._ready)
            times = [ready[0] - self.config.due_margin_s] if ready is not None else []
            if held is not None:
                times.append(held[0])
            return max(now, min(times)) if times else None
        if self._peek(self._ready) is not None or self._peek(self._download) is not None:
            return now
        if held is None:
            return None
        return max(now, self._hard_s(held[3]))

    def held_streams(self) -> int:
        """Backlogged streams held back by the lookahead cap. O(held entries)."""
        return len({id(e[3]) for e in self._held if e[2] == e[3].version and e[3].sentences})

    def _hard_s(self, s: StreamRecord) -> float:
        """When a held head drops under max_lookahead_s (eligible for an otherwise idle worker)."""
        return s.eligible_s - (self.config.max_lookahead_s - self.config.lookahead_s)

    def _peek(self, heap: list[_Entry]) -> _Entry | None:
        while heap:
            top = heap[0]
            if top[2] == top[3].version:
                return top
            heapq.heappop(heap)
        return None

    # ---- batches -------------------------------------------------------------------------

    def batch_mates(
        self, seed: SynthesisStep, seed_rank: float, now: float, room: int,
        heap: list[_Entry] | None = None,
    ) -> list[StreamRecord]:
        """Up to `room` streams whose next steps join a batch around `seed`, the most urgent
        step (already handed out), in the order they join.

        Candidates within batch_window_s of its latest start, of its kind, voice and speed
        (windows of its frame count; encode steps of similar length first); stop before the
        batch would make its most urgent member late (Triton's dynamic batcher, with
        deadlines): a decode batch takes its longest window plus `batch_marginal_cost` of the
        others, an encode batch the sum of its front passes (workers run them one by one), or
        as a decode batch where the voice runs them as one (`VoiceCost.batched_encode`). A
        batch whose members are late even alone may take up to `batch_late_growth` x the
        seed's time, but never past the deadline of a member that is on time alone. The
        others keep their places."""
        cfg = self.config
        pacing = self._pacing
        if heap is None:
            heap = self._ready
        limit = seed_rank + cfg.batch_window_s
        pool: list[_Entry] = []
        rest: list[_Entry] = []
        while heap and len(pool) + len(rest) < cfg.batch_candidates and heap[0][0] <= limit:
            entry = heapq.heappop(heap)
            if entry[2] != entry[3].version:
                continue
            (pool if self._batchable(entry[3], seed, now) else rest).append(entry)
        if seed.kind is StepKind.ENCODE:
            pool.sort(key=lambda e: abs(self._head(e[3]).encode.chars - seed.chars))
        earliest = seed.deadline_s
        # The earliest deadline among members that would be on time alone: the batch must
        # finish by it. Members late anyway only bound it by batch_late_growth.
        firm = earliest if earliest - now >= seed.predicted_compute_s else math.inf
        computes = [seed.predicted_compute_s]
        batched_encode = pacing.model.voice(seed.voice).batched_encode
        mates: list[StreamRecord] = []
        for entry in pool:
            s = entry[3]
            if len(mates) >= room:
                break
            compute, after, _ = pacing.head_cost(s, now)
            if seed.kind is StepKind.DECODE:
                # Its window at the seed's length, with its own context sides.
                head = self._head(s)
                sides = context_sides(head.next_frame, seed.frames, head.frames or 0)
                compute = pacing.model.price(seed.voice, StepKind.DECODE, seed.frames, sides)
            trial = [*computes, compute]
            if seed.kind is StepKind.ENCODE and not batched_encode:
                batch_s = sum(trial)  # a worker runs front passes one after another
            else:
                longest = max(trial)
                batch_s = longest + cfg.batch_marginal_cost * (sum(trial) - longest)
            deadline = pacing.due_s(s) - after
            earliest_if = min(earliest, deadline)
            firm_if = min(firm, deadline) if deadline - now >= compute else firm
            allowed = min(firm_if - now,
                          max(earliest_if - now, cfg.batch_late_growth * seed.predicted_compute_s))
            if batch_s > allowed:
                break
            earliest, firm, computes = earliest_if, firm_if, trial
            mates.append(s)
        for entry in [*pool[len(mates) :], *rest]:
            if entry[2] == entry[3].version:
                heapq.heappush(heap, entry)
        return mates

    def _head(self, s: StreamRecord) -> Sentence:
        sentence = self._pacing.next_sentence(s)
        assert sentence is not None  # a stream with a live heap entry has a next step
        return sentence

    def _batchable(self, s: StreamRecord, seed: SynthesisStep, now: float) -> bool:
        """Can the stream's next step join a batch seeded by `seed` (one kind, voice, speed;
        a window of exactly seed.frames that its buffer allows, leaving no tiny tail, and not
        much shorter than the window it would take alone: batch_min_window_share)?"""
        sentence = self._head(s)
        head = sentence.encode
        if head.voice != seed.voice or head.speed != seed.speed or sentence.cached:
            return False
        if seed.kind is StepKind.ENCODE:
            return sentence.frames is None
        if sentence.frames is None:
            return False
        remaining = sentence.frames - sentence.next_frame
        if remaining != seed.frames and remaining - seed.frames < self.config.min_window_frames:
            return False
        window = self._pacing.window(s, remaining, now)
        return seed.frames <= window and seed.frames >= self.config.batch_min_window_share * window

    # ---- fairness and upkeep -------------------------------------------------------------

    def service_floor(self) -> float:
        """The lowest attained service among backlogged streams (0 when none)."""
        heap = self._service
        while heap:
            attained, _, s = heap[0]
            if s.sentences and not s.closed and s.attained_s == attained:
                return attained
            heapq.heappop(heap)
        return 0.0

    def push_service(self, s: StreamRecord) -> None:
        heapq.heappush(self._service, (s.attained_s, next(self._tiebreak), s))

    def compact(self, live: Set[StreamRecord], now: float) -> None:
        """Rebuild the heaps from the `live` (backlogged) streams when stale entries outnumber
        them (amortized O(1))."""
        n = len(live)
        heaps = (self._first, self._ready, self._download, self._held)
        if sum(len(h) for h in heaps) > 4 * n + 1024:
            for h in heaps:
                h.clear()
            for s in live:
                self.rekey(s, now)
        if len(self._service) > 4 * n + 1024:
            self._service = [(s.attained_s, next(self._tiebreak), s) for s in live]
            heapq.heapify(self._service)
