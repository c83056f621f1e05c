"""The local autoscaler shown at work: 1 -> 3 replicas as load rises, 3 -> 1 as it falls.

    python -m loadtest.autoscale [--per-replica 8] [--down-window-s 15] [--base-port P]

Starts a fleet of one synthetic-voice replica (deploy/fleet) and the autoscaler beside it
(`python -m deploy.fleet.autoscale`), offers streams through HAProxy along a profile (3, rising
to 20, held, falling to 2), and prints the autoscaler's decisions, the replica count over time,
every refusal and whether a replica was warming up when it came, and the stalls. Exits 1 if a
check failed. What it does is in loadtest/lib/autoscale_run.py.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from loadtest.lib.autoscale_run import PROFILE, run
from loadtest.lib.streams import machine_info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-replica", type=int, default=8, help="streams per replica")
    parser.add_argument("--target", type=float, default=0.7)
    parser.add_argument("--down-window-s", type=float, default=15.0,
                        help="the autoscaler's scale-down window (short for the demonstration)")
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--base-port", type=int, default=0,
                        help="the fleet's public port (P..P+3, replicas P+11..); 0: a free block")
    args = parser.parse_args()
    info = machine_info()
    print(f"machine: {info['cpu']}, {info['nproc']} cores, load {info['loadavg_1m_at_start']}")
    print(f"profile (s, streams wanted): {PROFILE}; {args.per_replica} streams per replica, "
          f"synthetic voice; target litestream_load {args.target}")
    with tempfile.TemporaryDirectory(prefix="litestream-autoscale-") as tmp:
        result = asyncio.run(run(args.state_dir or Path(tmp), per_replica=args.per_replica,
                                 target=args.target, down_window_s=args.down_window_s,
                                 base_port=args.base_port))
    for line in result.report():
        print(line)
    ok = True
    for name, held in result.checks():
        ok = ok and held
        print(f"{'PASS' if held else 'FAIL'}  {name}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
