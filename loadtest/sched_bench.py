"""Scheduler cost per decision with many queued streams: next_jobs + complete (+ audio_sent).

    python -m loadtest.sched_bench --streams 1000 --decisions 20000

Timing claims live here, not in tests (style: benchmarks print figures). Simulated time moves
with the decisions so playback clocks, the lookahead cap and deadlines all stay in play.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time

from litestream.scheduler import Priority, Scheduler, SchedulerConfig

APC = 0.065  # fake engine: audio seconds per char
RTF = 0.072  # fake engine: compute seconds per audio second


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--decisions", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunks", type=int, default=4, help="queued chunks per stream to start")
    parser.add_argument("--batch", type=int, default=1, help="max_jobs per next_jobs call")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    sched = Scheduler(SchedulerConfig(), args.workers)
    prios = [Priority.HIGH, Priority.NORMAL, Priority.NORMAL, Priority.LOW]
    now = 0.0
    ids = [f"s{i}" for i in range(args.streams)]
    for sid in ids:
        sched.open_stream(sid, rng.choice(prios), now)
        for _ in range(args.chunks):
            sched.submit(sid, "x" * rng.randint(10, 120), speed=1.0, voice="v", now=now)
    # Time advances as `workers` fake engines would (compute / workers per decision): demand far
    # exceeds capacity, so the queue stays deep and playback clocks, the lookahead cap and
    # deadlines all stay in play.
    samples: list[int] = []
    for _ in range(args.decisions):
        t0 = time.perf_counter_ns()
        jobs = sched.next_jobs(now, args.batch)
        for job in jobs:
            audio = job.chars * APC
            if sched.complete(job, audio_s=audio, compute_s=RTF * audio, now=now):
                sched.audio_sent(job.stream_id, audio, now)
        samples.append(time.perf_counter_ns() - t0)
        now += sum(RTF * job.chars * APC for job in jobs) / args.workers
        for job in jobs:  # keep every stream backlogged (outside the timed region)
            sched.submit(job.stream_id, "x" * rng.randint(10, 120), speed=1.0, voice="v", now=now)
        if not jobs:
            now = sched.next_wakeup_s(now) or now
    samples.sort()
    us = [s / 1000 for s in samples]
    st = sched.stats()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"python {platform.python_version()}"
    )
    print(
        f"streams {args.streams}, queued {st.queued_jobs}, decisions {len(us)}, "
        f"batch {args.batch}, dispatched {st.dispatched}"
    )
    print(
        f"per decision (next_jobs + complete + audio_sent): p50 {us[len(us) // 2]:.1f} us, "
        f"p99 {us[int(len(us) * 0.99)]:.1f} us, max {us[-1]:.1f} us, "
        f"mean {statistics.fmean(us):.1f} us"
    )
    print(
        f"deadline misses {st.deadline_misses}, lookahead fallbacks {st.lookahead_fallbacks}, "
        f"held streams {st.held_streams}"
    )


if __name__ == "__main__":
    main()
