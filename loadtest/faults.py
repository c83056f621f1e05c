"""Fault injection, soak and cold start for litestream (issue 10).

    python -m loadtest.faults                          # every scenario, in-process server
    python -m loadtest.faults --only hung_run,worker_dies
    python -m loadtest.faults --url ws://127.0.0.1:8765/v1/stream   # client-side scenarios
    python -m loadtest.faults --soak --minutes 30      # mixed traffic at ~80% of capacity
    python -m loadtest.faults --coldstart              # first stream vs warm first audio

The command line only; what it measures and how is in loadtest/lib/fault_scenarios.py (the
fault scenarios) and loadtest/lib/endurance.py (soak, cold start, memory).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from loadtest.lib.endurance import (
    MEMORY_VARIANTS,
    ROOT,
    coldstart,
    memory,
    memory_variant,
    serve_process,
    soak,
)
from loadtest.lib.fault_scenarios import (
    CLIENT_SCENARIOS,
    ENGINE_SCENARIOS,
    QUICK,
    SCENARIOS,
    Outcome,
    Sizes,
    run_in_process,
    run_scenario,
)
from loadtest.lib.streams import machine_info


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
