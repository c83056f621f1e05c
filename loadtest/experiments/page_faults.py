"""Page faults of the engine's runs with glibc's malloc defaults and with the server's policy
(`synthesis/workers.keep_freed_memory_until_trim`), each in a fresh process.

    python -m loadtest.experiments.page_faults [--seconds 12] [--threads 2] [--kokoro]

Piper: `--threads` threads, each with its own session as the workers have, decode windows of 32,
64, 128 and 3 x 256 frames in turn for `--seconds`; prints page faults, frames a second, peak RSS
and RSS after a `malloc_trim`. `--kokoro`: one thread synthesizing a Japanese sentence five times
(the first not counted); prints faults, RTF and peak RSS. Figures are printed, never asserted;
run it with nothing else on the machine (docs/benchmarks.md, "Page faults in every long window").
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from loadtest.lib.endurance import rss_mb
from loadtest.lib.streams import machine_info
from loadtest.lib.texts import JA_PARAGRAPH

POLICIES = ("default", "tuned")
SENTENCE = ("The quick brown fox jumps over the lazy dog, and then it runs far away into the "
            "quiet forest beyond the hills.")
WINDOWS = (32, 64, 128, 256, 256, 256)


def _thread_faults() -> int:
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


def piper(seconds: float, threads: int) -> str:
    from litestream.engine import PiperVoice
    from litestream.synthesis.workers import release_memory

    first = PiperVoice.load(deterministic=True)
    voices = [first] + [first.new_session() for _ in range(threads - 1)]
    latent = first.encode(first.phoneme_ids(SENTENCE))
    assert latent.frames >= 40 + max(WINDOWS)
    results: list[tuple[int, float]] = []

    def work(voice: PiperVoice) -> None:
        for frames in WINDOWS:  # the first round grows the heap
            voice.decode(latent, 40, frames)
        faults, done, start = _thread_faults(), 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for frames in WINDOWS:
                voice.decode(latent, 40, frames)
                done += frames
        results.append((_thread_faults() - faults, done / (time.perf_counter() - start)))

    running = [threading.Thread(target=work, args=(v,)) for v in voices]
    for t in running:
        t.start()
    peak = 0.0
    while any(t.is_alive() for t in running):
        peak = max(peak, rss_mb(os.getpid()))
        time.sleep(0.05)
    release_memory()
    return (f"faults {sum(f for f, _ in results):,}, frames a second "
            f"{sum(r for _, r in results):,.0f}, RSS peak {peak:.0f} MB, after a trim "
            f"{rss_mb(os.getpid()):.0f} MB")


def kokoro() -> str:
    from litestream.engine.registry import load_voice
    from litestream.text.segmenter import Segmenter

    voice = load_voice("jf_alpha")
    segmenter = Segmenter(language="ja")
    sentence = (segmenter.feed(JA_PARAGRAPH) + segmenter.flush())[0]
    out: dict[str, float] = {}

    def one() -> int:
        latent = voice.encode(voice.phoneme_ids(sentence))
        return len(voice.decode(latent, 0, latent.frames))

    def work() -> None:
        one()
        faults, start, samples = _thread_faults(), time.perf_counter(), 0
        for _ in range(4):
            samples += one()
        out["s"] = time.perf_counter() - start
        out["faults"] = _thread_faults() - faults
        out["audio_s"] = samples / voice.sample_rate

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (f"faults {int(out['faults']):,} in 4 runs, RTF {out['s'] / out['audio_s']:.3f} "
            f"({out['audio_s']:.1f} s of audio), peak RSS {peak:.0f} MB")


def one_process(policy: str, what: str, seconds: float, threads: int) -> None:
    if policy == "tuned":
        from litestream.synthesis.workers import keep_freed_memory_until_trim

        keep_freed_memory_until_trim()  # first, as `litestream serve` does
    print(piper(seconds, threads) if what == "piper" else kokoro(), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.experiments.page_faults")
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="each policy this many times")
    parser.add_argument("--kokoro", action="store_true", help="the Japanese voice instead")
    parser.add_argument("--child", nargs=2, metavar=("POLICY", "WHAT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        one_process(args.child[0], args.child[1], args.seconds, args.threads)
        return 0
    what = "kokoro" if args.kokoro else "piper"
    machine = machine_info()
    print(f"machine {machine['node']} | {machine['cpu']} | nproc {machine['nproc']}; "
          f"load avg 1m {machine['loadavg_1m_at_start']}")
    if args.kokoro:
        print("kokoro jf_alpha: one thread, the first sentence of the Japanese paragraph x 4")
    else:
        print(f"piper: {args.threads} threads, windows {', '.join(map(str, WINDOWS))} in turn, "
              f"{args.seconds:g} s")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    for _ in range(args.rounds):
        for policy in POLICIES:
            done = subprocess.run(
                [sys.executable, "-m", "loadtest.experiments.page_faults", "--child", policy,
                 what, "--seconds", str(args.seconds), "--threads", str(args.threads)],
                capture_output=True, text=True, env=env, check=False)
            line = done.stdout.strip().splitlines()[-1] if done.returncode == 0 else (
                f"failed: {done.stderr.strip()[-300:]}")
            print(f"{policy:>8}: {line}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
