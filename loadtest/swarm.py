"""Many listeners from several processes: the load generator for 1,000+ streams.

    python -m loadtest.swarm --streams 1000 --over-s 10 --processes 4
    python -m loadtest.swarm --serve "--voice synthetic" --streams 1000 --over-s 10
    python -m loadtest.swarm --transport http --streams 200
    python -m loadtest.swarm --serve "--voice synthetic --workers 8" --replicas 2 --streams 1000

The command line only; what it measures and how is in loadtest/lib/swarm.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict

from loadtest.lib.swarm import (
    DEFAULT_URL,
    TRANSPORTS,
    SwarmConfig,
    SwarmReport,
    format_report,
    pid_listening,
    run_swarm,
    search_capacity,
    serve_replicas,
)


def port_of(url: str) -> int:
    return int(url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtest.swarm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", action="append", default=None,
                   help=f"the server's ws:// stream URL (default {DEFAULT_URL}); given more "
                        "than once, replicas of one service, dealt streams round-robin")
    p.add_argument("--serve", default=None, metavar="ARGS",
                   help='start `litestream serve ARGS` for the run, e.g. "--voice synthetic"')
    p.add_argument("--replicas", type=int, default=1,
                   help="with --serve: start this many servers, each on its own port, and "
                        "deal streams to them round-robin (several processes sharing one "
                        "machine, or one GPU)")
    p.add_argument("--no-wide-limits", action="store_true",
                   help="with --serve: keep the per-address stream and rate limits")
    p.add_argument("--server-log", default=None, help="with --serve: write its log here")
    p.add_argument("--server-pid", type=int, action="append", default=None,
                   help="a server's pid for /proc figures, summed over every one given "
                        "(default: found by each --url's port); behind a balancer, give each "
                        "replica's (the batch sizes then come from the replica that answers "
                        "the balancer's /metrics)")
    p.add_argument("--streams", type=int, default=100)
    p.add_argument("--over-s", type=float, default=0.0, help="arrivals spread over (0: burst)")
    p.add_argument("--processes", type=int, default=0, help="0: one per 100 streams, <= cores")
    p.add_argument("--transport", choices=TRANSPORTS, default="ws")
    p.add_argument("--text", choices=["varied", "paragraph", "long", "sentence"],
                   default="varied")
    p.add_argument("--voice", default="")
    p.add_argument("--pace", default="", help="listener | download (protocol-v1 Pace)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--first-audio-only", action="store_true",
                   help="close each stream at its first audio (first-audio runs)")
    p.add_argument("--repeat", type=int, default=1, help="run this many times in a row")
    p.add_argument("--capacity", action="store_true",
                   help="search the largest --streams that passes, doubling from --streams")
    p.add_argument("--max-streams", type=int, default=20000)
    p.add_argument("--max-time-s", type=float, default=900.0, help="bound on a search")
    p.add_argument("--timeout-s", type=float, default=600.0, help="bound on each stream")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the reports here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.replicas > 1 and args.serve is None:
        parser.error("--replicas starts servers: it needs --serve")
    with contextlib.ExitStack() as stack:
        urls, pids = args.url or [DEFAULT_URL], args.server_pid or []
        if args.serve is not None:
            servers = stack.enter_context(serve_replicas(shlex.split(args.serve), args.replicas,
                                                         wide_limits=not args.no_wide_limits,
                                                         log_path=args.server_log))
            urls, pids = [url for url, _ in servers], [pid for _, pid in servers]
        elif not pids:
            found = [pid_listening(port_of(url)) for url in urls]
            pids = [pid for pid in found if pid is not None]
            if len(pids) < len(urls):
                pids = []  # figures for some servers only would read as all of them

        def probe(n: int) -> SwarmReport:
            config = SwarmConfig(urls=tuple(urls), streams=n, over_s=args.over_s,
                                 processes=args.processes, transport=args.transport,
                                 text=args.text, voice=args.voice, pace=args.pace,
                                 seed=args.seed, first_audio_only=args.first_audio_only,
                                 timeout_s=args.timeout_s, server_pids=tuple(pids))
            report, _ = run_swarm(config)
            return report

        reports: list[SwarmReport] = []

        def show(report: SwarmReport) -> None:
            reports.append(report)
            print(format_report(report), flush=True)
            print(flush=True)

        if args.capacity:
            ends = time.monotonic() + args.max_time_s
            best, _ = search_capacity(probe, start=args.streams, limit=args.max_streams,
                                      deadline=lambda: time.monotonic() > ends, on_probe=show)
            print(f"largest passing load: {best} streams ({args.transport}, {args.text}, "
                  f"arrivals over {args.over_s:.0f} s)")
        else:
            for _ in range(max(1, args.repeat)):
                show(probe(args.streams))
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump([asdict(r) | {"passed": r.passed} for r in reports], f, indent=1)
    # A run where not one stream was admitted measured nothing (no server, every handshake
    # refused): say so with the exit status, as loadtest.realtime does.
    if all(r.admitted == 0 for r in reports):
        print("nothing admitted: no stream reached the server's audio (see errors and refused "
              "above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
