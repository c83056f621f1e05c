"""The autoscaler shown at work (issue 19): the library behind `python -m loadtest.autoscale`.

A fleet starts with one replica (synthetic voice, `per_replica` streams each), the autoscaler
runs beside it as an operator runs it (`python -m deploy.fleet.autoscale`, its own process,
reading `litestream_load` from the fleet's Prometheus), and listeners arrive through HAProxy
following a profile of how many streams want to play at each moment: it rises past what one
replica holds, stays, then falls. A stream that is refused waits its Retry-After and tries
again, as a client should. Every 0.25 s the run samples the fleet: replicas started (the
state file the autoscaler writes), replicas in HAProxy and their states. Then it reports the
replica count over time, every refusal and whether a replica was warming up (started, not
yet in HAProxy) when it came, and the stalls of every admitted stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deploy.fleet.fleet import ROOT, Fleet, running_fleet
from loadtest.lib.fleet_scenarios import finished, free_port_block, outcomes, stalls
from loadtest.lib.recorder import StreamRecorder, StreamResult
from loadtest.lib.streams import run_stream

# (seconds, streams wanted): 3 streams, up to 20 by 40 s, held to 75 s, down to 2 by 95 s.
PROFILE: tuple[tuple[float, float], ...] = ((0, 3), (10, 3), (40, 20), (75, 20), (95, 2),
                                            (150, 2))


@dataclass
class Sample:
    at_s: float
    started: tuple[str, ...]  # replicas in the fleet's state (running or warming)
    admin: dict[str, int]  # the replicas in HAProxy, and its admin state (0: in rotation)

    @property
    def in_rotation(self) -> int:
        """Replicas taking streams or full (in HAProxy, neither drained nor in maintenance)."""
        return sum(1 for a in self.admin.values() if a == 0)

    @property
    def warming(self) -> tuple[str, ...]:
        return tuple(n for n in self.started if n not in self.admin)


@dataclass
class Refusal:
    at_s: float
    status: int | None
    warming: tuple[str, ...]  # replicas warming up at that moment


@dataclass
class RunResult:
    samples: list[Sample] = field(default_factory=list)
    streams: list[StreamResult] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    autoscaler: list[str] = field(default_factory=list)

    def changes(self) -> list[tuple[float, int]]:
        """(time, replicas in rotation) at every change of that count."""
        out: list[tuple[float, int]] = []
        for s in self.samples:
            if not out or out[-1][1] != s.in_rotation:
                out.append((s.at_s, s.in_rotation))
        return out

    def report(self) -> list[str]:
        admitted = [r for r in self.streams if not r.refused and r.connect_error is None]
        lines = ["replicas in rotation: " + ", ".join(f"{n} at {t:.0f} s"
                                                       for t, n in self.changes())]
        during = [r for r in self.refusals if r.warming]
        lines.append(f"streams: {len(admitted)} admitted, {outcomes(admitted)}; "
                     f"{stalls(admitted)}")
        lines.append(f"refusals: {len(self.refusals)} (each retried after Retry-After), "
                     f"{len(during)} while a replica was warming up: "
                     + ", ".join(f"{r.at_s:.1f} s ({'+'.join(r.warming) or 'none warming'})"
                                 for r in self.refusals))
        return lines

    def checks(self) -> list[tuple[str, bool]]:
        admitted = [r for r in self.streams if not r.refused and r.connect_error is None]
        counts = [n for _, n in self.changes()]
        peak = max(counts, default=0)
        after_peak = counts[counts.index(peak):] if counts else []
        return [
            ("1 -> 3 replicas as load rises", counts[:1] == [1] and peak == 3),
            ("3 -> 1 as it falls", bool(after_peak) and after_peak[-1] == 1),
            ("every admitted stream spoken to its end", all(finished(r) for r in admitted)),
            ("0 stalls in streams already playing",
             all(r.stall_count == 0 for r in admitted)),
            ("refusals only while a new replica warms", all(r.warming for r in self.refusals)),
        ]


def wanted(profile: Sequence[tuple[float, float]], t: float) -> int:
    """Streams the profile wants playing at `t` (linear between its points)."""
    for (t0, n0), (t1, n1) in itertools.pairwise(profile):
        if t0 <= t <= t1:
            return round(n0 + (n1 - n0) * (t - t0) / (t1 - t0)) if t1 > t0 else round(n1)
    return round(profile[-1][1]) if t > profile[-1][0] else round(profile[0][1])


async def run(state_dir: Path, *, per_replica: int = 8, max_replicas: int = 3,
              target: float = 0.7, down_window_s: float = 15.0, token_rate: float = 6.0,
              profile: Sequence[tuple[float, float]] = PROFILE, base_port: int = 0,
              say: Callable[[str], None] = print) -> RunResult:
    result = RunResult()
    serve = ["--voice", "synthetic", "--workers", "1", "--max-streams", str(per_replica),
             "--drain-grace-s", "60", "--no-kokoro"]
    with running_fleet(1, base_port=base_port or free_port_block(20), state_dir=state_dir,
                       replica_args=serve, say=say) as fleet:
        scaler = subprocess.Popen(
            [sys.executable, "-m", "deploy.fleet.autoscale", "--state-dir", str(state_dir),
             "--target", str(target), "--max", str(max_replicas),
             "--down-window-s", str(down_window_s)],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        reader = asyncio.create_task(asyncio.to_thread(_read_lines, scaler, result, say))
        try:
            await _drive(fleet, state_dir, result, profile, token_rate)
        finally:
            scaler.send_signal(signal.SIGTERM)
            await asyncio.to_thread(scaler.wait, 120)
            await reader
    return result


async def _drive(fleet: Fleet, state_dir: Path, result: RunResult,
                 profile: Sequence[tuple[float, float]], token_rate: float) -> None:
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    end = profile[-1][0]
    active: set[asyncio.Task[None]] = set()
    index = 0

    async def listener(i: int) -> None:
        while True:
            recorder = StreamRecorder(i, loop.time() - t0)
            r = await run_stream(fleet.url, "tokens", recorder, token_rate=token_rate,
                                 timeout_s=90)
            if not r.refused:
                result.streams.append(r)
                return
            at = loop.time() - t0
            result.refusals.append(Refusal(at, r.refused_status, _warming_at(result, at)))
            await asyncio.sleep(float(r.retry_after or 1))

    while loop.time() - t0 < end:
        now = loop.time() - t0
        result.samples.append(await asyncio.to_thread(_sample, fleet, state_dir, now))
        active = {t for t in active if not t.done()}
        for _ in range(wanted(profile, now) - len(active)):
            task = asyncio.create_task(listener(index))
            index += 1
            active.add(task)
        await asyncio.sleep(0.25)
    # Let the streams still playing end, and the drains in flight finish.
    while active or _draining(result):
        active = {t for t in active if not t.done()}
        now = loop.time() - t0
        result.samples.append(await asyncio.to_thread(_sample, fleet, state_dir, now))
        await asyncio.sleep(0.25)
        if now > end + 120:
            break


def _sample(fleet: Fleet, state_dir: Path, at_s: float) -> Sample:
    started: tuple[str, ...] = ()
    with contextlib.suppress(Exception):  # the autoscaler may be rewriting it
        started = tuple(Fleet.load(state_dir).state.replicas)
    return Sample(at_s, started, fleet.admin_states())


def _warming_at(result: RunResult, at_s: float) -> tuple[str, ...]:
    """The replicas warming up in the samples within 0.5 s of `at_s`."""
    near = [s for s in result.samples if abs(s.at_s - at_s) <= 0.5]
    return tuple(sorted({n for s in near for n in s.warming}))


def _draining(result: RunResult) -> bool:
    last = result.samples[-1] if result.samples else None
    return last is not None and any(a != 0 for a in last.admin.values())


def _read_lines(proc: subprocess.Popen[str], result: RunResult,
                say: Callable[[str], None]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        result.autoscaler.append(line)
        say(f"autoscale| {line}")
