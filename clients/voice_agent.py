"""A voice agent's side of litestream: stream LLM tokens in, barge in, keep the history true.

    python clients/voice_agent.py --url ws://127.0.0.1:8765/v1/stream --barge-in-after 3.0

A canned reply stands in for the LLM: emitted word by word (~8 words/s, seeded jitter), each
word sent as it comes (`text`), so speech starts after the first sentence, not the whole reply.
Playback is simulated with `PlaybackClock` (no sound card). The stream asks for word
timestamps (`timestamps=word`), so every chunk comes with the voice's time for each of its
words. After --barge-in-after seconds of playback the "user" interrupts: the agent stops its
LLM, sends `clear`, waits for `cleared`, and prints the words heard before the barge-in (every
word whose start had played) and the rest, never heard: the chunks cut short or never played,
and the text the server still held, sent but in no chunk yet. That split is what an agent must
write into its chat history: the assistant said only what was heard.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make `litestream` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from litestream.client import (
    Audio,
    Chunk,
    Cleared,
    Done,
    DoneStats,
    Error,
    Flushed,
    HeardText,
    PlaybackClock,
    Ready,
    Stall,
    Words,
    connect,
)

CANNED_REPLY = (
    "Sure, I can help you plan the trip. The fastest route leaves from the central station "
    "at eight fifteen and reaches the coast a little before noon. If you would rather take "
    "the scenic line, it follows the river through three small villages and adds about an "
    "hour. Both trains have a dining car, but only the morning one serves a hot breakfast. "
    "Tickets are cheaper if you book them at least a week ahead. Would you like me to check "
    "the prices for next Saturday, or compare them with the bus?"
)


@dataclass(frozen=True)
class HeardChunk:
    seq: int
    text: str
    heard_fraction: float  # 1.0 for a chunk heard whole


@dataclass
class AgentReport:
    """What happened, in the terms an agent's chat history needs."""

    ttfa_ms: float | None  # first word sent -> first audio frame, ms (client-side)
    barged_in: bool
    barge_in_playback_ms: float | None  # audio heard when the user interrupted
    cleared: Cleared | None  # the server's acknowledgement of the clear
    fully_played: list[HeardChunk] = field(default_factory=list)
    partly_played: list[HeardChunk] = field(default_factory=list)
    unplayed: list[str] = field(default_factory=list)  # chunks synthesized, never heard
    # the reply split after the last word heard
    words: HeardText = field(default_factory=lambda: HeardText("", ""))
    words_sent: int = 0
    words_total: int = 0
    stalls: list[Stall] = field(default_factory=list)
    errors: list[Error] = field(default_factory=list)
    done: DoneStats | None = None

    @property
    def heard_text(self) -> str:
        """What the assistant actually said, for the chat history: the words heard."""
        return self.words.heard


async def llm_tokens(reply: str, words_per_s: float, seed: int) -> AsyncIterator[str]:
    """A stand-in LLM: the reply word by word, at a seeded, jittered pace."""
    rng = random.Random(seed)
    words = reply.split()
    for i, word in enumerate(words):
        yield word if i == len(words) - 1 else word + " "
        await asyncio.sleep(max(0.0, rng.gauss(1.0 / words_per_s, 0.3 / words_per_s)))


async def run_agent(
    url: str,
    *,
    barge_in_after_s: float | None = 3.0,
    reply: str = CANNED_REPLY,
    words_per_s: float = 8.0,
    seed: int = 7,
    voice: str | None = None,
    token: str | None = None,
    encoding: str = "msgpack",
    timeout_s: float = 60.0,
) -> AgentReport:
    """Speak `reply` as an LLM would stream it; barge in after `barge_in_after_s` of playback.

    `barge_in_after_s=None` lets the whole reply play. Returns when the stream is done.
    """
    loop = asyncio.get_running_loop()
    words_total = len(reply.split())
    report = AgentReport(ttfa_ms=None, barged_in=False, barge_in_playback_ms=None,
                         cleared=None, words_total=words_total)
    clock: PlaybackClock | None = None
    first_word_at: float | None = None
    reply_flushed = asyncio.Event()  # the server has sent all audio of the whole reply
    cleared = asyncio.Event()
    barge_at: float | None = None
    sent: list[str] = []  # the text sent, token by token

    async with connect(url, voice=voice, token=token, encoding=encoding,
                       timestamps="word") as stream:

        async def produce() -> None:
            nonlocal first_word_at
            async for token_text in llm_tokens(reply, words_per_s, seed):
                if first_word_at is None:
                    first_word_at = loop.time()
                await stream.send_text(token_text)
                sent.append(token_text)
                report.words_sent += 1
            await stream.flush()  # the LLM turn is over: speak the tail now

        async def consume() -> None:
            nonlocal clock
            async for event in stream:
                now = loop.time()
                if isinstance(event, Ready):
                    clock = PlaybackClock.for_ready(event)
                elif isinstance(event, Chunk) and clock is not None:
                    clock.on_chunk(event, now)
                elif isinstance(event, Words) and clock is not None:
                    clock.on_words(event)
                elif isinstance(event, Audio) and clock is not None:
                    if clock.first_audio_at is None and first_word_at is not None:
                        report.ttfa_ms = (now - first_word_at) * 1000.0
                    clock.on_audio(event.seq, len(event.pcm), now)
                elif isinstance(event, Flushed):
                    reply_flushed.set()
                elif isinstance(event, Cleared):
                    report.cleared = event
                    if clock is not None:
                        clock.on_cleared(event.seq)
                    cleared.set()
                elif isinstance(event, Error):
                    report.errors.append(event)
                elif isinstance(event, Done):
                    report.done = event.stats

        async def watch() -> None:
            """Poll the simulated playback: interrupt, or notice the reply finished playing."""
            nonlocal barge_at
            while True:
                await asyncio.sleep(0.01)
                now = loop.time()
                if clock is None or clock.first_audio_at is None:
                    continue
                if (barge_in_after_s is not None
                        and clock.played_ms(now) >= barge_in_after_s * 1000.0):
                    barge_at = now
                    clock.clear(now)  # the listener's speaker goes quiet at once
                    return
                if reply_flushed.is_set() and clock.buffered_ms(now) <= 0:
                    return  # everything was heard before the user spoke

        producer = asyncio.create_task(produce())
        consumer = asyncio.create_task(consume())
        try:
            async with asyncio.timeout(timeout_s):
                watcher = asyncio.create_task(watch())
                await asyncio.wait({watcher, consumer}, return_when=asyncio.FIRST_COMPLETED)
                if consumer.done():  # the server ended the stream early: surface why
                    watcher.cancel()
                    await consumer
                    raise RuntimeError("stream ended before the reply was played")
                if barge_at is not None:
                    report.barged_in = True
                    assert clock is not None
                    report.barge_in_playback_ms = clock.played_ms(barge_at)
                    producer.cancel()  # the user interrupted: stop generating
                    with contextlib.suppress(asyncio.CancelledError):
                        await producer
                    await stream.clear()
                    await cleared.wait()
                else:
                    await producer
                await stream.end()
                await consumer
        finally:
            for task in (producer, consumer):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    assert clock is not None
    at = barge_at if barge_at is not None else loop.time()
    report.fully_played = [HeardChunk(c.seq, c.text, 1.0) for c in clock.fully_played(at)]
    report.partly_played = [HeardChunk(c.seq, c.text, f) for c, f in clock.partly_played(at)]
    report.unplayed = [c.text for c in clock.unplayed(at)]
    # Not heard: the rest of the chunks, then what the server still held, which no chunk
    # carried (an unfinished sentence, or text a `listener` stream had not yet needed).
    split = clock.heard_text(at)
    held = clock.unchunked("".join(sent))
    report.words = HeardText(split.heard, " ".join(p for p in (split.unheard, held) if p))
    report.stalls = list(clock.stalls)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8765/v1/stream")
    parser.add_argument("--barge-in-after", type=float, default=3.0,
                        help="seconds of playback before the user interrupts (<0: never)")
    parser.add_argument("--words-per-s", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--voice", default=None)
    parser.add_argument("--token", default=None, help="API key (sent as Authorization: Bearer)")
    parser.add_argument("--encoding", choices=("json", "msgpack"), default="msgpack")
    args = parser.parse_args(argv)

    barge = args.barge_in_after if args.barge_in_after >= 0 else None
    report = asyncio.run(run_agent(
        args.url, barge_in_after_s=barge, words_per_s=args.words_per_s, seed=args.seed,
        voice=args.voice, token=args.token, encoding=args.encoding))

    ttfa = "n/a" if report.ttfa_ms is None else f"{report.ttfa_ms:.0f} ms"
    print(f"time to first audio: {ttfa} (first LLM word -> first audio frame)")
    if report.barged_in:
        print(f"barge-in after {report.barge_in_playback_ms:.0f} ms of playback; "
              f"cleared seq={report.cleared.seq if report.cleared else '?'}; "
              f"LLM had sent {report.words_sent}/{report.words_total} words")
    else:
        print("no barge-in: the whole reply played")
    print(f"words heard: {report.words.heard}")
    if report.barged_in:
        print(f"not heard (cut by the barge-in): {report.words.unheard}")
    print("chunks heard in full:")
    for c in report.fully_played:
        print(f"  [{c.seq}] {c.text}")
    print("chunks heard in part:")
    for c in report.partly_played:
        print(f"  [{c.seq}] ({c.heard_fraction:.0%}) {c.text}")
    if report.unplayed:
        print("synthesized, never heard:")
        for text in report.unplayed:
            print(f"  {text}")
    stall_ms = sum(s.ms for s in report.stalls)
    # A listener also runs dry when the LLM is slower than speech; the clock cannot tell which.
    print(f"stalls: {len(report.stalls)} ({stall_ms:.0f} ms; includes waiting on the LLM)")
    if report.done is not None:
        print(f"server stats: {report.done}")
    for err in report.errors:
        print(f"error: {err.code}: {err.message}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
