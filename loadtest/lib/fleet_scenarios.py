"""The fleet test: replicas behind HAProxy, with Redis and Prometheus (issue 19), the library
behind `python -m loadtest.fleet` and tests/e2e/loadtest/test_fleet.py.

A real fleet (deploy/fleet: HAProxy, Redis, Prometheus, `litestream serve` replicas as
processes) takes streams offered through HAProxy's one public port; each scenario below does
something to the fleet while streams play and returns `Check`s (a name, whether it held, what
was seen) and figures. The listeners are loadtest/lib/streams.py's: protocol v1, every audio
frame timed against a simulated real-time playback clock, so a stall is a listener's buffer
running dry. Each stream is fed word by word (`tokens` mode, as an LLM would), so it lasts
seconds: long enough to be mid-stream when a replica is drained or killed.

Capacity: each replica takes at most `per_replica` streams (`--max-streams`, one of the limits
litestream's admission applies, so /readyz, refusals and litestream_load follow it), so a test
can overfill the fleet exactly. The replicas speak the synthetic voice (`--voice synthetic`,
a GPU-shaped stand-in that sleeps its costs): three real-voice replicas would need six cores.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import math
import os
import random
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deploy.fleet.fleet import (
    BACKEND,
    Fleet,
    haproxy_command,
    http_text,
    parse_stat,
    running_fleet,
    wait_exit,
    wait_until,
)
from loadtest.lib.recorder import StreamRecorder, StreamResult
from loadtest.lib.scripted_client import speak, text_msgs
from loadtest.lib.streams import run_stream
from loadtest.lib.swarm import paragraph_for
from loadtest.lib.texts import words

MODE = "tokens"  # the paragraph, word by word (78 words)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    timing: bool = False  # a figure of time (stalls, seconds): the command asserts it, tests
    # print it (docs/style.md: tests assert behaviour, not wall time)


@dataclass
class Settings:
    replicas: int = 3
    per_replica: int = 12  # --max-streams of each replica
    offered: int = 40  # streams offered at once in the balance scenario
    token_rate: float = 6.0  # words/s: a stream lasts about 13 s
    drain_grace_s: float = 60.0  # longer than a stream: a drain lets every stream finish
    workers: int = 1
    base_port: int = 0  # 0: a free block of ports
    timeout_s: float = 90.0

    def serve_args(self) -> list[str]:
        return ["--voice", "synthetic", "--workers", str(self.workers),
                "--max-streams", str(self.per_replica),
                "--drain-grace-s", str(self.drain_grace_s), "--no-kokoro", "--log-level", "INFO"]


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str, *, timing: bool = False) -> None:
        self.checks.append(Check(name, ok, detail, timing))

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


# ---------------------------------------------------------------- streams

def start_streams(url: str, n: int, settings: Settings, first: int = 0,
                  ) -> list[asyncio.Task[StreamResult]]:
    """n listeners at once, each its own task (so the caller acts while they play)."""
    return [asyncio.create_task(run_stream(url, MODE, StreamRecorder(first + i),
                                           token_rate=settings.token_rate,
                                           timeout_s=settings.timeout_s))
            for i in range(n)]


def start_varied(url: str, n: int, settings: Settings, seed: int, first: int = 0,
                 ) -> list[asyncio.Task[StreamResult]]:
    """As `start_streams`, each stream with its own text (five sentences of the benchmark
    texts in its own order), word by word."""
    def messages(i: int) -> list[str]:
        tokens = words(paragraph_for(i, seed))
        return [json.dumps({"type": "text", "text": t}) for t in tokens] + [
            json.dumps({"type": "end"})]
    return [asyncio.create_task(speak(url, first + i, messages(first + i),
                                      timeout_s=settings.timeout_s,
                                      pace_s=1.0 / settings.token_rate))
            for i in range(n)]


def admitted(results: Sequence[StreamResult]) -> list[StreamResult]:
    return [r for r in results if not r.refused and r.connect_error is None]


def finished(r: StreamResult) -> bool:
    """Spoken to its end: `done` arrived, then a normal close; no error, no time-out."""
    return r.done and r.close_code is None and not r.errors and not r.timed_out


def no_stall(results: Sequence[StreamResult]) -> bool:
    return all(r.stall_count == 0 for r in results)


def by_replica(results: Sequence[StreamResult]) -> dict[str, int]:
    return dict(sorted(collections.Counter(r.replica or "?" for r in results).items()))


def outcomes(results: Sequence[StreamResult]) -> str:
    """How the streams ended, counted by replica: finished, refused 503, close=1006, ..."""
    def ending(r: StreamResult) -> str:
        if r.refused:
            return f"refused {r.refused_status}"
        if r.connect_error:
            return "connect error"
        if finished(r):
            return "finished"
        return (f"done={r.done} close={r.close_code} errors={','.join(r.errors) or '-'} "
                f"timed_out={r.timed_out}")
    counts = collections.Counter(f"{r.replica or '-'}: {ending(r)}" for r in results)
    return "; ".join(f"{n} x {what}" for what, n in sorted(counts.items()))


def stalls(results: Sequence[StreamResult]) -> str:
    return (f"{sum(r.stall_count for r in results)} stalls "
            f"({sum(r.stall_ms for r in results):.0f} ms) in {len(results)} streams")


async def wait_streaming(fleet: Fleet, names: Sequence[str], at_least: int,
                         timeout_s: float = 15.0) -> None:
    """Until HAProxy holds `at_least` open streams on each named replica."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sessions = await asyncio.to_thread(fleet.server_sessions)
        if all(sessions.get(name, 0) >= at_least for name in names):
            return
        await asyncio.sleep(0.1)


# ---------------------------------------------------------------- scenarios

async def balance(fleet: Fleet, settings: Settings, report: Report) -> None:
    """`offered` streams at once through HAProxy, more than the fleet holds."""
    capacity = settings.per_replica * len(fleet.state.replicas)
    results = await asyncio.gather(*start_streams(fleet.url, settings.offered, settings))
    ok = admitted(results)
    refused = [r for r in results if r.refused]
    per = by_replica(ok)
    expect = min(settings.offered, capacity)
    report.check("balance: the fleet admits exactly its capacity, no replica beyond its own",
                 len(ok) == expect and all(n <= settings.per_replica for n in per.values()),
                 f"{len(ok)} admitted of {settings.offered} offered, capacity {capacity} "
                 f"({settings.per_replica} per replica); per replica {per}")
    report.check("balance: refusals only when the whole fleet is full: 503 + Retry-After",
                 len(refused) == settings.offered - expect
                 and all(r.refused_status == 503 and r.retry_after for r in refused)
                 and not any(r.connect_error for r in results),
                 f"{len(refused)} refused, statuses {sorted({r.refused_status for r in refused})},"
                 f" Retry-After {sorted({r.retry_after for r in refused if r.retry_after})}")
    report.check("balance: every admitted stream is spoken to its end",
                 all(finished(r) for r in ok), outcomes(ok))
    report.check("balance: admitted streams have 0 stalls", no_stall(ok), stalls(ok),
                 timing=True)


async def drain(fleet: Fleet, settings: Settings, report: Report) -> None:
    """SIGTERM one replica while its streams play: they finish whole; new streams go elsewhere."""
    names = sorted(fleet.state.replicas)
    per = settings.per_replica // 2
    tasks = start_streams(fleet.url, per * len(names), settings)
    await wait_streaming(fleet, names, per)
    victim = names[0]
    pid = fleet.state.replicas[victim].pid
    t0 = time.monotonic()
    await asyncio.to_thread(_signal, pid, "TERM")
    await asyncio.sleep(1.5)  # HAProxy's checks see /readyz 503 within ~1 s
    later = await asyncio.gather(*start_streams(fleet.url, per, settings, first=1000))
    results = await asyncio.gather(*tasks)
    exited = await asyncio.to_thread(_wait_gone, pid, settings.drain_grace_s + 15)
    drained_s = time.monotonic() - t0
    theirs = [r for r in results if r.replica == victim]
    others = [r for r in results if r.replica != victim]
    report.check("drain: the drained replica's streams finish whole, then it exits",
                 bool(theirs) and all(finished(r) for r in theirs) and exited,
                 f"{len(theirs)} streams on {victim}: {outcomes(theirs)}; the process exited "
                 f"{drained_s:.1f} s after SIGTERM")
    report.check("drain: no new stream goes to the draining replica",
                 all(r.replica != victim for r in later) and all(finished(r) for r in later),
                 f"{len(later)} new streams after SIGTERM: {outcomes(later)}")
    report.check("drain: the other replicas' streams are spoken to their end",
                 all(finished(r) for r in others), outcomes(others))
    report.check("drain: 0 stalls, on the drained replica and the others",
                 no_stall(results) and no_stall(later), stalls(list(results) + list(later)),
                 timing=True)
    report.figures.append(f"drain: {len(theirs)} streams finished on {victim}, which exited "
                          f"{drained_s:.1f} s after SIGTERM")
    await asyncio.to_thread(fleet.forget, victim)


async def kill(fleet: Fleet, settings: Settings, report: Report) -> None:
    """SIGKILL one replica while streams play: only its streams end; HAProxy notices in < 2 s."""
    names = sorted(fleet.state.replicas)
    per = settings.per_replica // 2
    tasks = start_streams(fleet.url, per * len(names), settings)
    await wait_streaming(fleet, names, per)
    victim = names[-1]
    t0 = time.monotonic()
    await asyncio.to_thread(_signal, fleet.state.replicas[victim].pid, "KILL")
    later_tasks = start_streams(fleet.url, per, settings, first=1000)  # at once, before DOWN
    down_s = await asyncio.to_thread(_until_down, fleet, victim, t0, 10.0)
    results = await asyncio.gather(*tasks)
    later = await asyncio.gather(*later_tasks)
    theirs = [r for r in results if r.replica == victim]
    others = [r for r in results if r.replica != victim]
    report.check("kill: only the killed replica's streams end early",
                 bool(theirs) and not any(r.done for r in theirs)
                 and all(finished(r) for r in others),
                 f"{len(theirs)} streams on {victim}: {outcomes(theirs)}; "
                 f"the others: {outcomes(others)}")
    report.check("kill: streams opened right after the kill are served by the others",
                 all(finished(r) and r.replica != victim for r in later),
                 f"{len(later)} streams: {outcomes(later)}")
    report.check("kill: HAProxy takes the dead replica out of rotation", down_s is not None,
                 f"marked DOWN {down_s:.2f} s after SIGKILL" if down_s is not None
                 else "never marked DOWN")
    report.check("kill: ... within 2 s", down_s is not None and down_s <= 2.0,
                 f"{down_s:.2f} s" if down_s is not None else "never", timing=True)
    report.check("kill: the other replicas' streams have 0 stalls",
                 no_stall(others) and no_stall(later), stalls(list(others) + list(later)),
                 timing=True)
    if down_s is not None:
        report.figures.append(f"kill: HAProxy marked {victim} DOWN {down_s:.2f} s after SIGKILL")
    await asyncio.to_thread(fleet.forget, victim)


async def shared_cache(fleet: Fleet, settings: Settings, report: Report) -> None:
    """A sentence synthesized on one replica is a hit on another (Redis behind each)."""
    a, b = sorted(fleet.state.replicas)[:2]
    sentence = f"The shared cache test number {uuid.uuid4().int % 10**8} is spoken once."
    hits_before = metric(fleet, b, "litestream_shared_cache_hits_total")
    writes_before = metric(fleet, a, "litestream_shared_cache_writes_total")
    first = await _say_on(fleet, a, sentence, settings)
    # The fill is written behind the stream, once its sentence is whole.
    await asyncio.to_thread(wait_until, f"{a} writes the sentence to Redis", lambda: metric(
        fleet, a, "litestream_shared_cache_writes_total") > writes_before, 10.0)
    second = await _say_on(fleet, b, sentence, settings)
    hits_after = metric(fleet, b, "litestream_shared_cache_hits_total")
    report.check("cache: a sentence synthesized on one replica is a hit on another",
                 finished(first) and finished(second) and hits_after > hits_before,
                 f"{a} spoke it, then {b}: {b}'s shared-cache hits "
                 f"{hits_before:.0f} -> {hits_after:.0f}")


async def redis_down(fleet: Fleet, settings: Settings, report: Report) -> None:
    """Redis stops while streams play: every stream goes on and finishes whole. Each stream
    speaks its own text, so its sentences are looked up in Redis, not found in the replica's
    own cache."""
    names = sorted(fleet.state.replicas)
    per = settings.per_replica // 2
    seed = uuid.uuid4().int % 10**6
    tasks = start_varied(fleet.url, per * len(names), settings, seed)
    await wait_streaming(fleet, names, per)
    used = sum(metric(fleet, n, f"litestream_shared_cache_{what}_total") for n in names
               for what in ("hits", "misses", "writes"))
    await asyncio.to_thread(fleet.stop_redis)
    later = await asyncio.gather(*start_varied(fleet.url, per, settings, seed, first=1000))
    results = list(await asyncio.gather(*tasks)) + list(later)
    up = [metric(fleet, n, "litestream_shared_cache_up") for n in names]
    errors = sum(metric(fleet, n, "litestream_shared_cache_errors_total") for n in names)
    report.check("redis: with Redis stopped mid-run, streams go on to their end",
                 all(finished(r) for r in results) and used > 0,
                 f"{outcomes(results)} ({len(later)} opened after Redis stopped); Redis reads and "
                 f"writes before it stopped: {used:.0f}; after: shared_cache_up {up}, "
                 f"{errors:.0f} errors counted")
    report.check("redis: 0 stalls", no_stall(results), stalls(results), timing=True)
    await asyncio.to_thread(fleet.start_redis)


SCENARIOS: dict[str, Callable[[Fleet, Settings, Report], Awaitable[None]]] = {
    "balance": balance, "drain": drain, "kill": kill, "cache": shared_cache,
    "redis": redis_down,
}


async def run(names: Sequence[str], settings: Settings, state_dir: Path,
              say: Callable[[str], None] = print) -> Report:
    """Start a fleet, run the named scenarios in order (a replica drained or killed is replaced
    before the next one), stop the fleet."""
    report = Report()
    base = settings.base_port or free_port_block(20)
    t0 = time.monotonic()
    with running_fleet(settings.replicas, base_port=base, state_dir=state_dir,
                       replica_args=settings.serve_args(), say=say) as fleet:
        report.figures.append(f"fleet up: {settings.replicas} replicas ready behind HAProxy in "
                              f"{time.monotonic() - t0:.1f} s")
        for name in names:
            missing = settings.replicas - len(fleet.state.replicas)
            if missing > 0:
                await asyncio.to_thread(fleet.add_replicas, missing)
            # A replica that was full a moment ago is back in rotation after 2 good checks.
            await asyncio.to_thread(wait_until, "every replica UP in HAProxy",
                                    lambda: set(fleet.server_states().values()) == {"UP"}, 10.0)
            say(f"-- {name}")
            await SCENARIOS[name](fleet, settings, report)
        report.figures.append(await asyncio.to_thread(haproxy_counts, fleet))
    return report


# ---------------------------------------------------------------- helpers

def haproxy_counts(fleet: Fleet) -> str:
    """HAProxy's own counts over the run: handshakes retried and redispatched to another
    replica, and 503s (a replica's, passed on, or HAProxy's own when none had room)."""
    rows = parse_stat(haproxy_command(fleet.socket_path, "show stat"))
    backend = next(r for r in rows if r["pxname"] == BACKEND and r["svname"] == "BACKEND")
    return (f"haproxy: {backend['stot']} sessions, {backend['wretr']} retries, "
            f"{backend['wredis']} redispatches, {backend['hrsp_5xx']} 5xx answers")


# Below the kernel's ephemeral range when it cannot be read (Linux's default starts at 32768).
_LISTEN_PORTS = (10000, 32768)


def free_port_block(n: int) -> int:
    """A base port with the n ports from it free on loopback, below the kernel's ephemeral
    range: a port picked inside it (a bind to port 0 picks there) can be taken by any outgoing
    connection's local end before the replica binds it (CI: "replica r5: address already in
    use", HAProxy's checks and the streams' clients connecting meanwhile)."""
    low, high = _LISTEN_PORTS[0], _ephemeral_low()
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(low, high - n)
        if all(_free(base + i) for i in range(n)):
            return base
    raise RuntimeError("no free block of ports")


def _ephemeral_low() -> int:
    """Where the kernel's ephemeral ports start (Linux), or _LISTEN_PORTS' end."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return _LISTEN_PORTS[1]
    return low if low > _LISTEN_PORTS[0] + 1000 else _LISTEN_PORTS[1]


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _signal(pid: int, name: str) -> None:
    os.kill(pid, getattr(signal, f"SIG{name}"))


def _wait_gone(pid: int, timeout_s: float) -> bool:
    return wait_exit(pid, timeout_s)


def _until_down(fleet: Fleet, name: str, t0: float, timeout_s: float) -> float | None:
    while time.monotonic() - t0 < timeout_s:
        if fleet.server_states().get(name) == "DOWN":
            return time.monotonic() - t0
        time.sleep(0.02)
    return None


def metric(fleet: Fleet, replica: str, name: str) -> float:
    """The sum of a metric's samples on one replica's /metrics (0 when it has none)."""
    total = 0.0
    with contextlib.suppress(OSError):
        for line in http_text(fleet.replica_url(replica, "/metrics")).splitlines():
            if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
                value = float(line.rsplit(" ", 1)[1])
                total += value if math.isfinite(value) else 0.0
    return total


async def _say_on(fleet: Fleet, replica: str, text: str, settings: Settings) -> StreamResult:
    """One stream straight to a replica (not through HAProxy), speaking `text` at once."""
    url = f"ws://127.0.0.1:{fleet.state.replicas[replica].port}/v1/stream"
    return await speak(url, 0, text_msgs(text), timeout_s=settings.timeout_s)
