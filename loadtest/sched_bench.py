"""Scheduler cost per decision with many streams, and the playback simulations' figures.

    python -m loadtest.sched_bench --streams 1000,10000 --batch 1,8 --decisions 20000

Timing claims live here, not in tests (style: benchmarks print figures). Part 1 times the
scheduler itself: every stream backlogged with sentences, one decision = next_steps + the
step's encoded()/decoded() + audio_sent, simulated time moving as the workers would, so
playback clocks, window sizes, the lookahead cap and deadlines all stay in play. Part 2 prints
the event-driven simulations (tests/fakes/simulator.py: the bundled voice's measured step costs,
2 workers) for the burst, LLM-token and long-text cases: simulated time, not wall time.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from dataclasses import dataclass

from litestream.engine.synthetic import SyntheticCost
from litestream.scheduler import CostPriors, Priority, Scheduler, StepKind, SynthesisStep
from loadtest.lib.streams import machine_info
from loadtest.lib.texts import LONG, PARAGRAPH
from tests.fakes import (
    APF,
    CONTEXT_FRAMES,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    VOICE,
    FakeEngine,
    SimResult,
    config,
    sentence_frames,
    simulate,
)


def pct(sorted_us: list[float], q: float) -> float:
    return sorted_us[min(len(sorted_us) - 1, int(len(sorted_us) * q))]


@dataclass
class GpuEngine:
    """What a run costs on the synthetic voice's GPU stand-in (engine/synthetic.py's table):
    a decode batch is one run over every window's frames and margins, encodes one by one."""

    rng: random.Random
    cost: SyntheticCost

    def compute_s(self, steps: list[SynthesisStep]) -> float:
        noise = self.rng.uniform(0.9, 1.1)
        if steps[0].kind is StepKind.ENCODE:
            return noise * sum(sum(self.cost.encode_s(step.chars)) for step in steps)
        frames = sum(step.frames + 2 * CONTEXT_FRAMES for step in steps)
        return noise * sum(self.cost.decode_s(frames))

    def priors(self) -> CostPriors:
        c = self.cost
        return CostPriors(encode_overhead_s=c.encode_run_s, encode_per_char_s=c.encode_char_s,
                          decode_overhead_s=c.decode_run_s, decode_per_frame_s=c.decode_frame_s)


def decision_cost(args: argparse.Namespace, streams: int, batch: int) -> None:
    """One scheduler with `streams` backlogged streams; `args.decisions` decisions of at most
    `batch` steps each. Prints the cost per decision and per next_steps call alone."""
    rng = random.Random(args.seed)
    engine: FakeEngine | GpuEngine = FakeEngine(rng)
    priors = None
    if args.gpu:
        engine = GpuEngine(rng, SyntheticCost())
        priors = engine.priors()
    sched = Scheduler(config(), args.workers, priors=priors)
    sched.register_voice(VOICE, context_frames=CONTEXT_FRAMES, sample_rate=SAMPLE_RATE)
    prios = [Priority.HIGH, Priority.NORMAL, Priority.NORMAL, Priority.LOW]
    now = 0.0
    next_seq: dict[str, int] = {}

    def add(sid: str, at: float) -> None:
        seq = next_seq[sid]
        next_seq[sid] = seq + 1
        sched.submit(sid, seq, "x" * rng.randint(20, 160), speed=1.0, voice=VOICE, now=at)

    for i in range(streams):
        sid = f"s{i}"
        sched.open_stream(sid, rng.choice(prios), now)
        next_seq[sid] = 0
        for _ in range(args.sentences):
            add(sid, now)
    samples: list[int] = []
    picks: list[int] = []  # next_steps alone
    for _ in range(args.decisions):
        t0 = time.perf_counter_ns()
        steps = sched.next_steps(now, batch)
        picks.append(time.perf_counter_ns() - t0)
        compute = engine.compute_s(steps) if steps else 0.0
        share = compute / len(steps) if steps else 0.0  # as a worker reports a batch's steps
        finished: list[str] = []
        for step in steps:
            if step.kind is StepKind.ENCODE:
                sched.encoded(step, frames=sentence_frames(step),
                              samples_per_frame=SAMPLES_PER_FRAME, latent=None,
                              compute_s=share, now=now)
            elif sched.decoded(step, audio_s=step.frames * APF, compute_s=share, now=now):
                sched.audio_sent(step.stream_id, step.frames * APF, now)
                if step.last:
                    finished.append(step.stream_id)
        samples.append(time.perf_counter_ns() - t0)
        now += compute / args.workers
        for sid in finished:  # keep every stream backlogged (outside the timed region)
            add(sid, now)
        if not steps:
            now = sched.next_wakeup_s(now) or now
    us = sorted(s / 1000 for s in samples)
    pick_us = sorted(s / 1000 for s in picks)
    st = sched.stats()
    print(
        f"{'GPU stand-in costs' if args.gpu else 'CPU voice costs'}: "
        f"streams {streams}, sentences queued {st.queued_sentences}, decisions {len(us)}, "
        f"batch <= {batch} (mean {st.dispatched / len(us):.2f} steps), dispatched {st.dispatched} "
        f"({st.encode_steps} encode, {st.decode_steps} decode)"
    )
    print(
        f"  next_steps call: p50 {pct(pick_us, 0.5):.1f} us, p99 {pct(pick_us, 0.99):.1f} us, "
        f"max {pick_us[-1]:.1f} us, mean {statistics.fmean(pick_us):.1f} us"
    )
    print(
        f"  whole decision (next_steps + encoded/decoded + audio_sent): p50 "
        f"{pct(us, 0.5):.1f} us, p99 {pct(us, 0.99):.1f} us, max {us[-1]:.1f} us, "
        f"mean {statistics.fmean(us):.1f} us"
    )
    print(
        f"  late handouts {st.late_handouts}, lookahead fallbacks {st.lookahead_fallbacks}, "
        f"held streams {st.held_streams}"
    )


def report(name: str, results: list[SimResult]) -> None:
    firsts = sorted(f for r in results for f in r.first_audio_s)
    p = lambda q: firsts[min(len(firsts) - 1, round(q * len(firsts)) - 1)]  # noqa: E731
    frames = sum(r.sched.stats().decoded_frames for r in results)
    context = sum(r.sched.stats().context_frames for r in results)
    steps = sum(r.sched.stats().decode_steps for r in results)
    print(
        f"{name:<34} admitted {min(r.admitted for r in results)}-"
        f"{max(r.admitted for r in results)}, stalls {sum(r.stalls for r in results)} "
        f"({sum(r.stall_s for r in results) * 1000:.0f} ms), first audio p50 {p(0.5) * 1000:.0f} "
        f"p95 {p(0.95) * 1000:.0f} max {firsts[-1] * 1000:.0f} ms, mean window "
        f"{frames / steps:.0f} frames, context {context / (frames + context):.0%} of frames"
    )


def simulations(seeds: int) -> None:
    print(f"simulated playback, 2 workers, {seeds} seeds each (simulated time):")
    cases = [
        ("1 stream, paragraph", PARAGRAPH, {"streams": 1}),
        ("20 connect at once, paragraph", PARAGRAPH, {"streams": 20}),
        ("20 at once, paragraph, batches <= 4", PARAGRAPH, {"streams": 20, "max_steps": 4}),
        ("20 at once, no admission", PARAGRAPH, {"streams": 20, "admit": False}),
        ("8 LLMs at 8 words/s, paragraph", PARAGRAPH, {"streams": 8, "words_per_s": 8.0}),
        ("20 connect at once, long text", LONG, {"streams": 20}),
    ]
    for name, text, kwargs in cases:
        report(name, [simulate(text, seed=seed, **kwargs) for seed in range(1, seeds + 1)])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1000,10000", help="comma list of stream counts")
    parser.add_argument("--decisions", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sentences", type=int, default=3, help="queued per stream to start")
    parser.add_argument("--batch", default="1,8", help="comma list of max_steps per next_steps")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--gpu", action="store_true",
                        help="steps cost what the synthetic voice's GPU stand-in sleeps")
    parser.add_argument("--sim-seeds", type=int, default=6, help="0: skip the simulations")
    args = parser.parse_args(argv)
    info = machine_info()
    print(f"machine: {info['cpu']}, {info['nproc']} cpus, python {info['python']}, "
          f"load {info['loadavg_1m_at_start']}")
    for streams in (int(n) for n in args.streams.split(",")):
        for batch in (int(n) for n in args.batch.split(",")):
            decision_cost(args, streams, batch)
    if args.sim_seeds:
        simulations(args.sim_seeds)


if __name__ == "__main__":
    main()
