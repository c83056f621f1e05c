"""The silence heard where a long first sentence is cut at its first clause, against the pause
the voice makes at that same comma when it speaks the sentence whole.

    python -m loadtest.experiments.clause_join [--runs 5] [--first-chunk-chars 80]

The server cuts a run's long first sentence once, at a clause boundary (segmenter.py, "A long
first sentence"), so its first audio waits only for the clause's front pass. The two pieces are
synthesized apart: this prints the silence at their join (trailing silence of the clause plus
leading silence of the rest, as `loadtest.quality` counts it) and the longest silence inside
the whole sentence's audio near the same place (the voice's own pause at the comma). Noise is
on, as served, so each run differs; medians over the runs. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Sequence

import numpy as np

from litestream import protocol
from litestream.engine.piper.voice import PiperVoice
from litestream.text.segmenter import Segmenter
from loadtest.lib.listening import SILENCE_DBFS, WINDOW_MS, silence_edges_ms
from loadtest.lib.texts import PARAGRAPH


def quiet_runs_ms(pcm: np.ndarray, sample_rate: int) -> list[tuple[float, float]]:
    """(start, length) in ms of each run of silent 10 ms windows (the rule of
    `quality.silence_edges_ms`) in s16 samples."""
    window = max(1, int(sample_rate * WINDOW_MS / 1000))
    n = len(pcm) // window
    frames = pcm[: n * window].astype(np.float64).reshape(n, window) / 32768.0
    quiet = 20 * np.log10(np.maximum(np.sqrt(np.mean(frames * frames, axis=1)), 1e-10))
    runs: list[tuple[float, float]] = []
    start: int | None = None
    for i, is_quiet in enumerate([*(quiet <= SILENCE_DBFS), False]):
        if is_quiet and start is None:
            start = i
        elif not is_quiet and start is not None:
            runs.append((start * WINDOW_MS, (i - start) * WINDOW_MS))
            start = None
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--first-chunk-chars", type=int, default=80)
    args = p.parse_args(argv)
    voice = PiperVoice.load()
    rate = voice.sample_rate
    segmenter = Segmenter(first_max_chars=args.first_chunk_chars)
    clause, rest = (segmenter.feed(PARAGRAPH) + segmenter.flush())[:2]
    whole = f"{clause} {rest}"

    def speak(text: str) -> np.ndarray:
        return np.frombuffer(protocol.to_pcm(voice.synthesize(text), "s16le"), dtype="<i2")

    joins, pauses = [], []
    for _ in range(args.runs):
        head, tail, spoken = speak(clause), speak(rest), speak(whole)
        joins.append(silence_edges_ms(head, rate)[1] + silence_edges_ms(tail, rate)[0])
        # The comma's pause: the longest silence within 0.5 s of where the clause ends.
        end_ms = (len(head) / rate * 1000) - silence_edges_ms(head, rate)[1]
        near = [length for start, length in quiet_runs_ms(spoken, rate)
                if abs(start - end_ms) < 500]
        pauses.append(max(near, default=0.0))
    print(f"first chunk    {clause!r} ({len(clause)} chars) | rest {len(rest)} chars")
    print(f"silence at the clause join   median {statistics.median(joins):.0f} ms "
          f"(runs: {', '.join(f'{j:.0f}' for j in joins)})")
    print(f"pause at that comma, whole   median {statistics.median(pauses):.0f} ms "
          f"(runs: {', '.join(f'{q:.0f}' for q in pauses)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
