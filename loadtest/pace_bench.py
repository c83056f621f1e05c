"""Downloads, listeners and bursts, before and after a change, in one run (issue 18).

    git worktree add --detach /tmp/base main
    flock /tmp/ls-heavy.lock python -m loadtest.pace_bench --base /tmp/base \
        --parts realtime,download
    flock /tmp/ls-heavy.lock python -m loadtest.pace_bench --base /tmp/base --parts mixed,campaign

Serves the base checkout, then this one (each `litestream serve` from its own tree, sentence
cache off, English voice only), runs the parts asked for on each, then `litestream bench
engine`'s layouts on the idle machine, the reference for the downloads (the faster of the
measurements before and after the servers):
- realtime: 1 user's first audio; 10 and 20 listeners at once (first audio p50/p95, the
  10-burst's compute floor from the server's DEBUG lines, stalls, admitted);
- download: one 2,500-character download (the base paces it as a listener: minutes);
- mixed (this tree only): 8 listeners alone, then beside the same download;
- campaign: `--downloads` (50) paragraph downloads at once with the official `openai` client.
What each part measures: loadtest/lib/pace.py.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from pathlib import Path
from typing import Any

from loadtest.lib.pace import (
    Download,
    Server,
    burst,
    campaign,
    download,
    download_text,
    engine_throughput,
    first_audio_ms,
    listeners,
    listeners_beside_download,
    serve,
)
from loadtest.lib.recorder import Summary
from loadtest.lib.streams import machine_info

HERE = Path(__file__).resolve().parent.parent
PARTS = ("realtime", "download", "mixed", "campaign")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtest.pace_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, help="checkout to measure as 'before' (optional)")
    p.add_argument("--port", type=int, default=18100, help="first of two ports to serve on")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--downloads", type=int, default=50, help="the campaign's size")
    p.add_argument("--engine-runs", type=int, default=5)
    p.add_argument("--bursts", type=int, default=1,
                   help="how many 10- and 20-stream bursts the realtime part runs (each printed)")
    p.add_argument("--parts", default=",".join(PARTS),
                   help=f"comma list of {', '.join(PARTS)}; mixed runs on this tree only")
    return p


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _listeners_line(name: str, s: Summary) -> str:
    admitted = s.streams - s.refused
    return (f"  {name}: admitted {admitted}/{s.streams}, first audio p50 {_ms(s.ttfa_p50_ms)} "
            f"p95 {_ms(s.ttfa_p95_ms)}, stalls {s.stall_count} ({s.stall_ms_total:.0f} ms), "
            f"done {s.completed}")


def _download_line(name: str, d: Download) -> str:
    first = None if d.first_byte_s is None else d.first_byte_s * 1000
    return (f"  {name}: {d.wall_s:.1f} s for {d.audio_s:.1f} s of audio "
            f"({d.audio_s / d.wall_s:.1f}x realtime), first bytes {_ms(first)}"
            f"{'' if d.ok else ', FAILED ' + d.error}")


async def _realtime(server: Server, args: argparse.Namespace, out: dict[str, Any]) -> None:
    ones = [await listeners(server, 1) for _ in range(3)]
    out["one_ms"] = first_audio_ms(ones)
    print(f"  1 user: first audio {_ms(out['one_ms'])} (median of 3), "
          f"stalls {sum(s.stall_count for s in ones)}", flush=True)
    bursts = []
    for _ in range(args.bursts):
        b10 = await burst(server, 10, args.workers)
        bursts.append(b10)
        ratio, short = b10.p95_over_floor, b10.p95_over_short_floor
        print(_listeners_line("10 at once", b10.summary) +
              f"; floor {b10.floor_s * 1000:.0f} ms ({b10.floor_streams} streams' encode + "
              f"first window / {args.workers} workers), p95 = "
              f"{'-' if ratio is None else f'{ratio:.2f}'}x floor; first windows as short as "
              f"alone: floor {b10.short_floor_s * 1000:.0f} ms, p95 = "
              f"{'-' if short is None else f'{short:.2f}'}x", flush=True)
    out["burst10"] = bursts[0]
    if len(bursts) > 1:
        ratios = [b.p95_over_floor for b in bursts if b.p95_over_floor is not None]
        shorts = [b.p95_over_short_floor for b in bursts if b.p95_over_short_floor is not None]
        p95s = [b.summary.ttfa_p95_ms for b in bursts if b.summary.ttfa_p95_ms is not None]
        print(f"  10 at once, {len(bursts)} bursts: median p95 "
              f"{_ms(statistics.median(p95s) if p95s else None)}, p95/floor median "
              f"{statistics.median(ratios):.2f}x (max {max(ratios):.2f}x), as short as alone "
              f"median {statistics.median(shorts):.2f}x (max {max(shorts):.2f}x); stalls "
              f"{sum(b.summary.stall_count for b in bursts)}, admitted "
              f"{sum(b.summary.streams - b.summary.refused for b in bursts)}/"
              f"{sum(b.summary.streams for b in bursts)}", flush=True)
    for _ in range(args.bursts):
        b20 = await listeners(server, 20)
        out.setdefault("burst20", b20)
        print(_listeners_line("20 at once", b20), flush=True)


async def _measure(tree: Path, label: str, port: int, args: argparse.Namespace,
                   text: str, parts: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    log = Path(f"/tmp/pace_bench_{label}.log")
    # English only, as the realtime figures of docs/benchmarks.md: the Japanese voices'
    # loading and calibration add nothing these parts use.
    async with serve(tree, port, log, ("--workers", str(args.workers), "--no-kokoro")) as server:
        print(f"{label}: {tree}, port {port}, log {log}", flush=True)
        if "realtime" in parts:
            await _realtime(server, args, out)
        if "download" in parts:
            out["download"] = await download(server.http_url, text)
            print(_download_line(f"one {len(text)}-char download", out["download"]),
                  flush=True)
        if "mixed" in parts:
            alone = await listeners(server, 8)
            with_dl, d = await listeners_beside_download(server, 8, text)
            out["mixed"] = (alone, with_dl, d)
            print(_listeners_line("8 listeners alone", alone), flush=True)
            print(_listeners_line("8 listeners beside the download", with_dl), flush=True)
            print(_download_line("the download beside them", d), flush=True)
        if "campaign" in parts:
            c = await campaign(server.http_url, args.downloads)
            out["campaign"] = c
            print(f"  {c.sent} paragraph downloads at once (openai client, retries): "
                  f"{c.completed} complete, {c.audio_s:.0f} s of audio in {c.wall_s:.1f} s = "
                  f"{c.throughput:.1f} audio s/s" + (f"; errors: {c.errors[:3]}" if c.errors
                                                      else ""), flush=True)
    return out


async def _main(args: argparse.Namespace) -> None:
    parts = set(args.parts.split(","))
    unknown = parts - set(PARTS)
    if unknown:
        raise SystemExit(f"unknown parts: {', '.join(sorted(unknown))}")
    text = download_text(2500)
    print(f"machine: {machine_info()}", flush=True)
    engine_parts = bool(parts & {"download", "mixed", "campaign"})
    before = engine_throughput(args.engine_runs) if engine_parts else None
    results: dict[str, dict[str, Any]] = {}
    if args.base is not None:
        results["base"] = await _measure(args.base.resolve(), "base", args.port, args, text,
                                         parts - {"mixed"})
    results["branch"] = await _measure(HERE, "branch", args.port + 1, args, text, parts)
    if before is None:
        return
    # The engine alone on the idle machine, before the servers and after them: a shared
    # machine's speed drifts, and the downloads ran in between.
    after = engine_throughput(args.engine_runs)
    for when, (name, best, rows) in (("before", before), ("after", after)):
        print(f"engine {when} (litestream bench engine layouts, idle machine): " +
              ", ".join(f"{n} {t:.1f}" for n, t in rows) + f" audio s/s; best {name} {best:.1f}")
    # The faster of the two measurements: others' work on a shared machine only ever makes
    # the engine look slower, so the faster one is the stricter reference for the servers.
    best = max(before[1], after[1])
    print(f"reference: the best layout's faster measurement, {best:.1f} audio s/s")
    for label, out in results.items():
        for key, what in (("download", "the download alone"),
                          ("mixed", "the download beside 8 listeners")):
            d = out.get(key)
            if isinstance(d, tuple):
                d = d[2]
            if d is not None and d.ok:
                need = d.audio_s / best
                print(f"{label}: {what} took {d.wall_s:.1f} s; the engine needs {need:.1f} s "
                      f"for its {d.audio_s:.0f} s of audio: {d.wall_s / need:.2f}x")
        c = out.get("campaign")
        if c is not None:
            print(f"{label}: campaign throughput {c.throughput:.1f} audio s/s = "
                  f"{c.throughput / best * 100:.0f}% of the engine's best")


def main() -> None:
    asyncio.run(_main(_parser().parse_args()))


if __name__ == "__main__":
    main()
