"""python -m deploy.fleet up|down|status|scale: a local litestream fleet (make fleet, fleet-stop).

  up --replicas N [--voice synthetic] [--base-port P] [-- extra litestream serve flags]
      Redis, HAProxy (public port P), Prometheus (P+2), then N replicas (P+11, P+12, ...).
  down      drain every replica (no stream is cut), then stop the rest
  status    the parts, and HAProxy's view of each replica
  scale N   add replicas, or drain the newest ones, until there are N
  restart PART   start haproxy, redis or prometheus again after it died
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deploy.fleet.fleet import DEFAULT_BASE_PORT, DEFAULT_STATE_DIR, PARTS, Fleet, FleetError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.fleet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up")
    up.add_argument("--replicas", type=int, default=3)
    up.add_argument("--voice", default="",
                    help="'synthetic' for the GPU-shaped stand-in (benchmarks only); "
                         "default: the bundled voice")
    up.add_argument("--workers", type=int, default=1, help="inference threads per replica")
    up.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT)
    up.add_argument("serve_args", nargs="*", help="more `litestream serve` flags (after --)")
    sub.add_parser("down")
    sub.add_parser("status")
    scale = sub.add_parser("scale")
    scale.add_argument("replicas", type=int)
    restart = sub.add_parser("restart")
    restart.add_argument("part", choices=PARTS)
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            if args.replicas < 1:
                parser.error("--replicas must be at least 1")
            serve = ["--workers", str(args.workers), *args.serve_args]
            if args.voice:
                serve = ["--voice", args.voice, *serve]
            fleet = Fleet.up(args.replicas, base_port=args.base_port, state_dir=args.state_dir,
                             replica_args=serve)
            print(fleet.describe())
            print("stop it with: make fleet-stop")
        elif args.command == "down":
            Fleet.load(args.state_dir).down()
        elif args.command == "status":
            print(Fleet.load(args.state_dir).describe())
        elif args.command == "restart":
            fleet = Fleet.load(args.state_dir)
            fleet.restart(args.part)
            print(fleet.describe())
        else:
            fleet = Fleet.load(args.state_dir)
            for name in fleet.reap():
                print(f"{name}: its process is gone; removed from the fleet")
            have = sorted(fleet.state.replicas.values(), key=lambda r: r.index)
            if args.replicas > len(have):
                fleet.add_replicas(args.replicas - len(have))
            for replica in reversed(have[max(args.replicas, 1):]):
                fleet.drain(replica.name)
            print(fleet.describe())
    except FleetError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
