"""The fleet test: replicas behind HAProxy, with Redis and Prometheus (issue 19).

    python -m loadtest.fleet                      # every scenario, 3 replicas, 40 streams
    python -m loadtest.fleet --only balance,kill  # some of them

Scenarios: balance (40 streams offered to 3 replicas of 12), drain (SIGTERM mid-stream),
kill (SIGKILL mid-stream), cache (a sentence cached on one replica is a hit on another), redis
(Redis stopped mid-run). Prints each check and the figures; exits 1 if a check failed.
Needs haproxy, redis-server and prometheus (deploy/fleet/install-deps.sh; `make fleet-test`
installs them). What it does and why is in loadtest/lib/fleet_scenarios.py.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from loadtest.lib.fleet_scenarios import SCENARIOS, Settings, run
from loadtest.lib.streams import machine_info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"comma list of {', '.join(SCENARIOS)}")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--per-replica", type=int, default=12, help="streams per replica")
    parser.add_argument("--offered", type=int, default=40, help="streams offered in balance")
    parser.add_argument("--token-rate", type=float, default=6.0, help="words/s per stream")
    parser.add_argument("--base-port", type=int, default=0, help="0: a free block of ports")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="keep the fleet's logs here (default: a temporary directory)")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)}")
    settings = Settings(replicas=args.replicas, per_replica=args.per_replica,
                        offered=args.offered, token_rate=args.token_rate,
                        base_port=args.base_port)
    info = machine_info()
    print(f"machine: {info['cpu']}, {info['nproc']} cores, load {info['loadavg_1m_at_start']}")
    print(f"fleet: {settings.replicas} replicas of {settings.per_replica} streams, "
          f"synthetic voice, {settings.workers} worker each; streams word by word at "
          f"{settings.token_rate:g} words/s")
    with tempfile.TemporaryDirectory(prefix="litestream-fleet-") as tmp:
        state_dir = args.state_dir or Path(tmp)
        report = asyncio.run(run(names, settings, state_dir))
    for check in report.checks:
        print(f"{'PASS' if check.ok else 'FAIL'}  {check.name}\n      {check.detail}")
    for figure in report.figures:
        print(f"figure: {figure}")
    print("all checks held" if report.ok else "SOME CHECKS FAILED")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
