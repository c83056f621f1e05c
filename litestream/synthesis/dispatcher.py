"""The one place the server talks to the scheduler and the inference workers.

    socket -> StreamSession -> StreamLink.submit -> Scheduler -> Synthesis.dispatch -> workers
    workers -> Synthesis.take_result -> Scheduler.encoded/decoded/fail -> session inputs -> socket
            (then Synthesis.dispatch, once per batch of finished runs)

Sessions ask for work through `StreamLink`, one per stream (it implements
`session.SynthesisLink`); `Synthesis` hands work to idle workers as late as possible and turns
each `WorkResult` back into session inputs: a sentence's encode step gives `ChunkPlanned`
(its exact length, so the `chunk` event can go out), each decode window a `ChunkAudio` piece,
and a failed step `ChunkFailed`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from litestream.config import Config
from litestream.engine.base import Latent, Voice, Word
from litestream.logs import stream_fields
from litestream.metrics import Metrics
from litestream.scheduler import (
    Admission,
    Pace,
    Priority,
    Scheduler,
    SchedulerConfig,
    StepKind,
    SynthesisStep,
)
from litestream.session import ChunkAudio, ChunkFailed, ChunkPlanned, SynthesisResult
from litestream.synthesis import calibration
from litestream.synthesis.cache import CachedAudio, SentenceCache
from litestream.synthesis.shared_cache import SharedCache
from litestream.synthesis.workers import WorkerPool, WorkResult

log = logging.getLogger("litestream.synthesis")

# Where a stream's results go: the server feeds them to that stream's session.
Deliver = Callable[[str, Sequence[SynthesisResult]], None]

# A listener with at least this much audio beyond the lookup's bound may wait for a shared
# cache lookup: its next sentence is not due before the lookup is over, whatever it answers.
LOOKUP_MARGIN_S = 0.1


@dataclass(slots=True)
class _Waiting:
    """A chunk held back from the scheduler until the shared cache answered (or an earlier
    chunk of its stream did: the scheduler takes a stream's chunks in order)."""

    seq: int
    text: str
    speed: float
    voice: str
    words: bool
    lookup: asyncio.Future[CachedAudio | None] | None  # None: no lookup, only its turn


def scheduler_config(config: Config, max_window_frames: int | None = None) -> SchedulerConfig:
    """The scheduler's view of the settings: every value comes from its Config field, the
    longest window as resolved for the voices (server/startup.max_window_frames; without it,
    the configured value, else the scheduler's own default)."""
    window = max_window_frames or config.max_window_frames
    return SchedulerConfig(
        first_audio_target_s=config.first_audio_target_s,
        first_audio_slack_s=config.first_audio_slack_s,
        jitter_s=config.jitter_s,
        lookahead_s=config.lookahead_s,
        max_lookahead_s=config.max_lookahead_s,
        target_utilization=config.target_utilization,
        max_streams=config.max_streams,
        download_buffer_s=config.download_buffer_s,
        max_window_frames=window or SchedulerConfig.max_window_frames,
    )


@dataclass(frozen=True, slots=True)
class CachedLatent:
    """A cached sentence's audio as the scheduler's opaque latent: its windows are slices of
    `samples_per_frame` samples per frame (Scheduler.samples_per_frame at submit)."""

    samples: np.ndarray
    samples_per_frame: int
    words: tuple[Word, ...] = ()  # its words' times (the `chunk` plan carries them)

    def window(self, start_frame: int, frames: int) -> np.ndarray:
        spf = self.samples_per_frame
        return self.samples[start_frame * spf:(start_frame + frames) * spf]


class StreamLink:
    """One stream's port to the scheduler (a `session.SynthesisLink`). The session numbers its
    sentences; the scheduler keys its steps by the same seq."""

    def __init__(self, scheduler: Scheduler, stream_id: str, metrics: Metrics,
                 cache: SentenceCache | None = None, shared: SharedCache | None = None,
                 dispatch: Callable[[], None] | None = None,
                 dispatch_soon: Callable[[], None] | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self._scheduler = scheduler
        self.stream_id = stream_id
        self._metrics = metrics
        self._cache = cache if cache is not None and cache.enabled else None
        # The shared level (Redis): chunks wait here, in order, for their lookups.
        self._shared = shared
        self._dispatch = dispatch
        # A download that waited for its client to read may run again: dispatch on the next
        # loop turn (the session is handing out its audio when it says so).
        self._dispatch_soon = dispatch_soon
        self._clock = clock
        self._waiting: deque[_Waiting] = deque()
        self._closed = False
        # seq -> deadline of the newest audio piece delivered and not yet sent, for the slack
        # histogram at send time (one observation per decode window).
        self._deadlines: dict[int, float] = {}
        self._last_counted_seq = -1  # seqs only grow: a chunk is counted at its first piece
        # This stream's listener underruns (the scheduler's estimate), for its summary line.
        # One event, counted in three scopes on purpose: here per stream (it outlives the
        # scheduler's record of the stream), SchedulerStats.stalls for the whole scheduler
        # (simulations read it; the scheduler imports no metrics), and Metrics.stall for the
        # operator.
        self.stalls = 0

    def submit(self, seq: int, text: str, *, speed: float, voice: str, now: float,
               words: bool = False) -> None:
        # Its words are timed when someone may hear them: this stream asked, or a cache keeps
        # the sentence for streams that may ask (a hit carries its words). Otherwise the
        # worker skips it (phonemizing each word alone and aligning it: ~40% of the inference
        # threads' Python time at 1,000 synthetic-voice listeners).
        words = words or self._cache is not None or self._shared is not None
        if self._cache is not None:
            cached = self._cache.get(voice, speed, text)
            self._metrics.cache_lookup(hit=cached is not None)
            if cached is not None:
                self._hit(seq, text, speed, voice, cached, now)
                return
        shared = self._shared
        if shared is not None and self._may_wait(now):
            lookup = asyncio.ensure_future(shared.get(voice, speed, text))
            self._waiting.append(_Waiting(seq, text, speed, voice, words, lookup))
            lookup.add_done_callback(self._looked_up)
            return
        if shared is not None:
            self._metrics.shared_cache_skip("get")
        if self._waiting:  # behind a lookup: the scheduler takes a stream's chunks in order
            self._waiting.append(_Waiting(seq, text, speed, voice, words, None))
            return
        self._scheduler.submit(self.stream_id, seq, text, speed=speed, voice=voice, now=now,
                               words=words)

    def _hit(self, seq: int, text: str, speed: float, voice: str, cached: CachedAudio,
             now: float) -> None:
        """A hit skips synthesis, not the scheduler: its windows are slices of the cached
        audio, handed out in order and at the stream's pace like synthesized ones
        (Synthesis.dispatch serves them without a worker), so a long cached sentence never
        floods the session's outbox (docs/scheduling.md, "Cached audio in step")."""
        spf = self._scheduler.samples_per_frame(voice)
        self._scheduler.submit(self.stream_id, seq, text, speed=speed, voice=voice, now=now,
                               cached_frames=max(1, math.ceil(cached.sample_count / spf)),
                               latent=CachedLatent(cached.samples, spf, cached.words_in(text)))

    def _may_wait(self, now: float) -> bool:
        """May this chunk wait for a shared cache lookup (at most its timeout)? Not while Redis
        is marked down; before the stream's first audio, yes (a bounded wait against a whole
        synthesis saved); after it, only if the listener cannot notice: audio of an earlier
        chunk is still to be made, or enough is buffered to outlast the lookup."""
        shared = self._shared
        if shared is None or not shared.available:
            return False
        ahead_s = self._scheduler.audio_ahead_s(self.stream_id, now)
        if ahead_s is None or self._waiting or self._scheduler.queued_sentences(self.stream_id):
            return True
        return ahead_s >= shared.timeout_s + LOOKUP_MARGIN_S

    def _looked_up(self, _: asyncio.Future[CachedAudio | None]) -> None:
        """A lookup ended: settle the chunks at the head of the line, in order."""
        if self._closed:
            return
        submitted = False
        while self._waiting:
            head = self._waiting[0]
            if head.lookup is not None and not head.lookup.done():
                break
            self._waiting.popleft()
            found = None
            if head.lookup is not None and not head.lookup.cancelled():
                found = head.lookup.result()
            now = asyncio.get_running_loop().time()
            submitted = True
            if found is not None:
                if self._cache is not None:
                    self._cache.put(head.voice, head.speed, head.text, found.samples,
                                    found.sample_rate, found.words_in(head.text))
                self._hit(head.seq, head.text, head.speed, head.voice, found, now)
                continue
            self._scheduler.submit(self.stream_id, head.seq, head.text, speed=head.speed,
                                   voice=head.voice, now=now, words=head.words)
        if submitted and self._dispatch is not None:
            self._dispatch()

    def _drop_waiting(self) -> None:
        for waiting in self._waiting:
            if waiting.lookup is not None:
                waiting.lookup.cancel()
        self._waiting.clear()

    def close(self) -> None:
        """The stream is gone: its lookups are dropped, nothing more is submitted."""
        self._closed = True
        self._drop_waiting()

    def clear(self, now: float) -> None:
        self._drop_waiting()
        self._scheduler.clear(self.stream_id, now)
        self._deadlines.clear()

    def set_priority(self, priority: str, now: float) -> None:
        # Re-opening a stream in the scheduler changes its class and keeps its queue.
        self._scheduler.open_stream(self.stream_id, Priority(priority), now)

    def set_pace(self, pace: str, now: float) -> None:
        self._scheduler.set_pace(self.stream_id, Pace(pace), now)

    def audio_taken(self, audio_s: float) -> None:
        # A download's client read this audio: its synthesis may have waited for that.
        now = self._clock() if self._clock is not None else 0.0
        if (self._scheduler.audio_delivered(self.stream_id, audio_s, now)
                and self._dispatch_soon is not None):
            self._dispatch_soon()

    def piece_delivered(self, seq: int, deadline_s: float) -> None:
        if math.isfinite(deadline_s):
            self._deadlines[seq] = deadline_s

    def audio_queued(self, seq: int, audio_s: float, nbytes: int, now: float) -> None:
        # The scheduler owns the playback clock and the listener's stall estimate.
        before_s = self._scheduler.underrun_s(self.stream_id)
        self._scheduler.audio_sent(self.stream_id, audio_s, now)
        gap_s = self._scheduler.underrun_s(self.stream_id) - before_s
        if gap_s > 0:
            self.stalls += 1
            self._metrics.stall(gap_s)
        deadline_s = self._deadlines.pop(seq, None)
        if deadline_s is None:  # a later frame of a piece already counted
            self._metrics.bytes_out(nbytes)
        elif seq > self._last_counted_seq:  # the chunk's first piece: count the chunk
            self._last_counted_seq = seq
            self._metrics.chunk_sent(deadline_s - now, nbytes)
        else:  # slack at send time: how long before its deadline this piece went out
            self._metrics.piece_sent(deadline_s - now, nbytes)

    def underrun_s(self) -> float:
        return self._scheduler.underrun_s(self.stream_id)


class Synthesis:
    """The scheduler, the worker pool and the dispatch loop between them. Loop thread only."""

    def __init__(self, config: Config, voices: Mapping[str, Voice], metrics: Metrics,
                 max_batch: int, default_voice: str, cache: SentenceCache | None = None,
                 shared: SharedCache | None = None, max_window_frames: int | None = None,
                 ) -> None:
        self.scheduler = Scheduler(scheduler_config(config, max_window_frames),
                                   workers=config.workers)
        # The default voice first: it prices a stream whose voice is not known yet.
        for voice_id in sorted(voices, key=lambda v: v != default_voice):
            voice = voices[voice_id]
            self.scheduler.register_voice(voice_id, context_frames=voice.context_frames,
                                          sample_rate=voice.sample_rate,
                                          batched_encode=voice.batches_fronts)
        self._rates = {voice_id: voice.sample_rate for voice_id, voice in voices.items()}
        self._metrics = metrics
        self._max_batch = max_batch
        self._links: dict[str, StreamLink] = {}
        self._pool: WorkerPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.TimerHandle | None = None
        self._wakeup_at = 0.0  # when _wakeup fires (as asked: the loop rounds it to 1 ms)
        self._deliver: Deliver | None = None
        self.cache = cache
        self.shared = shared
        # Decoded pieces of sentences not finished yet, kept for the cache: (stream, seq) ->
        # pieces in order. A sentence enters the cache whole, at its last window.
        self._pieces: dict[tuple[str, int], list[np.ndarray]] = {}

    def start(self, pool: WorkerPool, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self._pool, self._loop, self._deliver = pool, loop, deliver

    def take_pool(self) -> WorkerPool | None:
        """Stop dispatching; the caller closes the pool it gets back (off the loop)."""
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None
        pool, self._pool = self._pool, None
        return pool

    def set_workers(self, serving: int, now: float) -> None:
        """Capacity and admission follow the workers actually serving."""
        self.scheduler.set_workers(serving, now)

    def calibrate(self, pool: WorkerPool, voices: Mapping[str, Voice]) -> None:
        """Start-up calibration (calibration.py) into the scheduler's cost model. Blocks."""
        calibration.calibrate(pool, voices, self.scheduler.model)

    # ------------------------------------------------------------ admission and streams

    def admit(self, now: float, voice: str, pace: str = Pace.LISTENER) -> Admission:
        return self.scheduler.admit(now, voice, Pace(pace))

    def would_admit(self, now: float, voice: str, pace: str = Pace.LISTENER) -> Admission:
        """`admit`'s answer, counting no refusal (Scheduler.would_admit)."""
        return self.scheduler.would_admit(now, voice, Pace(pace))

    def fullness(self, now: float) -> float:
        """Admitted load over capacity, 0..1 (Scheduler.fullness): 1 exactly when a new stream
        would be refused."""
        return self.scheduler.fullness(now)

    def open_stream(self, stream_id: str, priority: str, now: float,
                    pace: str = Pace.LISTENER, voice: str | None = None) -> None:
        """At handshake acceptance: in a burst, each admission test must count the ones
        accepted just before it, each at the voice it was admitted for."""
        self.scheduler.open_stream(stream_id, Priority(priority), now, Pace(pace), voice)

    def link(self, stream_id: str) -> StreamLink:
        link = self._links.get(stream_id)
        if link is None:
            link = self._links[stream_id] = StreamLink(
                self.scheduler, stream_id, self._metrics, self.cache, shared=self.shared,
                dispatch=self.dispatch, dispatch_soon=self._dispatch_soon, clock=self._now)
        return link

    def close_stream(self, stream_id: str, now: float) -> int:
        """Forget the stream; returns how many queued chunks were dropped."""
        link = self._links.pop(stream_id, None)
        if link is not None:
            link.close()
        for key in [k for k in self._pieces if k[0] == stream_id]:
            del self._pieces[key]
        return self.scheduler.close_stream(stream_id, now)

    def refresh_gauges(self, now: float) -> None:
        self._metrics.set_queue(self.scheduler.stats().queued_sentences, self.scheduler.load(now))
        if self.cache is not None:
            stats = self.cache.stats()
            self._metrics.set_cache(stats.bytes, stats.entries)

    def _dispatch_soon(self) -> None:
        """Dispatch on the next loop turn: a download's client read while its session was
        handing out audio, and a session takes one input at a time."""
        if self._loop is not None:
            self._loop.call_soon(self.dispatch)

    def _keep_for_cache(self, step: SynthesisStep, audio: np.ndarray) -> None:
        """Collect a sentence's decoded pieces; at its last one, the whole sentence is cached
        in this process and written to the shared cache in the background."""
        local = self.cache is not None and self.cache.enabled
        if not local and self.shared is None:
            return
        key = (step.stream_id, step.seq)
        pieces = self._pieces.setdefault(key, [])
        pieces.append(audio)
        if step.last:
            del self._pieces[key]
            whole = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
            words = step.latent.words if isinstance(step.latent, Latent) else ()
            if self.cache is not None and local:
                self._metrics.cache_evicted(self.cache.put(
                    step.voice, step.speed, step.text, whole, self._rates[step.voice], words))
            if self.shared is not None:
                self.shared.put(step.voice, step.speed, step.text, whole, words)

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
        while True:
            # With no worker idle, a cached window may still go: it needs none.
            steps = self.scheduler.next_steps(now, self._max_batch, cached_only=not pool.idle)
            if not steps:
                break
            if steps[0].cached:
                self._serve_cached(steps[0], now)
                continue
            pool.dispatch(steps)  # one kind, voice, speed and window length: one engine run
            self._metrics.run_dispatched(steps[0].kind.value, len(steps))
        wake = self.scheduler.next_wakeup_s(now) if pool.idle else None
        timer = self._wakeup
        if wake is None:
            if timer is not None:
                timer.cancel()
                self._wakeup = None
            return
        when = max(wake, now + 0.001)
        if timer is not None:
            if self._wakeup_at == when:
                return  # already set for then (most dispatches leave the held-back head alone)
            timer.cancel()
        if self._loop is not None:
            self._wakeup = self._loop.call_at(when, self._woken)
            self._wakeup_at = when

    def _woken(self) -> None:
        """The wake-up timer fired: held-back work may run now."""
        self._wakeup = None
        self.dispatch()

    def _serve_cached(self, step: SynthesisStep, now: float) -> None:
        """A cached sentence's window: its slice of the cached audio, delivered as a worker's
        result would be (its `chunk` plan first, at its first window)."""
        latent = step.latent
        assert isinstance(latent, CachedLatent)
        audio = latent.window(step.start_frame, step.frames)
        keep = self.scheduler.decoded(step, audio_s=len(audio) / self._rates[step.voice],
                                      compute_s=0.0, now=now)
        link = self._links.get(step.stream_id)
        if not keep or link is None or self._deliver is None:
            return
        inputs: list[SynthesisResult] = []
        if step.start_frame == 0:
            inputs.append(ChunkPlanned(step.seq, step.text, len(latent.samples), latent.words))
        inputs.append(ChunkAudio(step.seq, audio, last=step.last))
        link.piece_delivered(step.seq, step.deadline_s)
        self._deliver(step.stream_id, inputs)

    def on_result(self, result: WorkResult) -> None:
        """A worker finished a step (on the loop thread): tell the scheduler, then the session,
        then give idle workers work."""
        self.take_result(result)
        self.dispatch()

    def take_result(self, result: WorkResult) -> None:
        """A finished step, without dispatching: the pool takes several runs' results at once
        and dispatches once after them (WorkerPool's `on_drained`)."""
        now = self._now()
        step = result.step
        inputs: list[SynthesisResult] = []
        link = self._links.get(step.stream_id)
        if result.failed:
            self._pieces.pop((step.stream_id, step.seq), None)
            self.scheduler.fail(step, now)  # the worker logged it (workers._failed), once
            inputs.append(ChunkFailed(step.seq, result.error or "synthesis failed"))
        elif step.kind is StepKind.ENCODE and result.latent is not None:
            latent = result.latent
            keep = self.scheduler.encoded(step, frames=latent.frames,
                                          samples_per_frame=latent.samples_per_frame,
                                          latent=latent, compute_s=result.compute_s, now=now,
                                          batch=result.batch)
            self._metrics.synthesized(result.compute_s, 0.0, "encode")
            if keep:
                inputs.append(ChunkPlanned(step.seq, step.text, latent.samples, latent.words))
                if latent.frames == 0:  # nothing to decode: the sentence ends here
                    inputs.append(ChunkAudio(step.seq, _EMPTY, last=True))
        elif result.audio is not None:
            audio_s = len(result.audio) / self._rates[step.voice]
            keep = self.scheduler.decoded(step, audio_s=audio_s, compute_s=result.compute_s,
                                          now=now, batch=result.batch)
            self._metrics.synthesized(result.compute_s, audio_s, "decode")
            if keep:
                self._keep_for_cache(step, result.audio)
                inputs.append(ChunkAudio(step.seq, result.audio, last=step.last,
                                         pcm_s16=result.pcm_s16))
                if link is not None:
                    link.piece_delivered(step.seq, step.deadline_s)
            else:  # cleared or closed: this sentence will not be finished
                self._pieces.pop((step.stream_id, step.seq), None)
        if log.isEnabledFor(logging.DEBUG):
            # One line per step, all of it in fields (loadtest/lib/pace.py reads them).
            log.debug("step", extra={
                **stream_fields(step.stream_id), "seq": step.seq, "kind": step.kind.value,
                "frames": step.frames, "took_ms": round(result.compute_s * 1e3, 1),
                "predicted_ms": round(step.predicted_compute_s * 1e3, 1)})
        if step.overrun:
            log.warning("%s step took %.3f s, predicted %.3f s", step.kind.value,
                        result.compute_s, step.predicted_compute_s,
                        extra={**stream_fields(step.stream_id), "seq": step.seq})
        if inputs and link is not None and self._deliver is not None:
            self._deliver(step.stream_id, inputs)


_EMPTY = np.zeros(0, dtype=np.float32)
