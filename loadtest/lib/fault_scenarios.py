"""Fault injection, soak and cold start for litestream (issue 10): the library behind `python -m
loadtest.faults` (its command line is loadtest/faults.py).

Engine faults need the engine: in-process, the server runs the real bundled voice wrapped in
`FaultyVoice`, which injects a fault into any chunk whose text holds a marker word
(`Faultraise`, `Faulthang`, `Faultslow`, `Faultwedge`, `Faultdie`). Against a running server
(`--url`) only the client-side scenarios run (a client that stops reading, a disconnect storm,
malformed messages). Every scenario prints what it injected, what the faulted stream got, and
its bystanders' stalls and first audio; bystanders must not stall.

Timing figures are printed, never asserted (docs/style.md: tests). The clients run on the
same machine as the server: on a 2-core box their CPU use is part of the figures."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from loadtest.lib.recorder import StreamResult, fmt_ms, percentile
from loadtest.lib.scripted_client import SPEAKABLE_FUZZ, fuzz_frames, speak, text_msgs
from loadtest.lib.texts import LONG, PARAGRAPH
from tests.fakes import MARKERS, Fault, FaultPlan, faulty_server

T = TypeVar("T")


# ---------------------------------------------------------------- outcomes, bystanders

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
        unconnected = [r.connect_error for r in self.bystanders if r.connect_error is not None]
        lines = [
            f"== {self.name}: {'PASS' if self.bystanders_ok else 'FAIL'}",
            f"   injected    {self.injected}",
        ]
        for r in self.faulted[:3]:
            if r.connect_error is not None:  # it never spoke to a server: no close to report
                lines.append(f"   faulted #{r.index}  not connected: {r.connect_error}")
                continue
            refused = f"refused {r.refused_status}, " if r.refused else ""
            lines.append(f"   faulted #{r.index}  {refused}errors {r.errors or 'none'}, "
                         f"done {r.done}, "
                         f"close {r.close_code or 'normal'}, chunks {r.chunks}, "
                         f"audio {r.audio_s:.1f} s")
        if len(self.faulted) > 3:
            lines.append(f"   ... and {len(self.faulted) - 3} more faulted streams")
        lines.append(
            f"   bystanders  {len(self.bystanders)}: done {done}, stalls {stalls} "
            f"({stall_ms:.0f} ms), first audio p50 {fmt_ms(percentile(ttfa, 50))} ms, "
            f"max {fmt_ms(max(ttfa) if ttfa else None)} ms, errors "
            f"{[e for r in self.bystanders for e in r.errors] or 'none'}"
            + (f"; not connected {len(unconnected)} ({unconnected[0]})" if unconnected else ""))
        lines.extend(f"   {note}" for note in self.notes)
        return "\n".join(lines)


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


# ---------------------------------------------------------------- in-process run

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


# ---------------------------------------------------------------- CLI
