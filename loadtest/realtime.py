"""Realtime load test: N simulated listeners against a litestream server.

    python -m loadtest.realtime --streams 20 --arrival burst --text paragraph
    python -m loadtest.realtime --capacity --text long

Each stream speaks the raw protocol-v1 (json encoding) and plays its audio in simulated real
time: playback starts at the first audio frame and advances with the wall clock. A stall is
time the listener spent with an empty buffer after playback started and before `done`
(protocol-v1: Timing promise); it is measured when each audio frame arrives.

Layout (habit 1 of shared/style.md): the accounting is pure and takes times as arguments --
`StreamRecorder` (one listener; wraps `litestream.client.PlaybackClock`), `percentile`,
`summarize`, `arrival_offsets`, `capacity_search` with an injected probe. The asyncio part
(`run_stream`, `run_load`) only moves frames from the socket into the recorder with a timestamp.

Timing claims are printed, never asserted (shared/style.md habit 10). The listener runs on the
same machine as the server: on a 2-core box the client's own CPU use is part of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from litestream.client import (
    Audio,
    Chunk,
    Done,
    Error,
    EventDecoder,
    PlaybackClock,
    Ready,
)
from litestream.protocol import Encoding
from loadtest.texts import text_for, words

DEFAULT_URL = "ws://127.0.0.1:8765/v1/stream"
MAX_STREAMS_HARD = 1024  # a bound on any single run, whatever the flags say


# ---------------------------------------------------------------- pure: one listener

@dataclass
class StreamResult:
    """What one simulated listener saw. Times in ms unless named otherwise."""

    index: int
    start_offset_s: float  # planned arrival, from the run's start
    refused_status: int | None = None  # HTTP status of a handshake refusal (503, 429, ...)
    connect_error: str | None = None  # failed to connect for another reason
    ttfa_ms: float | None = None  # first text sent -> first audio frame received
    stall_count: int = 0
    stall_ms: float = 0.0
    audio_s: float = 0.0  # audio received (from frame sizes)
    chunks: int = 0
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
    """The figures the report prints (shared/design/scheduler-notes.md: What to report)."""

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

def machine_info() -> dict[str, Any]:
    model = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"node": platform.node(), "cpu": model or "unknown", "nproc": os.cpu_count() or 0,
            "python": platform.python_version(), "loadavg_1m_at_start": _loadavg()}


def _loadavg() -> float | None:
    """1-minute load average: on a shared box, other work skews every figure; say so."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


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
        f"first audio    p50 {_ms(s.ttfa_p50_ms)} ms, p95 {_ms(s.ttfa_p95_ms)} ms, "
        f"p99 {_ms(s.ttfa_p99_ms)} ms, max {_ms(s.ttfa_max_ms)} ms",
        f"stalls         {s.stall_count} total, {s.streams_with_stalls}/{s.streams} streams, "
        f"{s.stall_ms_total:.0f} ms total (worst stream {s.stall_ms_max_stream:.0f} ms)",
        f"chunk lateness worst {_ms(s.worst_chunk_lateness_ms)} ms, "
        f"p99 {_ms(s.chunk_lateness_p99_ms)} ms, p50 {_ms(s.chunk_lateness_p50_ms)} ms "
        f"over {s.chunks - s.with_audio} later chunks (negative = early)",
        f"refused        {s.refused} ({refused}); connect errors {s.connect_errors}",
        f"server errors  {errors}; abnormal closes {closes}; timed out {s.timed_out}",
        f"completed      {s.completed}/{s.streams} got done, {s.with_audio} got audio",
        f"audio          {s.audio_s_total:.1f} s total",
        f"wall           {s.wall_s:.1f} s",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- asyncio: the listeners

def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise SystemExit(f"refusing non-loopback host {host!r}; pass --allow-remote to load it")


async def run_stream(url: str, mode: str, recorder: StreamRecorder, *, token_rate: float,
                     timeout_s: float) -> StreamResult:
    """One listener: connect, send the text, record every frame with its arrival time."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    loop = asyncio.get_running_loop()
    now = loop.time
    result = recorder.result
    try:
        ws = await connect(url, open_timeout=min(timeout_s, 30), proxy=None,
                           max_size=8 * 1024 * 1024, compression=None)
    except InvalidStatus as exc:
        result.refused_status = exc.response.status_code
        return result
    except (OSError, TimeoutError) as exc:
        result.connect_error = f"{type(exc).__name__}: {exc}"
        return result

    text = text_for(mode)

    async def send() -> None:
        if mode == "tokens":
            # Word by word on a fixed schedule, no flush; `end` speaks the tail.
            start = now()
            for i, token in enumerate(words(text)):
                delay = start + i / token_rate - now()
                if delay > 0:
                    await asyncio.sleep(delay)
                recorder.on_text_sent(now())
                await ws.send(json.dumps({"type": "text", "text": token}))
        else:
            recorder.on_text_sent(now())
            await ws.send(json.dumps({"type": "text", "text": text}))
        await ws.send(json.dumps({"type": "end"}))

    async def receive() -> None:
        decoder = EventDecoder(Encoding.JSON)
        while True:
            frame = await ws.recv()
            t = now()  # taken at arrival, before decoding
            recorder.on_event(decoder.feed(frame), t)

    sender = asyncio.create_task(send())
    try:
        async with asyncio.timeout(timeout_s):
            try:
                await receive()
            except ConnectionClosed as exc:
                recorder.on_close(exc.rcvd.code if exc.rcvd is not None else 1006)
    except TimeoutError:
        result.timed_out = True
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
            await sender
        await ws.close()
    return result


async def run_load(url: str, *, streams: int, arrival: str = "burst", text: str = "paragraph",
                   token_rate: float = 8.0, seed: int = 1, timeout_s: float = 300.0,
                   mix: Sequence[tuple[str, str]] = (),
                   ) -> tuple[Summary, list[StreamResult]]:
    """N listeners arriving as `arrival` says; returns the summary and every stream's result.
    `mix` ((voice, text), ...) gives stream i the i-th pair, round robin, instead of `text`."""
    if not 1 <= streams <= MAX_STREAMS_HARD:
        raise ValueError(f"streams must be 1..{MAX_STREAMS_HARD}")
    if token_rate <= 0:
        raise ValueError("token rate must be > 0")
    text_for(text)  # validate early
    offsets = arrival_offsets(streams, arrival, seed)
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def one(i: int, offset: float) -> StreamResult:
        delay = t0 + offset - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        voice, mode = mix[i % len(mix)] if mix else ("", text)
        target = f"{url}?{urlencode({'voice': voice})}" if voice else url
        return await run_stream(target, mode, StreamRecorder(i, offset),
                                token_rate=token_rate, timeout_s=timeout_s)

    results = await asyncio.gather(*(one(i, off) for i, off in enumerate(offsets)))
    return summarize(results, loop.time() - t0), list(results)


# ---------------------------------------------------------------- the 1-thread RTF bar

def measure_rtf(text: str, runs: int = 3) -> dict[str, Any]:
    """RTF of the bundled voice on one intra-op thread, in this process, chunked the way the
    server chunks (the segmenter's sentences), median of `runs`."""
    from litestream.engine import PiperVoice
    from litestream.segmenter import Segmenter

    voice = PiperVoice.load(intra_op_threads=1)
    seg = Segmenter()
    chunks = seg.feed(text) + seg.flush()
    rtfs: list[float] = []
    audio_s = 0.0
    for _ in range(max(1, runs)):
        t = time.perf_counter()
        samples = sum(len(voice.synthesize(c)) for c in chunks)
        compute_s = time.perf_counter() - t
        audio_s = samples / voice.sample_rate
        rtfs.append(compute_s / audio_s)
    rtf = statistics.median(rtfs)
    cores = os.cpu_count() or 1
    return {"rtf_1_thread": rtf, "runs": rtfs, "audio_s": audio_s, "cores": cores,
            "bar_streams": 0.75 * cores / rtf}


# ---------------------------------------------------------------- CLI

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtest.realtime", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=DEFAULT_URL)
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--arrival", default="burst", help="burst | poisson:RATE (streams/s)")
    p.add_argument("--text", default="paragraph", choices=["paragraph", "long", "tokens"])
    p.add_argument("--token-rate", type=float, default=8.0, help="words/s in tokens mode")
    p.add_argument("--mix", default="", metavar="VOICE=TEXT,...",
                   help="streams take these voice=text pairs in turn, e.g. "
                        "en_US-joe-medium=paragraph,jf_alpha=ja (default: --text, default voice)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--timeout-s", type=float, default=600.0, help="bound on each stream")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback host")
    p.add_argument("--capacity", action="store_true", help="search the largest N that passes")
    p.add_argument("--target-p95-ms", type=float, default=1000.0)
    p.add_argument("--max-streams", type=int, default=64)
    p.add_argument("--start", type=int, default=None,
                   help="first capacity probe (default: the 75%%-of-cores bar, measured)")
    p.add_argument("--max-time-s", type=float, default=1500.0, help="bound on the search")
    p.add_argument("--rtf-runs", type=int, default=3)
    p.add_argument("--pause-s", type=float, default=2.0, help="idle time between probes")
    return p


def parse_mix(spec: str) -> list[tuple[str, str]]:
    """"a=paragraph,b=ja" -> [("a", "paragraph"), ("b", "ja")]; texts checked."""
    pairs = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        voice, sep, mode = item.partition("=")
        if not sep or not voice:
            raise SystemExit(f"--mix: {item!r} is not VOICE=TEXT")
        text_for(mode)
        pairs.append((voice, mode))
    return pairs


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.allow_remote:
        check_loopback(args.url)
    try:
        parse_arrival(args.arrival)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    meta: dict[str, Any] = {"machine": machine_info(), "url": args.url, "arrival": args.arrival,
                            "text": args.text, "token_rate": args.token_rate, "seed": args.seed}
    args.mix = parse_mix(args.mix)
    meta["mix"] = args.mix
    if args.capacity:
        return _capacity(args, meta)
    if not 1 <= args.streams <= MAX_STREAMS_HARD:
        raise SystemExit(f"--streams must be 1..{MAX_STREAMS_HARD}")
    summary, _ = asyncio.run(run_load(args.url, streams=args.streams, arrival=args.arrival,
                                      text=args.text, token_rate=args.token_rate,
                                      seed=args.seed, timeout_s=args.timeout_s, mix=args.mix))
    meta["loadavg_1m_at_end"] = _loadavg()
    if args.json:
        print(json.dumps({**meta, "summary": asdict(summary)}))
    else:
        print(format_report(summary, meta))
    return 0


def _capacity(args: argparse.Namespace, meta: dict[str, Any]) -> int:
    max_streams = max(1, min(args.max_streams, MAX_STREAMS_HARD))
    # Measured before any load, so the server's workers do not share the cores with it.
    rtf = measure_rtf(text_for(args.text), args.rtf_runs)
    bar = rtf["bar_streams"]
    start = args.start if args.start is not None else max(1, min(max_streams, round(bar)))
    if not args.json:
        print(f"RTF(1 thread) {rtf['rtf_1_thread']:.4f} (median of "
              f"{', '.join(f'{x:.4f}' for x in rtf['runs'])}; {rtf['audio_s']:.1f} s of audio); "
              f"bar = 0.75 x {rtf['cores']} cores / RTF = {bar:.1f} streams", flush=True)
        print(f"search: text {args.text}, burst, pass = 0 stalls, 0 refused, 0 errors, "
              f"all done, p95 first audio < {args.target_p95_ms:.0f} ms; start {start}, "
              f"max {max_streams}", flush=True)

    def report(p: Probe) -> None:
        if args.json:
            return
        s = p.summary
        print(f"probe {p.streams:>4} streams: {'PASS' if p.passed else 'FAIL'}  "
              f"first audio p50 {_ms(s.ttfa_p50_ms)} p95 {_ms(s.ttfa_p95_ms)} "
              f"p99 {_ms(s.ttfa_p99_ms)} ms; stalls {s.stall_count} "
              f"({s.streams_with_stalls} streams, {s.stall_ms_total:.0f} ms); "
              f"worst lateness {_ms(s.worst_chunk_lateness_ms)} ms; refused {s.refused}; "
              f"errors {sum(s.errors.values())}; done {s.completed}/{s.streams}; "
              f"wall {s.wall_s:.1f} s; load avg 1m {_loadavg()}", flush=True)

    async def search() -> tuple[int, list[Probe], bool]:
        first = True

        async def probe(n: int) -> Summary:
            nonlocal first
            if not first:
                await asyncio.sleep(args.pause_s)  # let the server close the last probe
            first = False
            summary, _ = await run_load(args.url, streams=n, arrival="burst", text=args.text,
                                        token_rate=args.token_rate, seed=args.seed,
                                        timeout_s=args.timeout_s, mix=args.mix)
            return summary

        return await capacity_search(
            probe, target_p95_ms=args.target_p95_ms, max_streams=max_streams, start=start,
            deadline_s=time.monotonic() + args.max_time_s, on_probe=report)

    t = time.monotonic()
    capacity, probes, bounded = asyncio.run(search())
    verdict = "PASS" if capacity >= bar else "FAIL"
    if args.json:
        print(json.dumps({**meta, "capacity": capacity, "bounded_early": bounded,
                          "max_streams": max_streams, "target_p95_ms": args.target_p95_ms,
                          "rtf": rtf, "bar_streams": bar, "verdict": verdict,
                          "search_wall_s": time.monotonic() - t,
                          "probes": [{"streams": p.streams, "passed": p.passed,
                                      "summary": asdict(p.summary)} for p in probes]}))
    else:
        m = meta["machine"]
        print(f"machine {m['node']} | {m['cpu']} | nproc {m['nproc']}; server {args.url}; "
              f"load avg 1m {m['loadavg_1m_at_start']} at start, {_loadavg()} at end")
        note = " (search stopped at --max-time-s)" if bounded else ""
        capped = " (= --max-streams)" if capacity >= max_streams else ""
        print(f"capacity {capacity} streams{capped}{note} of text {args.text}, "
              f"search {time.monotonic() - t:.0f} s over {len(probes)} probes")
        print(f"bar: 75% of cores / RTF(1 thread) = 0.75 x {rtf['cores']} / "
              f"{rtf['rtf_1_thread']:.4f} = {bar:.1f} streams -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
