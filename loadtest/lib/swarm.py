"""Many listeners from several processes: the load generator for 1,000+ streams: the library behind
`python -m loadtest.swarm` (its command line is loadtest/swarm.py).

Each stream connects (protocol-v1 over WebSocket, json encoding, or `POST /v1/audio/speech`
with `response_format: pcm`), sends one paragraph and accounts every audio frame where it
arrives: its bytes, its arrival time, the order of chunks, and the listener's playback clock
(playback starts at the first audio frame and runs in real time; a stall is time with an
empty buffer before `done`). Nothing is decoded: a frame costs a few float operations, so
one process carries hundreds of streams and the server, not the generator, is what is
measured. `--processes` spreads the streams over that many processes, each with its own
event loop; they start together on a shared wall-clock time. Given several servers (replicas of
one service: `--url` more than once, or `--serve` with `--replicas N`), streams are dealt to them
round-robin, as a balancer would deal new connections, and the server figures add up over them.

The report: first audio p50/p95/p99, stalls and streams with a stall, admitted and refused,
frames per second, and, when the server's pid is known (`--server-pid`, or `--serve`, which
starts a server and stops it after), the server's CPU per thread read from /proc (the event
loop apart from the inference threads), its RSS, and the engine's batch sizes from /metrics
(loadtest/lib/batches.py).

`--serve` starts `litestream serve` on a free loopback port with ARGS, plus client limits
wide enough for one address to open every stream (a load test comes from one address;
`--no-wide-limits` keeps the server's defaults), and without the sentence cache unless ARGS
set `--cache-bytes`: the varied paragraphs share sentences, and a hit skips synthesis.

Timing claims are printed, never asserted. The generator runs on the server's machine, so on
a small machine its own CPU is part of the figures: the report prints both."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import platform
import random
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from litestream.client import build_url
from loadtest.lib import batches
from loadtest.lib.net import free_port
from loadtest.lib.recorder import percentile
from loadtest.lib.texts import LONG, PARAGRAPH

DEFAULT_URL = "ws://127.0.0.1:8765/v1/stream"
TRANSPORTS = ("ws", "http")
# Frames of s16le mono: 2 bytes a sample. f32le is never asked for here.
BYTES_PER_SAMPLE = 2


# ---------------------------------------------------------------- texts

def _sentences() -> list[str]:
    pool = re.split(r"(?<=[.!?])\s+", PARAGRAPH) + re.split(r"(?<=[.!?])\s+", LONG)
    return [s for s in pool if s]


def paragraph_for(index: int, seed: int, sentences: int = 5) -> str:
    """Stream `index`'s text: `sentences` sentences drawn from the benchmark texts, its own
    order, starting with a long one when it can (so the first-clause cut has work)."""
    pool = _sentences()
    rng = random.Random(seed * 1_000_003 + index)
    picked = rng.sample(pool, min(sentences, len(pool)))
    longest = max(picked, key=len)
    picked.remove(longest)
    return " ".join([longest, *picked])


def text_for_stream(mode: str, index: int, seed: int) -> str:
    if mode == "paragraph":
        return PARAGRAPH
    if mode == "varied":
        return paragraph_for(index, seed)
    if mode == "long":
        return LONG
    if mode == "sentence":
        return _sentences()[index % len(_sentences())]
    raise ValueError(f"text must be paragraph, varied, long or sentence, not {mode!r}")


# ---------------------------------------------------------------- pure: one listener

@dataclass
class ListenerResult:
    """What one listener saw; times in seconds on its process's monotonic clock unless
    named otherwise. Kept flat and small: thousands of these cross a process pipe."""

    index: int
    transport: str
    refused_status: int | None = None
    error: str | None = None  # connection error, or the first `error` code received
    ttfa_s: float | None = None  # text sent -> first audio byte
    # WebSocket: its start -> handshake done (the connect, the kernel's accept queue and the
    # upgrade); a SYN dropped by a full accept queue shows here as a second or more
    connect_s: float | None = None
    stalls: int = 0
    stall_s: float = 0.0
    audio_bytes: int = 0
    frames: int = 0
    chunks: int = 0
    order_errors: int = 0  # a chunk out of sequence, or a chunk's bytes not its duration
    done: bool = False
    close_code: int | None = None
    started_wall: float = 0.0  # time.time() at connect
    ended_wall: float = 0.0
    sample_rate: int = 0

    @property
    def audio_s(self) -> float:
        return self.audio_bytes / (BYTES_PER_SAMPLE * self.sample_rate) if self.sample_rate else 0.0


class Listener:
    """The per-frame accounting of one stream: pure, every call takes the caller's `now`.

    The playback clock: the listener starts playing at the first audio byte and plays in
    real time. `play_end` is when what it has received runs out; a frame that arrives later
    than that (by more than `min_stall_s`) ends a stall of the difference.
    Order: chunks must come as seq 0, 1, 2, ... and each chunk's audio must be its announced
    duration (to one millisecond) before the next `chunk` event or `done`.
    """

    __slots__ = ("_bytes_per_s", "_chunk_bytes", "_chunk_expect", "_min_stall_s", "_play_end",
                 "_sent_at", "_seq", "result")

    def __init__(self, result: ListenerResult, *, min_stall_s: float = 0.001) -> None:
        self.result = result
        self._min_stall_s = min_stall_s
        self._bytes_per_s = 0.0
        self._sent_at: float | None = None
        self._play_end: float | None = None
        self._seq = -1
        self._chunk_bytes = 0
        self._chunk_expect: float | None = None  # bytes the current chunk announced

    def on_ready(self, sample_rate: int) -> None:
        self.result.sample_rate = sample_rate
        self._bytes_per_s = float(sample_rate * BYTES_PER_SAMPLE)

    def on_text_sent(self, now: float) -> None:
        if self._sent_at is None:
            self._sent_at = now

    def on_chunk(self, seq: int, duration_ms: float) -> None:
        self._close_chunk()
        if seq != self._seq + 1:
            self.result.order_errors += 1
        self._seq = seq
        self.result.chunks += 1
        self._chunk_bytes = 0
        self._chunk_expect = duration_ms * self._bytes_per_s / 1000.0

    def on_audio(self, nbytes: int, now: float) -> None:
        result = self.result
        play_end = self._play_end
        if play_end is None:
            if self._sent_at is not None:
                result.ttfa_s = now - self._sent_at
            play_end = now
        elif now > play_end:
            if now - play_end >= self._min_stall_s:
                result.stalls += 1
                result.stall_s += now - play_end
            play_end = now
        self._play_end = play_end + nbytes / self._bytes_per_s
        result.audio_bytes += nbytes
        result.frames += 1
        self._chunk_bytes += nbytes

    def on_done(self) -> None:
        self._close_chunk()
        self.result.done = True

    def _close_chunk(self) -> None:
        expect = self._chunk_expect
        if expect is not None and abs(self._chunk_bytes - expect) > self._bytes_per_s / 1000.0:
            self.result.order_errors += 1
        self._chunk_expect = None


# ---------------------------------------------------------------- asyncio: the streams

@dataclass(frozen=True)
class StreamPlan:
    index: int
    offset_s: float  # start, from the run's shared start time
    text: str
    url: str = DEFAULT_URL  # the server (replica) this stream goes to: its ws:// stream URL


@dataclass(frozen=True)
class ClientOptions:
    transport: str
    voice: str = ""
    pace: str = ""
    first_audio_only: bool = False  # close right after the first audio byte
    timeout_s: float = 600.0


def _ws_url(url: str, options: ClientOptions) -> str:
    """ws://host:port means the stream endpoint, as for litestream.client (`/` is the player's
    page, which answers an upgrade with 200 and HTML)."""
    return build_url(url, {"voice": options.voice or None, "pace": options.pace or None})


def _http_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    return f"{'https' if scheme == 'wss' else 'http'}://{host}/v1/audio/speech"


async def _run_ws(session: Any, options: ClientOptions, plan: StreamPlan,
                  listener: Listener) -> None:
    import aiohttp

    result = listener.result
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        ws = await session.ws_connect(_ws_url(plan.url, options), autoping=True, max_msg_size=0,
                                      compress=0)
    except aiohttp.WSServerHandshakeError as exc:
        result.refused_status = exc.status
        return
    result.connect_s = loop.time() - started
    binary, text_type = aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT
    try:
        listener.on_text_sent(loop.time())
        await ws.send_str(json.dumps({"type": "text", "text": plan.text}))
        await ws.send_str('{"type": "end"}')
        while True:
            msg = await ws.receive()
            if msg.type is binary:
                listener.on_audio(len(msg.data), loop.time())
                if options.first_audio_only:
                    break
            elif msg.type is text_type:
                event = json.loads(msg.data)
                kind = event.get("type")
                if kind == "chunk":
                    listener.on_chunk(int(event["seq"]), float(event["duration_ms"]))
                elif kind == "ready":
                    listener.on_ready(int(event["sample_rate"]))
                elif kind == "done":
                    listener.on_done()
                elif kind == "error" and result.error is None:
                    result.error = str(event.get("code"))
            else:  # close, closing, closed, error
                break
    finally:
        await ws.close()
        code = ws.close_code
        if not (code == 1000 and result.done) and not options.first_audio_only:
            result.close_code = code


async def _run_http(session: Any, options: ClientOptions, plan: StreamPlan,
                    listener: Listener) -> None:
    result = listener.result
    loop = asyncio.get_running_loop()
    body: dict[str, Any] = {"model": "tts-1", "input": plan.text,
                            "voice": options.voice or "alloy", "response_format": "pcm"}
    if options.pace:
        body["pace"] = options.pace
    listener.on_text_sent(loop.time())
    async with session.post(_http_url(plan.url), json=body) as response:
        if response.status != 200:
            result.refused_status = response.status
            with contextlib.suppress(Exception):
                result.error = (await response.json()).get("error", {}).get("code")
            return
        listener.on_ready(int(response.headers.get("X-Sample-Rate", "24000")))  # OpenAI's pcm
        odd = b""
        async for data in response.content.iter_any():
            if odd:
                data, odd = odd + data, b""
            if len(data) % BYTES_PER_SAMPLE:
                data, odd = data[:-1], data[-1:]
            listener.on_audio(len(data), loop.time())
            if options.first_audio_only:
                return
        listener.on_done()


async def run_streams(options: ClientOptions, plans: Sequence[StreamPlan],
                      start_wall: float) -> list[ListenerResult]:
    """Every planned stream of this process, each starting at `start_wall + offset_s`."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=60)
    run = _run_ws if options.transport == "ws" else _run_http
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(plan: StreamPlan) -> ListenerResult:
            delay = start_wall + plan.offset_s - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            result = ListenerResult(index=plan.index, transport=options.transport,
                                    started_wall=time.time())
            listener = Listener(result)
            try:
                async with asyncio.timeout(options.timeout_s):
                    await run(session, options, plan, listener)
            except TimeoutError:
                result.error = "timeout"
            except (aiohttp.ClientError, OSError) as exc:
                result.error = f"{type(exc).__name__}: {exc}"[:200]
            result.ended_wall = time.time()
            return result

        return list(await asyncio.gather(*(one(plan) for plan in plans)))


def _process_main(options: ClientOptions, plans: Sequence[StreamPlan],
                  start_wall: float) -> list[ListenerResult]:
    _raise_fd_limit()
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.run(run_streams(options, plans, start_wall))
    return asyncio.run(run_streams(options, plans, start_wall))


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---------------------------------------------------------------- the server, from outside

@dataclass
class ThreadCpu:
    event_loop_s: float = 0.0  # the main thread: asyncio's loop
    inference_s: float = 0.0  # threads named ls-infer-*
    other_s: float = 0.0
    inference_threads: int = 0
    event_loop_threads: int = 0  # main threads read (one per server)


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """tid -> (thread name, user + system CPU seconds), from /proc: in clock ticks (10 ms on
    Linux), so a thread that worked less than a tick between two readings may read 0."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    with contextlib.suppress(FileNotFoundError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii") as f:
                    stat = f.read()
            except (FileNotFoundError, ProcessLookupError):
                continue
            name = stat[stat.index("(") + 1: stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2:].split()
            out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / ticks)
    return out


def cpu_between(pid: int, before: dict[int, tuple[str, float]],
                after: dict[int, tuple[str, float]], cpu: ThreadCpu | None = None) -> ThreadCpu:
    """Each thread's CPU between two `thread_cpu` readings of `pid`, by role; added to `cpu`
    when given (several servers' figures summed)."""
    cpu = cpu or ThreadCpu()
    for tid, (name, seconds) in after.items():
        used = seconds - before.get(tid, (name, 0.0))[1]
        if tid == pid:
            cpu.event_loop_s += used
            cpu.event_loop_threads += 1
        elif name.startswith("ls-infer"):
            cpu.inference_s += used
            cpu.inference_threads += 1
        else:
            cpu.other_s += used
    return cpu


def rss_bytes(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in bytes, (0, 0) when it is gone."""
    values = {"VmRSS": 0, "VmHWM": 0}
    with (contextlib.suppress(FileNotFoundError, ProcessLookupError),
          open(f"/proc/{pid}/status", encoding="ascii") as f):
        for line in f:
            key, _, rest = line.partition(":")
            if key in values:
                values[key] = int(rest.split()[0]) * 1024
    return values["VmRSS"], values["VmHWM"]


def pid_listening(port: int) -> int | None:
    """The pid of the process with a TCP socket listening on `port` (loopback load tests)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(parts[9])
    if not inodes:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(pid)
    return None


def scrape_metrics(url: str) -> str:
    """The server's /metrics text ("" when unreachable)."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    target = f"{'https' if scheme == 'wss' else 'http'}://{host}/metrics"
    try:
        with urllib.request.urlopen(target, timeout=5) as response:
            return str(response.read().decode("utf-8", "replace"))
    except (OSError, urllib.error.URLError):
        return ""


def batch_sizes(before: Sequence[str], after: Sequence[str]) -> dict[str, Any]:
    """Engine runs by batch size between two scrapes of each server, per kind, summed over
    the servers (loadtest/lib/batches.py)."""
    found = batches.total(batches.since(batches.parse(early), batches.parse(late))
                          for early, late in zip(before, after, strict=True) if late)
    if not found:
        return {}
    return {kind: {"runs": r.runs, "steps": r.steps, "mean_size": r.mean_size,
                   "batched_share": r.share_batched, "line": r.line(),
                   "mean_step_ms": r.mean_step_ms,
                   "by_size": {("more" if math.isinf(b) else f"{b:g}"): n
                               for b, n in sorted(r.by_size.items())}}
            for kind, r in found.items()}


class ServerWatch:
    """Samples the servers' RSS, summed, while a run lasts (a daemon thread, every
    `every_s`)."""

    def __init__(self, pids: Sequence[int], every_s: float = 0.5) -> None:
        self.pids = tuple(pids)
        self.samples: list[tuple[float, int]] = []  # (time.time(), VmRSS bytes, all servers)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="server-watch")

    def __enter__(self) -> ServerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), sum(rss_bytes(pid)[0] for pid in self.pids)))
            self._stop.wait(0.5)


# ---------------------------------------------------------------- one run

@dataclass(frozen=True)
class SwarmConfig:
    # The servers' ws:// stream URLs: replicas of one service, dealt streams round-robin
    urls: tuple[str, ...] = (DEFAULT_URL,)
    streams: int = 100
    over_s: float = 0.0  # arrivals spread evenly over this long (0: a burst)
    processes: int = 0  # 0: one per core, at most one per 100 streams
    transport: str = "ws"
    text: str = "varied"
    voice: str = ""
    pace: str = ""
    seed: int = 1
    first_audio_only: bool = False
    timeout_s: float = 600.0
    server_pids: tuple[int, ...] = ()  # the servers' pids, for /proc figures (summed)


@dataclass
class SwarmReport:
    machine: dict[str, Any]
    config: dict[str, Any]
    streams: int
    admitted: int
    refused: int
    refused_by_status: dict[str, int]
    errors: dict[str, int]
    completed: int
    ttfa_p50_ms: float | None
    ttfa_p95_ms: float | None
    ttfa_p99_ms: float | None
    ttfa_max_ms: float | None
    # WebSocket only: start -> handshake done, and start -> first audio (what a client that
    # opens its stream when it has text waits)
    connect_p50_ms: float | None
    connect_p95_ms: float | None
    connect_max_ms: float | None
    from_connect_p95_ms: float | None
    stalls: int
    streams_with_stalls: int
    stall_ms_total: float
    order_errors: int
    audio_s_total: float
    frames_total: int
    frames_per_s: float
    wall_s: float
    peak_concurrent: int
    server: dict[str, Any] = field(default_factory=dict)
    generator_cpu_s: float = 0.0  # the generator's own processes, user + system

    @property
    def passed(self) -> bool:
        """Every offered stream admitted, every admitted stream whole and never dry."""
        return (self.refused == 0 and self.stalls == 0 and self.completed == self.streams
                and not self.errors and self.order_errors == 0)


def machine_info() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"node": platform.node(), "cpu": model, "nproc": os.cpu_count() or 0,
            "python": platform.python_version(), "loadavg_1m": load}


def plan_streams(config: SwarmConfig) -> list[StreamPlan]:
    n = config.streams
    if not config.urls:
        raise ValueError("no server URL")
    step = config.over_s / n if n and config.over_s > 0 else 0.0
    urls = config.urls
    return [StreamPlan(i, i * step, text_for_stream(config.text, i, config.seed),
                       urls[i % len(urls)])
            for i in range(n)]


def _split(plans: Sequence[StreamPlan], parts: int) -> list[list[StreamPlan]]:
    return [list(plans[i::parts]) for i in range(parts) if plans[i::parts]]


def peak_concurrency(results: Sequence[ListenerResult]) -> int:
    edges = sorted([(r.started_wall, 1) for r in results if r.refused_status is None]
                   + [(r.ended_wall, -1) for r in results if r.refused_status is None])
    peak = level = 0
    for _, delta in edges:
        level += delta
        peak = max(peak, level)
    return peak


def run_swarm(config: SwarmConfig) -> tuple[SwarmReport, list[ListenerResult]]:
    """One run: every stream of `config`, over several processes; blocks until all end."""
    if config.transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {TRANSPORTS}")
    plans = plan_streams(config)
    processes = config.processes or max(1, min(os.cpu_count() or 1, -(-config.streams // 100)))
    options = ClientOptions(transport=config.transport, voice=config.voice,
                            pace=config.pace, first_audio_only=config.first_audio_only,
                            timeout_s=config.timeout_s)
    pids = config.server_pids
    metrics_before = [scrape_metrics(url) for url in config.urls]
    cpu_before = {pid: thread_cpu(pid) for pid in pids}
    rss_before = sum(rss_bytes(pid)[0] for pid in pids)
    own_before = _children_cpu()
    # spawn, not fork: the caller may hold threads and a running event loop (a server in the
    # same process, in tests), which a forked child would inherit half-copied.
    context = multiprocessing.get_context("spawn")
    start_wall = time.time() + 1.5 + 0.2 * processes
    watch = ServerWatch(pids) if pids else contextlib.nullcontext()
    with watch, context.Pool(processes) as pool:
        parts = pool.starmap(_process_main, [(options, part, start_wall)
                                             for part in _split(plans, processes)])
    wall_s = time.time() - start_wall
    results = sorted((r for part in parts for r in part), key=lambda r: r.index)
    server: dict[str, Any] = {}
    if pids:
        cpu = ThreadCpu()
        for pid in pids:
            cpu_between(pid, cpu_before[pid], thread_cpu(pid), cpu)
        rss = [rss_bytes(pid) for pid in pids]  # (VmRSS, VmHWM) each, one read a server
        rss_now, rss_peak = sum(now for now, _ in rss), sum(peak for _, peak in rss)
        samples = watch.samples if isinstance(watch, ServerWatch) else []
        run_peak = max((rss for _, rss in samples), default=rss_now)
        server = {"pids": list(pids), "cpu": asdict(cpu), "rss_before_mb": rss_before / 2**20,
                  "rss_peak_during_run_mb": run_peak / 2**20, "rss_after_mb": rss_now / 2**20,
                  "rss_high_water_mb": rss_peak / 2**20}
    sizes = batch_sizes(metrics_before, [scrape_metrics(url) for url in config.urls])
    if sizes:
        server["batches"] = sizes
    report = summarize(config, results, wall_s, server)
    report.generator_cpu_s = _children_cpu() - own_before
    return report, results


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def summarize(config: SwarmConfig, results: Sequence[ListenerResult], wall_s: float,
              server: dict[str, Any]) -> SwarmReport:
    admitted = [r for r in results if r.refused_status is None and r.sample_rate]
    refused: dict[str, int] = {}
    errors: dict[str, int] = {}
    for r in results:
        if r.refused_status is not None:
            refused[str(r.refused_status)] = refused.get(str(r.refused_status), 0) + 1
        elif r.error is not None:
            key = r.error.split(":", 1)[0]
            errors[key] = errors.get(key, 0) + 1
        elif r.close_code is not None and not config.first_audio_only:
            errors[f"close {r.close_code}"] = errors.get(f"close {r.close_code}", 0) + 1
    ttfas = [r.ttfa_s * 1000.0 for r in admitted if r.ttfa_s is not None]
    connects = [r.connect_s * 1000.0 for r in admitted if r.connect_s is not None]
    from_connect = [(r.connect_s + r.ttfa_s) * 1000.0 for r in admitted
                    if r.connect_s is not None and r.ttfa_s is not None]
    audio_s = math.fsum(r.audio_s for r in results)
    frames = sum(r.frames for r in results)
    cpu = server.get("cpu")
    if cpu and audio_s > 0:
        server["event_loop_ms_per_audio_s"] = cpu["event_loop_s"] * 1000.0 / audio_s
        server["inference_ms_per_audio_s"] = cpu["inference_s"] * 1000.0 / audio_s
    peak = peak_concurrency(results)
    if "rss_peak_during_run_mb" in server and peak:
        server["rss_growth_per_stream_kb"] = (
            (server["rss_peak_during_run_mb"] - server["rss_before_mb"]) * 1024.0 / peak)
    return SwarmReport(
        machine=machine_info(),
        config=asdict(config),
        streams=len(results),
        admitted=len(admitted),
        refused=sum(refused.values()),
        refused_by_status=refused,
        errors=errors,
        completed=sum(1 for r in results if r.done),
        ttfa_p50_ms=percentile(ttfas, 50),
        ttfa_p95_ms=percentile(ttfas, 95),
        ttfa_p99_ms=percentile(ttfas, 99),
        ttfa_max_ms=max(ttfas) if ttfas else None,
        connect_p50_ms=percentile(connects, 50),
        connect_p95_ms=percentile(connects, 95),
        connect_max_ms=max(connects) if connects else None,
        from_connect_p95_ms=percentile(from_connect, 95),
        stalls=sum(r.stalls for r in results),
        streams_with_stalls=sum(1 for r in results if r.stalls),
        stall_ms_total=math.fsum(r.stall_s for r in results) * 1000.0,
        order_errors=sum(r.order_errors for r in results),
        audio_s_total=audio_s,
        frames_total=frames,
        frames_per_s=frames / wall_s if wall_s > 0 else 0.0,
        wall_s=wall_s,
        peak_concurrent=peak,
        server=server,
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _to_replicas(config: dict[str, Any]) -> str:
    urls = config.get("urls") or ()
    return f" dealt to {len(urls)} replicas" if len(urls) > 1 else ""


def _load(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _by_status(counts: Mapping[str, int] | None) -> str:
    """After the refused count: " {'503': 7}", or nothing when none was refused."""
    return f" {dict(counts)}" if counts else ""


def format_report(report: SwarmReport) -> str:
    c = report.config
    m = report.machine
    lines = [
        f"machine {m['node']} | {m['cpu']} | nproc {m['nproc']} | load 1m "
        f"{_load(m['loadavg_1m'])}",
        f"{report.streams} {c['transport']} streams of {c['text']} text over "
        f"{c['over_s']:.0f} s{_to_replicas(c)}: admitted {report.admitted}, refused "
        f"{report.refused}{_by_status(report.refused_by_status)}, completed {report.completed}, "
        f"errors "
        f"{report.errors or 0}, order errors {report.order_errors}, peak concurrent "
        f"{report.peak_concurrent}",
        f"first audio p50 {_ms(report.ttfa_p50_ms)} p95 {_ms(report.ttfa_p95_ms)} "
        f"p99 {_ms(report.ttfa_p99_ms)} max {_ms(report.ttfa_max_ms)} ms; stalls "
        f"{report.stalls} in {report.streams_with_stalls} streams ({report.stall_ms_total:.0f} ms)",
        *([f"handshake p50 {_ms(report.connect_p50_ms)} p95 {_ms(report.connect_p95_ms)} max "
           f"{_ms(report.connect_max_ms)} ms; from the start of the connect to first audio p95 "
           f"{_ms(report.from_connect_p95_ms)} ms"] if report.connect_p50_ms is not None else []),
        f"audio {report.audio_s_total:.0f} s in {report.wall_s:.1f} s; "
        f"{report.frames_per_s:.0f} frames/s; generator CPU {report.generator_cpu_s:.1f} s",
    ]
    s = report.server
    if "cpu" in s:
        cpu = s["cpu"]
        lines.append(
            f"server CPU: event loop {cpu['event_loop_s']:.2f} s "
            f"({s.get('event_loop_ms_per_audio_s', 0):.3f} ms per audio s), inference "
            f"{cpu['inference_s']:.2f} s over {cpu['inference_threads']} threads "
            f"({s.get('inference_ms_per_audio_s', 0):.3f} ms per audio s), other "
            f"{cpu['other_s']:.2f} s")
        lines.append(
            f"server RSS: {s['rss_before_mb']:.0f} MB before, {s['rss_peak_during_run_mb']:.0f}"
            f" MB peak in the run, {s['rss_after_mb']:.0f} MB after"
            + (f"; {s['rss_growth_per_stream_kb']:.0f} kB per concurrent stream at the peak"
               if "rss_growth_per_stream_kb" in s else ""))
    lines += [kind["line"] for kind in s.get("batches", {}).values()]
    return "\n".join(lines)


# ---------------------------------------------------------------- a server to load



WIDE_LIMITS = ("--streams-per-key", "100000", "--messages-per-s", "1000000",
               "--chars-per-s", "100000000")


@contextlib.contextmanager
def serve(args: Sequence[str], *, wide_limits: bool = True, ready_timeout_s: float = 600.0,
          log_path: str | None = None) -> Iterator[tuple[str, int]]:
    """`litestream serve ARGS` on a free loopback port: yields (ws url, pid) once /readyz is
    green, and stops it (SIGTERM, then SIGKILL) after."""
    with serve_replicas(args, 1, wide_limits=wide_limits, ready_timeout_s=ready_timeout_s,
                        log_path=log_path) as servers:
        yield servers[0]


@contextlib.contextmanager
def serve_replicas(args: Sequence[str], replicas: int, *, wide_limits: bool = True,
                   ready_timeout_s: float = 600.0,
                   log_path: str | None = None) -> Iterator[list[tuple[str, int]]]:
    """`replicas` servers, each `litestream serve ARGS` on its own free loopback port, started
    together (on a GPU they share it): yields [(ws url, pid)] once every /readyz is green, and
    stops them all after. Logs go to `log_path`, the replica's number before its suffix from the
    second on (server.log, server.1.log, ...)."""
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, not {replicas}")
    with contextlib.ExitStack() as stack:
        started = []
        ports: set[int] = set()
        for number in range(replicas):
            port = free_port()
            while port in ports:  # free until bound: two picks may meet before either binds
                port = free_port()
            ports.add(port)
            log_name = log_path
            if log_path and number:
                stem, dot, suffix = log_path.rpartition(".")
                log_name = f"{stem}.{number}.{suffix}" if dot else f"{log_path}.{number}"
            started.append(stack.enter_context(_server_process(args, port, wide_limits,
                                                               log_name)))
        deadline = time.monotonic() + ready_timeout_s
        for proc, port, log_name in started:
            _wait_ready(proc, port, deadline, log_name)
        yield [(f"ws://127.0.0.1:{port}/v1/stream", proc.pid) for proc, port, _ in started]


@contextlib.contextmanager
def _server_process(args: Sequence[str], port: int, wide_limits: bool,
                    log_path: str | None) -> Iterator[tuple[subprocess.Popen[bytes], int,
                                                            str | None]]:
    argv = [sys.executable, "-c", "import sys; from litestream.cli import main; "
            "sys.exit(main())", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if wide_limits:
        argv += WIDE_LIMITS
    if "--cache-bytes" not in args:
        argv += ["--cache-bytes", "0"]
    argv += list(args)
    log = open(log_path or os.devnull, "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc, port, log_path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_ready(proc: subprocess.Popen[bytes], port: int, deadline: float,
                log_path: str | None) -> None:
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before ready "
                               f"(log: {log_path or 'none'})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("server not ready in time")
        time.sleep(0.25)


# ---------------------------------------------------------------- the largest load that passes

def search_capacity(probe: Callable[[int], SwarmReport], *, start: int, limit: int,
                    deadline: Callable[[], bool], on_probe: Callable[[SwarmReport], None]
                    = lambda _: None) -> tuple[int, list[SwarmReport]]:
    """The largest stream count whose run passes (all admitted, 0 stalls, all whole), found
    by doubling from `start`, then halving the gap once a run fails; stops early when
    `deadline()` says so. 0 when even `start` fails."""
    reports: list[SwarmReport] = []
    good, bad = 0, None
    n = start
    while n <= limit and not deadline():
        report = probe(n)
        reports.append(report)
        on_probe(report)
        if report.passed:
            good = n
        else:
            bad = n
        if bad is None:
            n *= 2
        else:
            if bad - good <= max(1, good // 8):
                break
            n = (good + bad) // 2 if good else max(1, bad // 2)
            if n == good:
                break
    return good, reports


# ---------------------------------------------------------------- CLI
