"""Sentence cache on a voice-agent mix: hit rate, and the synthesis capacity it gives back.

A voice agent's replies mix stock phrases ("Sure, one moment.", "Is there anything else I can
help you with?") with new text (order numbers, times, names). This benchmark builds such
replies (seeded), cuts them into chunks with litestream's segmenter as the server does, looks
each chunk up in the sentence cache and synthesizes the misses with the real engine, timing
each synthesis. It prints:

- hit rate by chunks and by seconds of audio;
- compute with and without the cache, and the capacity gained: without / with (streams a
  worker can serve scale with 1 / compute per second of audio);
- the cache's bytes, entries and evictions, for the default size and smaller ones.

    flock -x /tmp/litestream-cpu.lock .venv/bin/python -m loadtest.cache_bench

Chunks are whole sentences (the segmenter no longer shortens first chunks: first audio comes
from streaming within a sentence), so a stock phrase is the same key wherever it stands.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from litestream.config import default_of
from litestream.engine import PiperVoice
from litestream.synthesis.cache import SentenceCache
from litestream.text.segmenter import Segmenter
from loadtest.lib.streams import machine_info

STOCK_OPENERS = (
    "Sure, one moment.",
    "Let me check that for you.",
    "Okay, I can help with that.",
    "Thanks for waiting.",
    "Got it.",
    "I'm sorry, I didn't catch that.",
    "Great question.",
    "Alright.",
)
STOCK_CLOSERS = (
    "Is there anything else I can help you with?",
    "Could you repeat that, please?",
    "Great, you're all set.",
    "Have a wonderful day!",
    "Let me know if you need anything else.",
    "Would you like me to send you a confirmation by email?",
)
NAMES = ("Alex", "Jordan", "Priya", "Mateo", "Chen", "Fatima", "Olga", "Samuel")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
STREETS = ("Main Street", "Oak Avenue", "Harbor Road", "Elm Court", "Station Square")


def new_sentence(rng: random.Random) -> str:
    """A sentence an agent would say once: facts of this caller's case."""
    pick = rng.randrange(5)
    if pick == 0:
        return (f"Your order {rng.randrange(10000, 99999)} shipped on {rng.choice(DAYS)} and "
                f"should arrive within {rng.randrange(2, 9)} days.")
    if pick == 1:
        return (f"The store on {rng.choice(STREETS)} opens at {rng.randrange(7, 11)} and closes "
                f"at {rng.randrange(5, 10)} in the evening.")
    if pick == 2:
        minutes = rng.choice(("00", "15", "30", "45"))
        return (f"I have booked a table for {rng.randrange(2, 9)} under the name "
                f"{rng.choice(NAMES)} at {rng.randrange(5, 10)}:{minutes}.")
    if pick == 3:
        return (f"Your balance is {rng.randrange(10, 999)} dollars and "
                f"{rng.randrange(0, 99)} cents.")
    return (f"{rng.choice(NAMES)} will call you back on {rng.choice(DAYS)} between "
            f"{rng.randrange(8, 12)} and {rng.randrange(1, 5)} o'clock.")


def replies(turns: int, seed: int) -> list[str]:
    """Agent replies: an opener most of the time, one or two new sentences, often a closer."""
    rng = random.Random(seed)
    out = []
    for _ in range(turns):
        parts = []
        if rng.random() < 0.7:
            parts.append(rng.choice(STOCK_OPENERS))
        parts.extend(new_sentence(rng) for _ in range(rng.choice((1, 1, 2))))
        if rng.random() < 0.5:
            parts.append(rng.choice(STOCK_CLOSERS))
        out.append(" ".join(parts))
    return out


def chunks_of(reply: str, max_chars: int) -> list[str]:
    segmenter = Segmenter(max_chars=max_chars)
    out: list[str] = []
    for word in reply.split(" "):  # token by token, as an LLM streams it
        out.extend(segmenter.feed(word + " "))
    out.extend(segmenter.flush())
    return out


@dataclass
class Tally:
    chunks: int = 0
    hits: int = 0
    audio_s: float = 0.0
    hit_audio_s: float = 0.0
    compute_s: float = 0.0  # synthesis actually run (misses)
    compute_all_s: float = 0.0  # synthesis without a cache (every chunk)


def run(voice: PiperVoice, texts: Sequence[str], cache: SentenceCache, max_chars: int,
        synthesized: dict[str, tuple[float, np.ndarray]]) -> Tally:
    """`synthesized`: (compute s, audio) per chunk text, shared across runs so each text is
    synthesized and timed once per benchmark, whichever cache size meets it first."""
    tally = Tally()
    rate = voice.sample_rate
    voice_id = voice.info.id
    for reply in texts:
        for chunk in chunks_of(reply, max_chars):
            tally.chunks += 1
            found = cache.get(voice_id, 1.0, chunk)
            if chunk not in synthesized:
                started = time.perf_counter()
                audio = voice.synthesize(chunk)
                synthesized[chunk] = (time.perf_counter() - started, audio)
            compute_s, audio = synthesized[chunk]
            tally.audio_s += len(audio) / rate
            tally.compute_all_s += compute_s
            if found is not None:
                tally.hits += 1
                tally.hit_audio_s += found.audio_s
                continue
            tally.compute_s += compute_s
            cache.put(voice_id, 1.0, chunk, audio, rate)
    return tally


def report(name: str, tally: Tally, cache: SentenceCache) -> str:
    stats = cache.stats()
    gain = tally.compute_all_s / tally.compute_s if tally.compute_s else float("inf")
    return (f"{name:<18} chunks {tally.chunks}, hits {tally.hits} "
            f"({tally.hits / tally.chunks:.0%} of chunks, "
            f"{tally.hit_audio_s / tally.audio_s:.0%} of {tally.audio_s:.0f} s audio); compute "
            f"{tally.compute_all_s:.1f} s without cache, {tally.compute_s:.1f} s with -> "
            f"capacity x{gain:.2f}; cache {stats.bytes / 2**20:.1f} MiB in {stats.entries} "
            f"entries, {stats.evictions} evictions")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.cache_bench")
    parser.add_argument("--turns", type=int, default=150, help="agent replies")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-chars", type=int, default=300)
    parser.add_argument("--sizes-mib", default=f"{default_of('cache_bytes') >> 20},64,8",
                        help="cache sizes to compare, MiB (the first is the default)")
    args = parser.parse_args(argv)

    meta = machine_info()
    voice = PiperVoice.load(deterministic=True)
    voice.warmup()
    texts = replies(args.turns, args.seed)
    synthesized: dict[str, tuple[float, np.ndarray]] = {}
    lines = []
    for mib in (int(m) for m in args.sizes_mib.split(",") if m):
        name = f"cache {mib} MiB"
        cache = SentenceCache(mib << 20)
        lines.append(report(name, run(voice, texts, cache, args.max_chars, synthesized), cache))
    print(f"machine {meta['node']} | {meta['cpu']} | nproc {meta['nproc']} | python "
          f"{meta['python']} | load avg 1m {meta['loadavg_1m_at_start']} at start, "
          f"{os.getloadavg()[0]:.2f} at end")
    print(f"voice {voice.info.id}, one thread; {args.turns} agent replies (seed {args.seed}); "
          f"{len(synthesized)} distinct chunks synthesized")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
