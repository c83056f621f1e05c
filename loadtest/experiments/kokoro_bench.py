"""Kokoro (Japanese) engine figures: RTF per intra-op thread count, one session, in process.

    python -m loadtest.experiments.kokoro_bench [--runs 3] [--threads 1,2]

Prints the median RTF of synthesizing a fixed Japanese paragraph sentence by sentence (as a
stream would be), per thread count, and the compute time of one short first sentence. Timing
figures are printed, never asserted; run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Sequence

from litestream.engine.kokoro.voice import KokoroModel
from litestream.text.segmenter import Segmenter
from loadtest.lib.texts import JA_PARAGRAPH


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.experiments.kokoro_bench")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--voice", default="jf_alpha")
    args = parser.parse_args(argv)
    segmenter = Segmenter(language="ja")
    sentences = segmenter.feed(JA_PARAGRAPH) + segmenter.flush()
    print(f"machine {platform.node()} | {platform.processor() or platform.machine()} | "
          f"nproc {os.cpu_count()}; load avg 1m {os.getloadavg()[0]:.2f}")
    print(f"text: {len(JA_PARAGRAPH)} chars in {len(sentences)} sentences; voice {args.voice}")
    for threads in (int(t) for t in args.threads.split(",")):
        voice = KokoroModel.load(intra_op_threads=threads).voice(args.voice)
        ids = [voice.phoneme_ids(s) for s in sentences]
        rtfs = []
        audio_s = 0.0
        for _ in range(args.runs):
            start = time.perf_counter()
            samples = sum(voice.encode(i).samples for i in ids)
            compute_s = time.perf_counter() - start
            audio_s = samples / voice.sample_rate
            rtfs.append(compute_s / audio_s)
        first = []
        for _ in range(args.runs):
            start = time.perf_counter()
            voice.encode(voice.phoneme_ids(sentences[0]))
            first.append(time.perf_counter() - start)
        print(f"{threads} thread(s): RTF median {statistics.median(rtfs):.3f} "
              f"({', '.join(f'{r:.3f}' for r in rtfs)}) over {audio_s:.1f} s of audio; "
              f"first sentence ({len(sentences[0])} chars) {statistics.median(first) * 1000:.0f} "
              f"ms compute incl. phonemes")
    print(f"load avg 1m at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
