"""A Japanese reply's first audio and silences, over protocol v1, as a voice agent sends it.

    python -m loadtest.experiments.ja_first_audio --url ws://127.0.0.1:8765/v1/stream [--runs 3]

For each case (a reply sent whole, or as an LLM's tokens of 1-3 characters 30 ms apart), one
stream at a time: the seconds from the first `text` to the first audio frame, and the server's
`underrun_ms` (silence a listener who started at the first frame heard). Compare two servers
(a branch and main) by running it against each in turn on the same machine; figures are
printed, never asserted. Start the servers with `--cache-bytes 0`, or every run after the
first is a cache hit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import Sequence

from websockets.asyncio.client import connect

CASES: dict[str, tuple[str, bool]] = {
    # A first sentence of 46 characters with a clause at 22.
    "long first sentence, whole": (
        "東京では午後から雨が降るかもしれませんので、出かける際には傘を持っていくことを"
        "おすすめします。また、明日の朝は気温が下がる見込みです。", False),
    "long first sentence, tokens": (
        "東京では午後から雨が降るかもしれませんので、出かける際には傘を持っていくことを"
        "おすすめします。また、明日の朝は気温が下がる見込みです。", True),
    # A short first sentence, then a long one: the second is made while the first plays.
    "はい。 then a long one, tokens": (
        "はい。東京では午後から雨が降るかもしれませんので、出かける際には傘を持っていく"
        "ことをおすすめします。", True),
    # A first clause of 30 characters.
    "a long first clause, tokens": (
        "本日は東京都内の天気予報についてご案内させていただきますが、午後からは雨が降り"
        "ますので、傘をお持ちください。", True),
}


async def one(url: str, text: str, tokens: bool, seed: int) -> tuple[float | None, int]:
    """(first audio s, underrun_ms) of one stream."""
    rng = random.Random(seed)
    first: float | None = None
    underrun_ms = 0
    async with connect(url, max_size=None) as ws:
        await ws.recv()  # ready
        start = time.monotonic()

        async def send() -> None:
            at = 0
            while at < len(text):
                size = rng.randint(1, 3) if tokens else len(text)
                await ws.send(json.dumps({"type": "text", "text": text[at:at + size]}))
                at += size
                if tokens:
                    await asyncio.sleep(0.03)
            await ws.send(json.dumps({"type": "end"}))

        sender = asyncio.create_task(send())
        async for message in ws:
            if isinstance(message, bytes):
                if first is None:
                    first = time.monotonic() - start
            elif json.loads(message)["type"] == "done":
                underrun_ms = int(json.loads(message)["stats"]["underrun_ms"])
        await sender
    return first, underrun_ms


async def run(url: str, runs: int) -> None:
    for name, (text, tokens) in CASES.items():
        results = [await one(url, text, tokens, seed) for seed in range(runs)]
        firsts = [f"{f:.2f}" if f is not None else "-" for f, _ in results]
        print(f"{name:32s} first audio s {', '.join(firsts):20s} "
              f"underrun ms {', '.join(str(u) for _, u in results)}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.experiments.ja_first_audio")
    parser.add_argument("--url", default="ws://127.0.0.1:8765/v1/stream")
    parser.add_argument("--voice", default="jf_alpha")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    asyncio.run(run(f"{args.url}?voice={args.voice}", args.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
