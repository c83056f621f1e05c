"""Realtime load test: N simulated listeners against a litestream server.

    python -m loadtest.realtime --streams 20 --arrival burst --text paragraph
    python -m loadtest.realtime --capacity --text long

The command line only; what it measures and how is in loadtest/lib/streams.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any
from urllib.parse import urlsplit

from litestream.client import build_url
from loadtest.lib.recorder import (
    RATE_LIMIT_HINT,
    Probe,
    Summary,
    capacity_search,
    fmt_ms,
    format_report,
    parse_arrival,
)
from loadtest.lib.streams import (
    DEFAULT_URL,
    MAX_STREAMS_HARD,
    check_loopback,
    loadavg,
    machine_info,
    measure_rtf,
    run_load,
)
from loadtest.lib.texts import text_for


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtest.realtime", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=DEFAULT_URL)
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--arrival", default="burst", help="burst | poisson:RATE (streams/s)")
    p.add_argument("--text", default="paragraph", choices=["paragraph", "long", "tokens"])
    p.add_argument("--token-rate", type=float, default=8.0, help="words/s in tokens mode")
    p.add_argument("--mix", default="", metavar="VOICE=TEXT,...",
                   help="streams take these voice=text pairs in turn, e.g. "
                        "en_US-joe-medium=paragraph,jf_alpha=ja (default: --text, default voice)")
    p.add_argument("--timestamps", default="none", choices=["none", "word"],
                   help="word: every stream asks for `words` events (protocol-v1 timestamps)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--timeout-s", type=float, default=600.0, help="bound on each stream")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback host")
    p.add_argument("--capacity", action="store_true", help="search the largest N that passes")
    p.add_argument("--target-p95-ms", type=float, default=1000.0)
    p.add_argument("--max-streams", type=int, default=64)
    p.add_argument("--start", type=int, default=None,
                   help="first capacity probe (default: the 75%%-of-cores bar, measured)")
    p.add_argument("--max-time-s", type=float, default=1500.0, help="bound on the search")
    p.add_argument("--rtf-runs", type=int, default=3)
    p.add_argument("--pause-s", type=float, default=2.0, help="idle time between probes")
    return p


def parse_mix(spec: str) -> list[tuple[str, str]]:
    """"a=paragraph,b=ja" -> [("a", "paragraph"), ("b", "ja")]; texts checked."""
    pairs = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        voice, sep, mode = item.partition("=")
        if not sep or not voice:
            raise SystemExit(f"--mix: {item!r} is not VOICE=TEXT")
        try:
            text_for(mode)
        except ValueError as exc:
            raise SystemExit(f"--mix: {exc}") from None
        pairs.append((voice, mode))
    return pairs


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if urlsplit(args.url).scheme not in ("ws", "wss"):
        parser.error(f"--url must be a ws:// or wss:// stream URL, got {args.url!r}")
    for flag, value in (("--token-rate", args.token_rate), ("--timeout-s", args.timeout_s)):
        if not value > 0:
            parser.error(f"{flag} must be > 0")
    if not args.allow_remote:
        check_loopback(args.url)
    try:
        parse_arrival(args.arrival)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    if args.timestamps != "none":
        args.url = build_url(args.url, {"timestamps": args.timestamps})
    meta: dict[str, Any] = {"machine": machine_info(), "url": args.url, "arrival": args.arrival,
                            "text": args.text, "token_rate": args.token_rate, "seed": args.seed}
    args.mix = parse_mix(args.mix)
    meta["mix"] = args.mix
    if args.capacity:
        return _capacity(args, meta)
    if not 1 <= args.streams <= MAX_STREAMS_HARD:
        raise SystemExit(f"--streams must be 1..{MAX_STREAMS_HARD}")
    summary, _ = asyncio.run(run_load(args.url, streams=args.streams, arrival=args.arrival,
                                      text=args.text, token_rate=args.token_rate,
                                      seed=args.seed, timeout_s=args.timeout_s, mix=args.mix))
    meta["loadavg_1m_at_end"] = loadavg()
    if args.json:
        print(json.dumps({**meta, "summary": asdict(summary)}))
    else:
        print(format_report(summary, meta))
    return 0 if summary.with_audio else 1  # nothing heard: nothing was measured


def _capacity(args: argparse.Namespace, meta: dict[str, Any]) -> int:
    max_streams = max(1, min(args.max_streams, MAX_STREAMS_HARD))
    # Measured before any load, so the server's workers do not share the cores with it.
    rtf = measure_rtf(text_for(args.text), args.rtf_runs)
    bar = rtf["bar_streams"]
    start = args.start if args.start is not None else max(1, min(max_streams, round(bar)))
    if not args.json:
        print(f"RTF(1 thread) {rtf['rtf_1_thread']:.4f} (median of "
              f"{', '.join(f'{x:.4f}' for x in rtf['runs'])}; {rtf['audio_s']:.1f} s of audio); "
              f"bar = 0.75 x {rtf['cores']} cores / RTF = {bar:.1f} streams", flush=True)
        print(f"search: text {args.text}, burst, pass = 0 stalls, 0 refused, 0 errors, "
              f"all done, p95 first audio < {args.target_p95_ms:.0f} ms; start {start}, "
              f"max {max_streams}", flush=True)

    hinted = False

    def report(p: Probe) -> None:
        nonlocal hinted
        if args.json:
            return
        s = p.summary
        codes = ", ".join(f"{code} {n}" for code, n in sorted(s.errors.items()))
        print(f"probe {p.streams:>4} streams: {'PASS' if p.passed else 'FAIL'}  "
              f"first audio p50 {fmt_ms(s.ttfa_p50_ms)} p95 {fmt_ms(s.ttfa_p95_ms)} "
              f"p99 {fmt_ms(s.ttfa_p99_ms)} ms; stalls {s.stall_count} "
              f"({s.streams_with_stalls} streams, {s.stall_ms_total:.0f} ms); "
              f"worst lateness {fmt_ms(s.worst_chunk_lateness_ms)} ms; refused {s.refused}; "
              f"errors {sum(s.errors.values())}{f' ({codes})' if codes else ''}; "
              f"done {s.completed}/{s.streams}; wall {s.wall_s:.1f} s; load avg 1m {loadavg()}",
              flush=True)
        if "rate_limited" in s.errors and not hinted:
            hinted = True
            print(f"  rate_limited: {RATE_LIMIT_HINT}", flush=True)

    async def search() -> tuple[int, list[Probe], bool]:
        first = True

        async def probe(n: int) -> Summary:
            nonlocal first
            if not first:
                await asyncio.sleep(args.pause_s)  # let the server close the last probe
            first = False
            summary, _ = await run_load(args.url, streams=n, arrival="burst", text=args.text,
                                        token_rate=args.token_rate, seed=args.seed,
                                        timeout_s=args.timeout_s, mix=args.mix)
            return summary

        return await capacity_search(
            probe, target_p95_ms=args.target_p95_ms, max_streams=max_streams, start=start,
            deadline_s=time.monotonic() + args.max_time_s, on_probe=report)

    t = time.monotonic()
    capacity, probes, bounded = asyncio.run(search())
    verdict = "PASS" if capacity >= bar else "FAIL"
    if args.json:
        print(json.dumps({**meta, "capacity": capacity, "bounded_early": bounded,
                          "max_streams": max_streams, "target_p95_ms": args.target_p95_ms,
                          "rtf": rtf, "bar_streams": bar, "verdict": verdict,
                          "search_wall_s": time.monotonic() - t,
                          "probes": [{"streams": p.streams, "passed": p.passed,
                                      "summary": asdict(p.summary)} for p in probes]}))
    else:
        m = meta["machine"]
        print(f"machine {m['node']} | {m['cpu']} | nproc {m['nproc']}; server {args.url}; "
              f"load avg 1m {m['loadavg_1m_at_start']} at start, {loadavg()} at end")
        note = " (search stopped at --max-time-s)" if bounded else ""
        capped = " (= --max-streams)" if capacity >= max_streams else ""
        print(f"capacity {capacity} streams{capped}{note} of text {args.text}, "
              f"search {time.monotonic() - t:.0f} s over {len(probes)} probes")
        print(f"bar: 75% of cores / RTF(1 thread) = 0.75 x {rtf['cores']} / "
              f"{rtf['rtf_1_thread']:.4f} = {bar:.1f} streams -> {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
