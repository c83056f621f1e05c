"""Fault injection, soak and cold start for litestream (issue 10).

    python -m loadtest.faults                          # every scenario, in-process server
    python -m loadtest.faults --only hung_run,worker_dies
    python -m loadtest.faults --url ws://127.0.0.1:8765/v1/stream   # client-side scenarios
    python -m loadtest.faults --soak --minutes 30      # mixed traffic at ~80% of capacity
    python -m loadtest.faults --coldstart              # first stream vs warm first audio

Engine faults need the engine: in-process, the server runs the real bundled voice wrapped in
`FaultyVoice`, which injects a fault into any chunk whose text holds a marker word
(`Faultraise`, `Faulthang`, `Faultslow`, `Faultwedge`, `Faultdie`). Against a running server
(`--url`) only the client-side scenarios run (a client that stops reading, a disconnect storm,
malformed messages). Every scenario prints what it injected, what the faulted stream got, and
its bystanders' stalls and first audio; bystanders must not stall.

Timing figures are printed, never asserted (shared/style.md habit 10). The clients run on the
same machine as the server: on a 2-core box their CPU use is part of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from litestream.client import Audio, EventDecoder
from litestream.errors import SynthesisError
from litestream.protocol import Encoding
from loadtest.realtime import machine_info
from loadtest.recorder import StreamRecorder, StreamResult, percentile
from loadtest.texts import LONG, PARAGRAPH, words

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


# ---------------------------------------------------------------- the fault-injecting engine

class Fault(enum.Enum):
    RAISE = "raise"  # the engine raises (a bad input, an ORT error)
    HANG = "hang"    # a run that never finishes on its own; the real ORT terminate stops it
    SLOW = "slow"    # the run takes 3x as long as it should
    WEDGE = "wedge"  # stuck outside ORT, deaf to terminate: the worker must be replaced
    DIE = "die"      # the worker thread itself dies


MARKERS: dict[Fault, str] = {fault: "Fault" + fault.value for fault in Fault}


class WorkerKilled(BaseException):
    """Escapes every `except Exception`: the worker thread dies of it."""


class FaultPlan:
    """Which faults to inject (by marker word in a chunk's text) and what was injected.

    Shared by every session of a FaultyVoice; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = threading.local()  # the fault marked by this thread's last text
        self.injected: dict[Fault, int] = dict.fromkeys(Fault, 0)
        self.released = threading.Event()  # frees wedged runs (at shutdown)
        # Cleared: new sessions (a replacement worker's) wait, so a test can see the pool
        # with one worker fewer before the replacement is warm.
        self.sessions_allowed = threading.Event()
        self.sessions_allowed.set()

    def mark(self, text: str) -> None:
        faults = [fault for fault, marker in MARKERS.items() if marker in text]
        if faults:
            self._pending.fault = faults[0]

    def take(self) -> Fault | None:
        fault: Fault | None = getattr(self._pending, "fault", None)
        self._pending.fault = None
        if fault is not None:
            with self._lock:
                self.injected[fault] += 1
        return fault

    def release(self) -> None:
        self.released.set()
        self.sessions_allowed.set()


class FaultyVoice:
    """A real voice whose runs fail on demand. Everything not overridden is the real one's."""

    def __init__(self, inner: Any, plan: FaultPlan) -> None:
        self._inner = inner
        self.plan = plan

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def sample_rate(self) -> int:
        return int(self._inner.sample_rate)

    def phoneme_ids(self, text: str) -> list[int]:
        self.plan.mark(text)
        ids: list[int] = self._inner.phoneme_ids(text)
        return ids

    def encode(self, ids: Sequence[int], speed: float = 1.0, *, run_options: Any = None) -> Any:
        """A sentence's front pass: where a marked sentence's fault strikes."""
        fault = self.plan.take()
        if fault is Fault.RAISE:
            raise SynthesisError("injected: the engine raised")
        if fault is Fault.DIE:
            raise WorkerKilled("injected: the worker thread dies")
        if fault is Fault.WEDGE:
            # Stuck where ORT's terminate cannot reach (a native call, a lock).
            self.plan.released.wait()
            raise SynthesisError("injected: wedged run released")
        if fault is Fault.HANG:
            # A run that does not end on its own: run the real model over and over with the
            # caller's RunOptions, until ORT itself refuses because terminate was set.
            while True:
                self._inner.encode(ids, speed, run_options=run_options)
                self._inner.synthesize_ids([ids], speed, run_options=run_options)
        started = time.perf_counter()
        latent = self._inner.encode(ids, speed, run_options=run_options)
        if fault is Fault.SLOW:
            time.sleep(2 * (time.perf_counter() - started))
        return latent

    def synthesize(self, text: str, speed: float = 1.0) -> np.ndarray:
        audio: np.ndarray = self._inner.synthesize(text, speed)
        return audio

    def new_session(self) -> FaultyVoice:
        self.plan.sessions_allowed.wait()
        return FaultyVoice(self._inner.new_session(), self.plan)

    def warmup(self) -> None:
        self._inner.warmup()


# ---------------------------------------------------------------- clients

@dataclass
class Outcome:
    """What one scenario saw."""

    name: str
    injected: str
    faulted: list[StreamResult] = field(default_factory=list)
    bystanders: list[StreamResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def bystanders_ok(self) -> bool:
        return all(r.done and r.stall_count == 0 and not r.errors and not r.timed_out
                   for r in self.bystanders)

    def report(self) -> str:
        ttfa = [r.ttfa_ms for r in self.bystanders if r.ttfa_ms is not None]
        stalls = sum(r.stall_count for r in self.bystanders)
        stall_ms = sum(r.stall_ms for r in self.bystanders)
        done = sum(1 for r in self.bystanders if r.done)
        lines = [
            f"== {self.name}: {'PASS' if self.bystanders_ok else 'FAIL'}",
            f"   injected    {self.injected}",
        ]
        for r in self.faulted[:3]:
            refused = f"refused {r.refused_status}, " if r.refused else ""
            lines.append(f"   faulted #{r.index}  {refused}errors {r.errors or 'none'}, "
                         f"done {r.done}, "
                         f"close {r.close_code or 'normal'}, chunks {r.chunks}, "
                         f"audio {r.audio_s:.1f} s")
        if len(self.faulted) > 3:
            lines.append(f"   ... and {len(self.faulted) - 3} more faulted streams")
        lines.append(
            f"   bystanders  {len(self.bystanders)}: done {done}, stalls {stalls} "
            f"({stall_ms:.0f} ms), first audio p50 {_ms(percentile(ttfa, 50))} ms, "
            f"max {_ms(max(ttfa) if ttfa else None)} ms, errors "
            f"{[e for r in self.bystanders for e in r.errors] or 'none'}")
        lines.extend(f"   {note}" for note in self.notes)
        return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


async def speak(url: str, index: int, messages: Sequence[str | bytes], *, timeout_s: float = 120,
                read: bool = True, abort_after_s: float | None = None,
                pace_s: float = 0.0, playing: asyncio.Event | None = None,
                retries: int = 0) -> StreamResult:
    """One client: send `messages` (raw frames, json encoding), record what comes back.

    `read=False`: never read (a client that stops reading). `abort_after_s`: drop the TCP
    connection without a close frame that long after the first message. `playing` is set at
    its first audio (or when it ends without any)."""
    try:
        for _ in range(retries):  # a refused handshake (admission) may try again shortly
            result = await _speak(url, index, messages, timeout_s=timeout_s, read=read,
                                  abort_after_s=abort_after_s, pace_s=pace_s, playing=playing)
            if result.refused_status != 503:
                return result
            await asyncio.sleep(0.5)
        return await _speak(url, index, messages, timeout_s=timeout_s, read=read,
                            abort_after_s=abort_after_s, pace_s=pace_s, playing=playing)
    finally:
        if playing is not None:
            playing.set()


async def _speak(url: str, index: int, messages: Sequence[str | bytes], *, timeout_s: float,
                 read: bool, abort_after_s: float | None, pace_s: float,
                 playing: asyncio.Event | None) -> StreamResult:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    loop = asyncio.get_running_loop()
    recorder = StreamRecorder(index)
    result = recorder.result
    try:
        ws = await connect(url, open_timeout=30, proxy=None, max_size=8 * 1024 * 1024,
                           compression=None, max_queue=None if read else 1)
    except InvalidStatus as exc:
        result.refused_status = exc.response.status_code
        return result
    except (OSError, TimeoutError) as exc:
        result.connect_error = f"{type(exc).__name__}: {exc}"
        return result

    async def send() -> None:
        for message in messages:
            recorder.on_text_sent(loop.time())
            await ws.send(message)
            if pace_s:
                await asyncio.sleep(pace_s)

    async def receive() -> None:
        decoder = EventDecoder(Encoding.JSON)
        while True:
            frame = await ws.recv()
            t = loop.time()
            event = decoder.feed(frame)
            recorder.on_event(event, t)
            if isinstance(event, Audio) and playing is not None:
                playing.set()

    try:
        async with asyncio.timeout(timeout_s):
            if abort_after_s is not None:
                await send()
                await asyncio.sleep(abort_after_s)
                ws.transport.abort()
                result.close_code = 1006
            elif not read:
                await send()
                await ws.wait_closed()
                result.close_code = ws.close_code
            else:
                sender = asyncio.create_task(send())
                try:
                    await receive()
                except ConnectionClosed as exc:
                    recorder.on_close(exc.rcvd.code if exc.rcvd is not None else 1006)
                finally:
                    sender.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                        await sender
    except TimeoutError:
        result.timed_out = True
    finally:
        with contextlib.suppress(Exception):
            await ws.close()
    return result


def text_msgs(text: str, *, end: bool = True) -> list[str]:
    out = [json.dumps({"type": "text", "text": text})]
    if end:
        out.append(json.dumps({"type": "end"}))
    return out


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is: the CLI's defaults, or a quick version for the test suite."""

    bystanders: int = 3
    bystander_text: str = PARAGRAPH
    storm: int = 40  # connections dropped in the disconnect storm
    fuzz_clients: int = 6
    fuzz_frames: int = 150
    unread_s: float = 30.0  # how long the clients that stop reading stay connected


QUICK = Sizes(bystanders=2, bystander_text="The quick test speaks a few short sentences. "
              "They keep playing while the fault is injected. Then the stream is done.",
              storm=16, fuzz_clients=2, fuzz_frames=60, unread_s=4.0)


async def with_bystanders(url: str, sizes: Sizes,
                          fault: Callable[[], Awaitable[T]]) -> tuple[T, list[StreamResult]]:
    """Bystander streams start first; once each is playing, the fault runs alongside them."""
    playing = [asyncio.Event() for _ in range(sizes.bystanders)]
    tasks = [asyncio.create_task(speak(url, 100 + i, text_msgs(sizes.bystander_text),
                                       playing=event, retries=20))
             for i, event in enumerate(playing)]
    for event in playing:
        await event.wait()
    result = await fault()
    return result, list(await asyncio.gather(*tasks))


# ---------------------------------------------------------------- scenarios

def faulted_text(fault: Fault) -> str:
    return (f"This sentence comes first. {MARKERS[fault]} is in this one. "
            "And this sentence comes last.")


async def engine_fault(url: str, name: str, sizes: Sizes) -> Outcome:
    fault = _FAULT_OF[name]
    outcome = Outcome(name, f"{MARKERS[fault]}: one chunk of one stream")
    faulted, outcome.bystanders = await with_bystanders(
        url, sizes, lambda: speak(url, 0, text_msgs(faulted_text(fault)), retries=20))
    outcome.faulted = [faulted]
    return outcome


async def stop_reading(url: str, sizes: Sizes) -> Outcome:
    outcome = Outcome("stop_reading", f"2 clients send a long text and read nothing for "
                                      f"{sizes.unread_s:.0f} s")
    async def unread() -> list[StreamResult]:
        return list(await asyncio.gather(*(
            speak(url, i, text_msgs(LONG), read=False, timeout_s=sizes.unread_s)
            for i in range(2))))

    outcome.faulted, outcome.bystanders = await with_bystanders(url, sizes, unread)
    return outcome


async def disconnect_storm(url: str, sizes: Sizes) -> Outcome:
    storm = sizes.storm
    outcome = Outcome("disconnect_storm", f"{storm} clients send text and drop the TCP "
                                          "connection mid-stream, in waves")
    rng = random.Random(7)

    async def storm_wave() -> list[StreamResult]:
        out: list[StreamResult] = []
        for wave in range(4):
            out.extend(await asyncio.gather(*(
                speak(url, 1000 + wave * 100 + i, text_msgs(PARAGRAPH, end=False),
                      abort_after_s=rng.uniform(0.05, 1.0))
                for i in range(storm // 4))))
        return out

    storm_results, others = await with_bystanders(url, sizes, storm_wave)
    outcome.faulted = storm_results
    refused = sum(1 for r in storm_results if r.refused)
    outcome.notes.append(f"storm: {len(storm_results)} connections, {refused} refused at the "
                         "handshake (admission)")
    outcome.bystanders = others
    return outcome


def fuzz_frames(rng: random.Random, n: int) -> list[str | bytes]:
    """Malformed and hostile messages (protocol-v1 says each gets an error, never a crash)."""
    pool: list[Callable[[], str | bytes]] = [
        lambda: "{not json",
        lambda: json.dumps([1, 2, 3]),
        lambda: json.dumps({"type": "nope"}),
        lambda: json.dumps({"type": "text"}),
        lambda: json.dumps({"type": "text", "text": 42}),
        lambda: json.dumps({"type": "text", "text": "x", "flush": "yes"}),
        lambda: json.dumps({"type": "config", "speed": 1e308}),
        lambda: json.dumps({"type": "config", "speed": -1}),
        lambda: json.dumps({"type": "config", "voice": "no-such-voice"}),
        lambda: json.dumps({"type": "config", "frame_ms": "ten"}),
        lambda: json.dumps({"type": "flush", "extra": {"deep": [None] * 50}}),
        lambda: bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))),
        lambda: "\x00\x01\x02",
    ]
    return [rng.choice(pool)() for _ in range(n)]


# Speakable but hostile: a lone surrogate, control and combining characters, emoji and CJK.
SPEAKABLE_FUZZ: tuple[str, ...] = (
    json.dumps({"type": "text", "text": "Before \ud800 after."}, ensure_ascii=True),
    json.dumps({"type": "text", "text": "\u200b\u202e\ufeff e\u0301\u0302 \U0001F600 \u4e00. "}),
    json.dumps({"type": "text", "text": "Fine words after the noise."}),
)


async def malformed(url: str, sizes: Sizes) -> Outcome:
    clients, frames = sizes.fuzz_clients, sizes.fuzz_frames
    outcome = Outcome("malformed", f"{clients} clients x {frames} fuzzed frames, then end")
    rng = random.Random(11)

    async def fuzz() -> list[StreamResult]:
        return list(await asyncio.gather(*(
            speak(url, i, [*fuzz_frames(rng, frames), *SPEAKABLE_FUZZ,
                           json.dumps({"type": "end"})], pace_s=0.005, retries=20)
            for i in range(clients))))

    outcome.faulted, outcome.bystanders = await with_bystanders(url, sizes, fuzz)
    codes: dict[str, int] = {}
    for r in outcome.faulted:
        for code in r.errors:
            codes[code] = codes.get(code, 0) + 1
    outcome.notes.append(f"error codes the fuzzers got: {codes}")
    return outcome


ENGINE_SCENARIOS = ("engine_exception", "hung_run", "slow_run", "wedged_run", "worker_dies")
CLIENT_SCENARIOS = ("stop_reading", "disconnect_storm", "malformed")
SCENARIOS = ENGINE_SCENARIOS + CLIENT_SCENARIOS
_FAULT_OF = {"engine_exception": Fault.RAISE, "hung_run": Fault.HANG, "slow_run": Fault.SLOW,
             "wedged_run": Fault.WEDGE, "worker_dies": Fault.DIE}


async def run_scenario(name: str, url: str, sizes: Sizes) -> Outcome:
    if name in _FAULT_OF:
        return await engine_fault(url, name, sizes)
    if name == "stop_reading":
        return await stop_reading(url, sizes)
    if name == "disconnect_storm":
        return await disconnect_storm(url, sizes)
    if name == "malformed":
        return await malformed(url, sizes)
    raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")


# ---------------------------------------------------------------- in-process server

FAULT_SERVER_SETTINGS: dict[str, Any] = {
    # Short limits so a scenario takes seconds: a hung run is stopped after the floor (3 s:
    # above any honest chunk on a loaded 2-core box), a wedged worker replaced after the
    # grace, a client that stops reading cut after 2 s.
    "watchdog_floor_s": 3.0,
    "watchdog_grace_s": 1.0,
    "slow_reader_timeout_s": 2.0,
    "lookahead_s": 2.0,
    "max_lookahead_s": 4.0,
}


@contextlib.asynccontextmanager
async def faulty_server(plan: FaultPlan, **overrides: Any) -> Any:
    """A real server on a free loopback port whose voice is the bundled one in a FaultyVoice."""
    from litestream import config as config_mod
    from litestream.engine import PiperVoice
    from litestream.server import LitestreamServer

    settings = {**FAULT_SERVER_SETTINGS, "workers": 2, "deterministic": True, **overrides}
    config = config_mod.build(environ={}, host="127.0.0.1", port=free_port(), **settings)
    voice = PiperVoice.load(deterministic=settings["deterministic"])
    server = LitestreamServer(config, voices={voice.info.id: FaultyVoice(voice, plan)})  # type: ignore[dict-item]
    await server.start()
    try:
        yield server
    finally:
        plan.release()
        await server.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def metric(server: Any, name: str) -> float:
    """One sample of the server's own metrics registry (in-process)."""
    value = server.metrics.registry.get_sample_value(name)
    return 0.0 if value is None else float(value)


async def run_in_process(names: Sequence[str], sizes: Sizes,
                         print_fn: Callable[[str], None] = print) -> list[Outcome]:
    plan = FaultPlan()
    outcomes: list[Outcome] = []
    async with faulty_server(plan) as server:
        url = f"ws://127.0.0.1:{server.port}/v1/stream"
        for name in names:
            before = (metric(server, "litestream_watchdog_terminations_total"),
                      metric(server, "litestream_workers_replaced_total"))
            outcome = await run_scenario(name, url, sizes)
            # A replaced worker warms up in the background; let it finish before the next.
            for _ in range(200):
                if server._pool is not None and server._pool.serving == server._pool.size:
                    break
                await asyncio.sleep(0.05)
            after = (metric(server, "litestream_watchdog_terminations_total"),
                     metric(server, "litestream_workers_replaced_total"))
            outcome.notes.append(
                f"server: watchdog terminations +{after[0] - before[0]:.0f}, workers replaced "
                f"+{after[1] - before[1]:.0f}, serving "
                f"{metric(server, 'litestream_workers_serving'):.0f} of {server.config.workers}")
            outcomes.append(outcome)
            print_fn(outcome.report())
    print_fn(f"injected by the engine wrapper: "
             f"{ {f.value: n for f, n in plan.injected.items() if n} }")
    return outcomes


# ---------------------------------------------------------------- subprocess server

def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cache_mb(ws_url: str) -> float:
    """The server's sentence cache in MB (`litestream_cache_bytes` on /metrics; 0 when off)."""
    from prometheus_client.parser import text_string_to_metric_families

    base = ws_url.replace("ws://", "http://", 1).split("/v1/", 1)[0]
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        text = resp.read().decode("utf-8")
    for family in text_string_to_metric_families(text):
        if family.name == "litestream_cache_bytes":
            return sum(sample.value for sample in family.samples) / 1e6
    return 0.0


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


@contextlib.contextmanager
def serve_process(args: Sequence[str], cwd: Path = ROOT,
                  env: dict[str, str] | None = None) -> Any:
    """`litestream serve` as a child process on a free port; yields (proc, port, ready_s)."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LITESTREAM_")}
    clean.update(env or {})
    clean["PYTHONPATH"] = str(cwd)
    proc = subprocess.Popen([sys.executable, "-m", "litestream", "serve", "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "WARNING", *args],
                            cwd=cwd, env=clean, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    started = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            if time.monotonic() - started > 180:
                raise RuntimeError("server not ready in 180 s")
            try:
                if http_status(f"http://127.0.0.1:{port}/readyz") == 200:
                    break
            except OSError:
                pass
            time.sleep(0.05)
        yield proc, port, time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.send_signal(signal.SIGINT)  # a second signal: exit now, no drain
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------- cold start

async def first_audio_ms(url: str, text: str, burst: int = 1) -> float | None:
    """Median first audio of `burst` streams opened at once with `text`."""
    results = await asyncio.gather(*(speak(url, i, text_msgs(text)) for i in range(burst)))
    ttfa = [r.ttfa_ms for r in results if r.ttfa_ms is not None]
    return statistics.median(ttfa) if ttfa else None


def coldstart(servers: int, warm_streams: int, cwd: Path, extra: Sequence[str],
              burst: int = 1) -> None:
    """First stream (or burst of streams) after /readyz turns green vs warm ones, on fresh
    server processes."""
    texts = [PARAGRAPH, LONG[:400], "Hello there, how are you today?"]
    firsts: list[float] = []
    warms: list[float] = []
    for i in range(servers):
        with serve_process(["--workers", "2", *extra], cwd=cwd) as (_, port, ready_s):
            url = f"ws://127.0.0.1:{port}/v1/stream"
            text = texts[i % len(texts)]
            first = asyncio.run(first_audio_ms(url, text, burst))
            warm = [asyncio.run(first_audio_ms(url, text, burst)) for _ in range(warm_streams)]
            warm_ok = [w for w in warm if w is not None]
            if first is not None:
                firsts.append(first)
            warms.extend(warm_ok)
            print(f"server {i}: ready after {ready_s:.1f} s; first stream first audio "
                  f"{_ms(first)} ms; warm {', '.join(_ms(w) for w in warm_ok)} ms", flush=True)
    if firsts and warms:
        ratio = statistics.median(firsts) / statistics.median(warms)
        print(f"first stream median {statistics.median(firsts):.0f} ms, warm median "
              f"{statistics.median(warms):.0f} ms: ratio {ratio:.2f} (bar 1.5)")


# ---------------------------------------------------------------- soak

WEIRD = ("日本語のテキストと漢字が続きます。", "😀🎉🚀✨🌍", "1234567890 3.14159 $1,000,000.",
         "Ωμέγα Ελληνικά κείμενο.", "ﷺ ﷽ ẞ ǅ Ꙭ", "e\u0301\u0302\u0303" * 4, "\u202eevil\u202c")


def soak_client(rng: random.Random) -> tuple[str, list[str | bytes], dict[str, Any]]:
    """One client of the mixed traffic: (kind, frames, speak() options)."""
    kind = rng.choices(["paragraph", "tokens", "clear", "disconnect", "malformed", "longest",
                        "unicode"], weights=[30, 20, 10, 10, 10, 8, 12])[0]
    if kind == "paragraph":
        return kind, text_msgs(PARAGRAPH), {}
    if kind == "tokens":
        toks = [json.dumps({"type": "text", "text": w}) for w in words(PARAGRAPH)]
        return kind, [*toks, json.dumps({"type": "end"})], {"pace_s": 0.12}
    if kind == "clear":
        return kind, [*text_msgs(LONG, end=False), json.dumps({"type": "clear"}),
                      *text_msgs("And now something short instead.")], {"pace_s": 2.0}
    if kind == "disconnect":
        return kind, text_msgs(LONG, end=False), {"abort_after_s": rng.uniform(0.2, 4.0)}
    if kind == "malformed":
        return kind, [*fuzz_frames(rng, 40), json.dumps({"type": "end"})], {"pace_s": 0.01}
    if kind == "longest":
        # The largest text one message may carry (max_buffered_chars, 20,000 by default):
        # sent, spoken for a while, then dropped.
        text = (LONG + " ") * (20_000 // (len(LONG) + 1))
        return kind, text_msgs(text[:20_000], end=False), {"abort_after_s": rng.uniform(3, 10)}
    # unusual Unicode: the phonemizer spells it out, so short texts become long shapes
    text = " ".join(rng.choice(WEIRD) for _ in range(rng.randint(3, 18)))
    return kind, text_msgs(text), {}


async def soak(url: str, pid: int, minutes: float, streams: int, warmup_minutes: float,
               sample_s: float = 10.0, seed: int = 1) -> bool:
    """Closed-loop mixed traffic: `streams` clients at once, each starting a new one when it
    ends; RSS of `pid` and the sentence cache's bytes sampled every `sample_s`.

    PASS: RSS less the cache grows < 5% after warm-up. The cache is a store bounded by
    `--cache-bytes` (256 MiB by default) that fills as the mix's distinct sentences arrive;
    it is reported apart, and a soak with `--server-args "--cache-bytes 0"` has none."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    end_at = t0 + minutes * 60
    warm_at = t0 + warmup_minutes * 60
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    bad: dict[str, int] = {}
    samples: list[tuple[float, float, float]] = []  # (t, rss MB, cache MB)
    paragraph_ttfa: list[float] = []
    paragraph_stalls = [0, 0]  # stalls, paragraph streams

    async def slot(index: int) -> None:
        n = 0
        while loop.time() < end_at:
            kind, frames, options = soak_client(rng)
            counts[kind] = counts.get(kind, 0) + 1
            result = await speak(url, index * 100_000 + n, frames, timeout_s=240, **options)
            n += 1
            if result.timed_out:
                bad["timed_out"] = bad.get("timed_out", 0) + 1
            if result.refused:
                bad["refused"] = bad.get("refused", 0) + 1
                await asyncio.sleep(1.0)
            if kind == "paragraph" and result.done:
                paragraph_stalls[0] += result.stall_count
                paragraph_stalls[1] += 1
                if result.ttfa_ms is not None:
                    paragraph_ttfa.append(result.ttfa_ms)
            if kind in ("paragraph", "tokens", "unicode") and not (result.done or result.refused):
                bad[f"{kind}_not_done"] = bad.get(f"{kind}_not_done", 0) + 1

    async def sampler() -> None:
        while loop.time() < end_at:
            now = loop.time() - t0
            samples.append((now, rss_mb(pid), await asyncio.to_thread(cache_mb, url)))
            print(f"t={now / 60:5.1f} min  rss {samples[-1][1]:7.1f} MB  cache "
                  f"{samples[-1][2]:5.1f} MB  clients "
                  f"{sum(counts.values())}  {counts}  problems {bad}", flush=True)
            await asyncio.sleep(sample_s)

    await asyncio.gather(sampler(), *(slot(i) for i in range(streams)))
    samples.append((loop.time() - t0, rss_mb(pid), await asyncio.to_thread(cache_mb, url)))
    after = [(mb, cache) for t, mb, cache in samples if t >= warm_at - t0] or [samples[0][1:]]
    base, base_cache = after[0]
    peak = max(mb for mb, _ in after)
    final, final_cache = samples[-1][1:]
    growth = (final - base) / base * 100
    own_growth = ((final - final_cache) - (base - base_cache)) / (base - base_cache) * 100
    print(f"soak: {minutes:.0f} min, {streams} concurrent clients, {sum(counts.values())} "
          f"clients in all {counts}")
    print(f"rss: start {samples[0][1]:.0f} MB, after warm-up ({warmup_minutes:.0f} min) "
          f"{base:.0f} MB, peak after warm-up {peak:.0f} MB, final {final:.0f} MB: growth "
          f"{growth:+.1f}%")
    print(f"sentence cache: {base_cache:.0f} MB after warm-up, {final_cache:.0f} MB at the end; "
          f"rss less the cache: {base - base_cache:.0f} -> {final - final_cache:.0f} MB: "
          f"growth {own_growth:+.1f}% (bar < 5%)")
    print(f"paragraph streams: {paragraph_stalls[1]} done, {paragraph_stalls[0]} stalls, first "
          f"audio p50 {_ms(percentile(paragraph_ttfa, 50))} ms p95 "
          f"{_ms(percentile(paragraph_ttfa, 95))} ms; problems {bad or 'none'}")
    verdict = own_growth < 5.0
    print("PASS" if verdict else "FAIL")
    return verdict


# ---------------------------------------------------------------- memory: what grows

MEMORY_VARIANTS = ("arena", "noarena", "noarena+trim")


def memory_variant(variant: str, runs: int, seed: int = 1) -> None:
    """One engine session fed hostile chunks (long, unusual Unicode, many shapes), RSS of this
    process sampled; RTF on ordinary chunks before and after. `variant`: "arena" (ONNX
    Runtime's CPU arena on: before issue 10), "noarena", "noarena+trim" (malloc_trim after
    each run, as the workers do now)."""
    import gc

    from litestream.engine import PiperVoice, piper_model
    from litestream.segmenter import Segmenter
    from litestream.startup import CALIBRATION_WINDOW_FRAMES as window
    from litestream.workers import release_memory

    plain = piper_model.session_options

    def options(threads: int) -> Any:
        opts = plain(threads)
        opts.enable_cpu_mem_arena = variant == "arena"
        return opts

    # piper_model.create_session looks the name up at each call, so every session sees this.
    piper_model.session_options = options  # type: ignore[assignment]
    voice = PiperVoice.load(deterministic=True)
    trim = variant.endswith("+trim")
    seg = Segmenter()
    ordinary = seg.feed(PARAGRAPH + " " + LONG) + seg.flush()
    rng = random.Random(seed)

    def run(text: str) -> tuple[float, float]:
        """The serving path: the sentence's encode, then its decode windows."""
        ids = voice.phoneme_ids(text)
        t = time.perf_counter()
        latent = voice.encode(ids)
        samples = 0
        for start in range(0, latent.frames, window):
            samples += len(voice.decode(latent, start, min(window, latent.frames - start)))
        if trim:
            release_memory()
        return time.perf_counter() - t, samples / voice.sample_rate

    def rtf() -> float:
        spent = [run(chunk) for chunk in ordinary]
        return sum(c for c, _ in spent) / sum(a for _, a in spent)

    pid = os.getpid()
    rtf_before = rtf()
    start = rss_mb(pid)
    sizes: list[int] = []
    samples = []
    for i in range(runs):
        if i % 3 == 2:
            text = " ".join(rng.choice(WEIRD) for _ in range(rng.randint(3, 30)))[:300]
        else:
            text = (LONG * 2)[: rng.randint(10, 300)]
        sizes.append(len(voice.phoneme_ids(text)))
        run(text)
        if (i + 1) % max(1, runs // 6) == 0:
            gc.collect()
            samples.append(round(rss_mb(pid)))
    rtf_after = rtf()
    print(f"{variant:>13}: rss {start:.0f} MB after ordinary chunks -> "
          f"{', '.join(map(str, samples))} MB over {runs} hostile chunks (largest "
          f"{max(sizes)} phonemes); growth {samples[-1] - start:+.0f} MB; RTF on ordinary "
          f"chunks {rtf_before:.4f} before, {rtf_after:.4f} after", flush=True)


def memory(runs: int) -> None:
    for variant in MEMORY_VARIANTS:
        subprocess.run([sys.executable, "-m", "loadtest.faults", "--memory-variant", variant,
                        "--runs", str(runs)], cwd=ROOT, check=False)


# ---------------------------------------------------------------- CLI

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtest.faults", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=None, help="a running server (client-side scenarios only)")
    p.add_argument("--only", default="", help="comma list of scenarios: " + ", ".join(SCENARIOS))
    p.add_argument("--bystanders", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="the test suite's short version")
    p.add_argument("--soak", action="store_true")
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--warmup-minutes", type=float, default=5.0)
    p.add_argument("--streams", type=int, default=10,
                   help="soak: concurrent clients (default 10: ~80%% of the 13-stream capacity "
                        "of the 2-core box)")
    p.add_argument("--pid", type=int, default=None, help="soak against --url: the server's pid")
    p.add_argument("--memory", action="store_true",
                   help="RSS of one session over hostile chunks, per engine memory setting")
    p.add_argument("--memory-variant", choices=MEMORY_VARIANTS, default=None)
    p.add_argument("--runs", type=int, default=90, help="memory: hostile chunks")
    p.add_argument("--coldstart", action="store_true")
    p.add_argument("--servers", type=int, default=3, help="coldstart: fresh servers")
    p.add_argument("--warm-streams", type=int, default=3)
    p.add_argument("--burst", type=int, default=1, help="coldstart: streams opened at once")
    p.add_argument("--server-cwd", type=Path, default=ROOT,
                   help="coldstart/soak: checkout to run the server from (before/after)")
    p.add_argument("--server-args", default="", help="extra `litestream serve` arguments")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    extra = args.server_args.split()
    m = machine_info()
    print(f"machine {m['node']} | {m['cpu']} | nproc {m['nproc']} | load avg 1m "
          f"{m['loadavg_1m_at_start']}", flush=True)
    if args.memory_variant is not None:
        memory_variant(args.memory_variant, args.runs)
        return 0
    if args.memory:
        memory(args.runs)
        return 0
    if args.coldstart:
        coldstart(args.servers, args.warm_streams, args.server_cwd, extra, args.burst)
        return 0
    if args.soak:
        if args.url is not None:
            if args.pid is None:
                raise SystemExit("--soak --url needs --pid (the server's, for its RSS)")
            return 0 if asyncio.run(soak(args.url, args.pid, args.minutes, args.streams,
                                         args.warmup_minutes)) else 1
        with serve_process(["--workers", "2", *extra], cwd=args.server_cwd) as (proc, port, _):
            ok = asyncio.run(soak(f"ws://127.0.0.1:{port}/v1/stream", proc.pid, args.minutes,
                                  args.streams, args.warmup_minutes))
        return 0 if ok else 1
    sizes = QUICK if args.quick else Sizes(bystanders=args.bystanders)
    names = [n for n in args.only.split(",") if n] or list(
        CLIENT_SCENARIOS if args.url else SCENARIOS)
    if args.url is not None:
        bad = [n for n in names if n in ENGINE_SCENARIOS]
        if bad:
            raise SystemExit(f"{', '.join(bad)} need the in-process fault-injecting engine")

        async def remote() -> list[Outcome]:
            out = []
            for name in names:
                outcome = await run_scenario(name, args.url, sizes)
                print(outcome.report(), flush=True)
                out.append(outcome)
            return out

        outcomes = asyncio.run(remote())
    else:
        outcomes = asyncio.run(run_in_process(names, sizes,
                                              lambda s: print(s, flush=True)))
    return 0 if all(o.bystanders_ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

