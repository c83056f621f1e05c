"""The pure accounting of the load tests: what each listener saw, and what they add up to.

`StreamRecorder` keeps one listener's books (it wraps `litestream.client.PlaybackClock`);
`percentile`, `summarize`, `passes` and `format_report` turn many listeners into the figures
printed; `arrival_offsets` plans when they start; `capacity_search` finds the largest load
that passes, around an injected probe. Nothing here opens a socket or reads the time: every
call takes the caller's `now` (docs/style.md: pure cores), and the search's clock is injected.
The asyncio listeners that feed it live in loadtest/realtime.py.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from litestream.client import Audio, Chunk, Done, Error, PlaybackClock, Ready, Words

# ---------------------------------------------------------------- pure: one listener

@dataclass
class StreamResult:
    """What one simulated listener saw. Times in ms unless named otherwise."""

    index: int
    start_offset_s: float  # planned arrival, from the run's start
    refused_status: int | None = None  # HTTP status of a handshake refusal (503, 429, ...)
    retry_after: str | None = None  # that refusal's Retry-After header
    replica: str | None = None  # which replica a balancer chose (deploy/fleet: its header)
    connect_error: str | None = None  # failed to connect for another reason
    ttfa_ms: float | None = None  # first text sent -> first audio frame received
    stall_count: int = 0
    stall_ms: float = 0.0
    audio_s: float = 0.0  # audio received (from frame sizes)
    chunks: int = 0
    words_events: int = 0  # `words` events (only with timestamps=word)
    chunk_lateness_ms: list[float] = field(default_factory=list)  # chunks after the first
    errors: list[str] = field(default_factory=list)  # `error` codes received
    error_messages: list[str] = field(default_factory=list)  # their messages, same order
    done: bool = False  # `done` arrived
    close_code: int | None = None  # None when the server closed with 1000 after done
    timed_out: bool = False
    server_underrun_ms: int | None = None  # the server's own estimate, from `done`

    @property
    def refused(self) -> bool:
        return self.refused_status is not None


class StreamRecorder:
    """Accounting for one stream; pure (every call takes the caller's `now`, in seconds).

    Chunk lateness: for each chunk after playback started, how late its first frame arrived
    relative to when the play head needed it. A frame that finds audio still buffered is early
    by that much (negative); one that finds the buffer dry is late by the stall it ends.
    The first chunk has no lateness (playback waits for it): that is `ttfa_ms`.
    """

    def __init__(self, index: int = 0, start_offset_s: float = 0.0, *,
                 min_stall_ms: float = 1.0) -> None:
        self.result = StreamResult(index=index, start_offset_s=start_offset_s)
        self._min_stall_ms = min_stall_ms
        self._clock: PlaybackClock | None = None
        self._first_text_at: float | None = None
        self._seq = -1  # json audio frames belong to the latest `chunk`
        self._seen_audio: set[int] = set()

    def on_ready(self, sample_rate: int, fmt: str = "s16le", channels: int = 1) -> None:
        self._clock = PlaybackClock(sample_rate, fmt, channels=channels,
                                    min_stall_ms=self._min_stall_ms)

    def on_text_sent(self, now: float) -> None:
        if self._first_text_at is None:
            self._first_text_at = now

    def on_chunk(self, seq: int, text: str, start_ms: int, duration_ms: int, now: float) -> None:
        self._seq = seq
        self.result.chunks += 1
        if self._clock is not None:
            self._clock.on_chunk(Chunk(seq, text, start_ms, duration_ms), now)

    def on_audio(self, nbytes: int, now: float) -> float:
        """One audio frame arrived; returns the stall it ended (ms, 0 if none)."""
        clock = self._clock
        if clock is None:
            raise ValueError("audio before ready")
        playing = clock.first_audio_at is not None
        buffered_ms = clock.buffered_ms(now) if playing else 0.0
        stall_ms = clock.on_audio(self._seq, nbytes, now)
        if self.result.ttfa_ms is None and self._first_text_at is not None:
            self.result.ttfa_ms = (now - self._first_text_at) * 1000.0
        if self._seq not in self._seen_audio:
            self._seen_audio.add(self._seq)
            if playing:
                self.result.chunk_lateness_ms.append(stall_ms if stall_ms > 0 else -buffered_ms)
        self.result.audio_s += nbytes / clock.bytes_per_ms / 1000.0
        self.result.stall_count = clock.stall_count
        self.result.stall_ms = clock.stall_ms
        return stall_ms

    def on_error(self, code: str, message: str = "") -> None:
        self.result.errors.append(code)
        self.result.error_messages.append(message)

    def on_done(self, underrun_ms: int | None = None) -> None:
        self.result.done = True
        self.result.server_underrun_ms = underrun_ms

    def on_close(self, code: int) -> None:
        if not (code == 1000 and self.result.done):
            self.result.close_code = code

    def on_event(self, event: object, now: float) -> None:
        """Account one decoded server event that arrived at `now`."""
        if isinstance(event, Audio):
            self.on_audio(len(event.pcm), now)
        elif isinstance(event, Ready):
            self.on_ready(event.sample_rate, event.format, event.channels)
        elif isinstance(event, Chunk):
            self.on_chunk(event.seq, event.text, event.start_ms, event.duration_ms, now)
        elif isinstance(event, Words):
            self.result.words_events += 1
        elif isinstance(event, Error):
            self.on_error(event.code, event.message)
        elif isinstance(event, Done):
            self.on_done(event.stats.underrun_ms)


# ---------------------------------------------------------------- pure: summary

def percentile(values: Sequence[float], p: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method); None for no values."""
    if not values:
        return None
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be 0..100, got {p}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


@dataclass
class Summary:
    """The figures the report prints (docs/scheduling.md: what a benchmark reports)."""

    streams: int
    with_audio: int
    completed: int  # got `done`
    ttfa_p50_ms: float | None
    ttfa_p95_ms: float | None
    ttfa_p99_ms: float | None
    ttfa_max_ms: float | None
    stall_count: int
    streams_with_stalls: int
    stall_ms_total: float
    stall_ms_max_stream: float
    refused: int
    refused_by_status: dict[str, int]
    connect_errors: int
    errors: dict[str, int]  # `error` codes received, counted
    error_examples: dict[str, str]  # code -> the first message seen with it
    abnormal_closes: dict[str, int]  # close code -> streams
    timed_out: int
    audio_s_total: float
    wall_s: float
    worst_chunk_lateness_ms: float | None
    chunk_lateness_p50_ms: float | None
    chunk_lateness_p99_ms: float | None
    chunks: int
    words_events: int = 0  # `words` events received (timestamps=word)
    connect_error_example: str | None = None  # the first connection error, as the OS said it


def summarize(results: Sequence[StreamResult], wall_s: float) -> Summary:
    ttfas = [r.ttfa_ms for r in results if r.ttfa_ms is not None]
    lateness = [x for r in results for x in r.chunk_lateness_ms]
    refused: dict[str, int] = {}
    errors: dict[str, int] = {}
    closes: dict[str, int] = {}
    examples: dict[str, str] = {}
    for r in results:
        if r.refused_status is not None:
            refused[str(r.refused_status)] = refused.get(str(r.refused_status), 0) + 1
        for code, message in zip(r.errors, r.error_messages or [""] * len(r.errors),
                                 strict=True):
            errors[code] = errors.get(code, 0) + 1
            examples.setdefault(code, message)
        if r.close_code is not None:
            closes[str(r.close_code)] = closes.get(str(r.close_code), 0) + 1
    return Summary(
        streams=len(results),
        with_audio=sum(1 for r in results if r.audio_s > 0),
        completed=sum(1 for r in results if r.done),
        ttfa_p50_ms=percentile(ttfas, 50),
        ttfa_p95_ms=percentile(ttfas, 95),
        ttfa_p99_ms=percentile(ttfas, 99),
        ttfa_max_ms=max(ttfas) if ttfas else None,
        stall_count=sum(r.stall_count for r in results),
        streams_with_stalls=sum(1 for r in results if r.stall_count > 0),
        stall_ms_total=math.fsum(r.stall_ms for r in results),
        stall_ms_max_stream=max((r.stall_ms for r in results), default=0.0),
        refused=sum(refused.values()),
        refused_by_status=refused,
        connect_errors=sum(1 for r in results if r.connect_error is not None),
        errors=errors,
        error_examples=examples,
        abnormal_closes=closes,
        timed_out=sum(1 for r in results if r.timed_out),
        audio_s_total=math.fsum(r.audio_s for r in results),
        wall_s=wall_s,
        worst_chunk_lateness_ms=max(lateness) if lateness else None,
        chunk_lateness_p50_ms=percentile(lateness, 50),
        chunk_lateness_p99_ms=percentile(lateness, 99),
        chunks=sum(r.chunks for r in results),
        words_events=sum(r.words_events for r in results),
        connect_error_example=next(
            (r.connect_error for r in results if r.connect_error is not None), None),
    )


def passes(summary: Summary, target_p95_ms: float) -> bool:
    """The capacity bar for one probe: every stream served in full, none ran dry, fast start."""
    return (summary.refused == 0 and summary.connect_errors == 0 and summary.stall_count == 0
            and summary.completed == summary.streams and summary.timed_out == 0
            and not summary.errors and not summary.abnormal_closes
            and summary.ttfa_p95_ms is not None and summary.ttfa_p95_ms < target_p95_ms)


# ---------------------------------------------------------------- pure: arrivals, search

def parse_arrival(spec: str) -> tuple[str, float]:
    """'burst' -> ('burst', 0); 'poisson:RATE' -> ('poisson', RATE streams/s)."""
    if spec == "burst":
        return "burst", 0.0
    kind, _, rate = spec.partition(":")
    if kind == "poisson":
        try:
            value = float(rate)
        except ValueError:
            value = -1.0
        if value > 0 and math.isfinite(value):
            return "poisson", value
    raise ValueError(f"arrival must be 'burst' or 'poisson:RATE' (RATE > 0), got {spec!r}")


def arrival_offsets(n: int, arrival: str, seed: int = 1) -> list[float]:
    """Start times (s from the run's start): all 0 for a burst; exponential gaps for poisson."""
    kind, rate = parse_arrival(arrival)
    if kind == "burst":
        return [0.0] * n
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        out.append(t)
        t += rng.expovariate(rate)
    return out


@dataclass
class Probe:
    streams: int
    passed: bool
    summary: Summary


async def capacity_search(probe: Callable[[int], Awaitable[Summary]], *, target_p95_ms: float,
                          max_streams: int, start: int = 1, deadline_s: float = math.inf,
                          clock: Callable[[], float] = time.monotonic,
                          on_probe: Callable[[Probe], None] | None = None,
                          ) -> tuple[int, list[Probe], bool]:
    """Largest N in 1..max_streams that passes; (capacity, probes, bounded_early).

    Doubling from `start` (or halving, when `start` fails) brackets the answer, then binary
    search. Assumes monotonicity (N passes -> N-1 passes), which noise can break; every probe is
    reported so a reader can see it. Stops at `deadline_s` on `clock` with the best bracket.
    """
    probes: list[Probe] = []
    cache: dict[int, bool] = {}

    async def test(n: int) -> bool:
        if n not in cache:
            summary = await probe(n)
            result = Probe(n, passes(summary, target_p95_ms), summary)
            probes.append(result)
            cache[n] = result.passed
            if on_probe is not None:
                on_probe(result)
        return cache[n]

    lo, hi = 0, max_streams + 1  # lo passes (0 trivially), hi fails (beyond the bound)
    n = max(1, min(start, max_streams))
    # Bracket.
    while True:
        if clock() > deadline_s:
            return lo, probes, True
        if await test(n):
            lo = n
            if n >= max_streams:
                break
            n = min(max_streams, n * 2)
        else:
            hi = n
            if n <= 1 or lo > 0:
                break
            n = max(1, n // 2)
            if n <= lo:
                break
    # Bisect.
    while hi - lo > 1:
        if clock() > deadline_s:
            return lo, probes, True
        mid = (lo + hi) // 2
        if await test(mid):
            lo = mid
        else:
            hi = mid
    return lo, probes, False


# ---------------------------------------------------------------- pure: report

def fmt_ms(value: float | None) -> str:
    """A figure in whole ms for a report line; "n/a" for none."""
    return "n/a" if value is None else f"{value:.0f}"


# Every stream of a load test comes from one address, so the server's per-address limits
# (docs/operations.md) meet it long before its capacity: a rate_limited error says so.
RATE_LIMIT_HINT = ("the server's per-address limits, not its capacity (every stream comes from "
                   "this one address): start it with --streams-per-key 100000 --messages-per-s "
                   "1000000 --chars-per-s 100000000")


# A run in which no stream got audio measured nothing: the command says so and exits 1.
NOTHING_HEARD = "no stream got audio: these figures measure nothing (see refused, connect errors)"


def format_report(summary: Summary, meta: dict[str, Any]) -> str:
    m = meta["machine"]
    s = summary
    refused = ", ".join(f"{k}: {v}" for k, v in sorted(s.refused_by_status.items())) or "none"
    errors = ", ".join(f"{k}: {v} ({s.error_examples.get(k, '')!r})"
                       for k, v in sorted(s.errors.items())) or "none"
    closes = ", ".join(f"{k}: {v}" for k, v in sorted(s.abnormal_closes.items())) or "none"
    lines = [
        f"machine        {m['node']} | {m['cpu']} | nproc {m['nproc']} | python {m['python']}"
        f" | load avg 1m {m.get('loadavg_1m_at_start')} at start, {meta.get('loadavg_1m_at_end')}"
        " at end",
        f"server         {meta['url']}",
        f"load           {s.streams} streams, arrival {meta['arrival']}, text {meta['text']}"
        + (f" at {meta['token_rate']} words/s" if meta["text"] == "tokens" else ""),
        f"first audio    p50 {fmt_ms(s.ttfa_p50_ms)} ms, p95 {fmt_ms(s.ttfa_p95_ms)} ms, "
        f"p99 {fmt_ms(s.ttfa_p99_ms)} ms, max {fmt_ms(s.ttfa_max_ms)} ms",
        f"stalls         {s.stall_count} total, {s.streams_with_stalls}/{s.streams} streams, "
        f"{s.stall_ms_total:.0f} ms total (worst stream {s.stall_ms_max_stream:.0f} ms)",
        f"chunk lateness worst {fmt_ms(s.worst_chunk_lateness_ms)} ms, "
        f"p99 {fmt_ms(s.chunk_lateness_p99_ms)} ms, p50 {fmt_ms(s.chunk_lateness_p50_ms)} ms "
        f"over {s.chunks - s.with_audio} later chunks (negative = early)"
        + (f"; {s.words_events} words events" if s.words_events else ""),
        f"refused        {s.refused} ({refused}); connect errors {s.connect_errors}"
        + (f" ({s.connect_error_example})" if s.connect_error_example else ""),
        f"server errors  {errors}; abnormal closes {closes}; timed out {s.timed_out}",
        f"completed      {s.completed}/{s.streams} got done, {s.with_audio} got audio",
        f"audio          {s.audio_s_total:.1f} s total",
        f"wall           {s.wall_s:.1f} s",
    ]
    if "rate_limited" in s.errors:
        lines.append(f"rate_limited   {RATE_LIMIT_HINT}")
    if s.with_audio == 0:
        lines.append(f"nothing heard  {NOTHING_HEARD}")
    return "\n".join(lines)
