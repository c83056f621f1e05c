"""Shared sentence cache across replicas: what a Redis behind each replica's own cache gives
back, and what a lookup costs.

The voice-agent mix of loadtest/cache_bench.py (seeded agent replies: stock openers and
closers around new sentences), its replies dealt round-robin to R replicas as a balancer
would. Each replica has its own in-process cache (the default 256 MiB). Two runs over the same
replies:

- local only: every replica learns each stock phrase by synthesizing it itself;
- local + shared: a replica's miss is looked up in a real redis-server on loopback through
  litestream's SharedCache (its bounded lookup, its background write), as `--cache-url` does.

Each distinct chunk is synthesized once with the real engine and timed; both runs count that
compute for every chunk they synthesize. Printed: hits by level, compute with each, the capacity
gained (streams per core scale with 1 / compute per second of audio), and the latency of the
Redis lookups made (hits and misses), in ms.

Then first audio through real servers (`--first-audio`, on by default): two litestream servers
in this process (one worker each, the deterministic bundled voice) share the Redis; each stock
phrase is spoken on replica A (synthesized there), then on replica B, where it is a shared hit.
The time from the text sent to the first audio frame received, over a WebSocket on loopback.

    flock /tmp/ls-heavy.lock .venv/bin/python -m loadtest.shared_cache_bench
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from websockets.asyncio.client import connect

from litestream import config as config_mod
from litestream.config import default_of
from litestream.engine import PiperVoice
from litestream.metrics import Metrics
from litestream.server import LitestreamServer
from litestream.synthesis.cache import SentenceCache
from litestream.synthesis.shared_cache import SharedCache
from loadtest.cache_bench import STOCK_CLOSERS, STOCK_OPENERS, chunks_of, replies
from loadtest.lib.net import free_port
from loadtest.lib.redis_server import RedisServer
from loadtest.lib.streams import machine_info


@dataclass
class Fleet:
    chunks: int = 0
    local_hits: int = 0
    shared_hits: int = 0
    audio_s: float = 0.0
    compute_s: float = 0.0  # synthesis run (misses of every level)
    compute_all_s: float = 0.0  # synthesis with no cache at all
    lookup_ms: list[float] = field(default_factory=list)  # Redis lookups: hits
    miss_ms: list[float] = field(default_factory=list)  # Redis lookups: misses


def synthesize(voice: PiperVoice, chunk: str,
               memo: dict[str, tuple[float, np.ndarray]]) -> tuple[float, np.ndarray]:
    if chunk not in memo:
        started = time.perf_counter()
        audio = voice.synthesize(chunk)
        memo[chunk] = (time.perf_counter() - started, audio)
    return memo[chunk]


async def run(voice: PiperVoice, texts: Sequence[str], replicas: int, max_chars: int,
              memo: dict[str, tuple[float, np.ndarray]], redis_url: str | None,
              timeout_s: float) -> Fleet:
    fleet = Fleet()
    voice_id, rate = voice.info.id, voice.sample_rate
    local = [SentenceCache(default_of("cache_bytes")) for _ in range(replicas)]
    shared: list[SharedCache] = []
    if redis_url is not None:
        shared = [SharedCache(redis_url, {voice_id: voice.fingerprint}, {voice_id: rate},
                              Metrics(), ttl_s=3600, timeout_s=timeout_s)
                  for _ in range(replicas)]
    for turn, reply in enumerate(texts):
        r = turn % replicas  # round-robin, as a balancer deals new streams
        for chunk in chunks_of(reply, max_chars):
            fleet.chunks += 1
            compute_s, audio = synthesize(voice, chunk, memo)
            fleet.audio_s += len(audio) / rate
            fleet.compute_all_s += compute_s
            if local[r].get(voice_id, 1.0, chunk) is not None:
                fleet.local_hits += 1
                continue
            if shared:
                started = time.perf_counter()
                found = await shared[r].get(voice_id, 1.0, chunk)
                took_ms = (time.perf_counter() - started) * 1000
                if found is not None:
                    fleet.lookup_ms.append(took_ms)
                    fleet.shared_hits += 1
                    local[r].put(voice_id, 1.0, chunk, found.samples, rate)
                    continue
                fleet.miss_ms.append(took_ms)
            fleet.compute_s += compute_s
            local[r].put(voice_id, 1.0, chunk, audio, rate)
            if shared:
                shared[r].put(voice_id, 1.0, chunk, audio)
        for cache in shared:  # the next reply comes seconds later in life: writes have landed
            await cache.wait_writes()
    for cache in shared:
        await cache.close()
    return fleet


async def first_audio_ms(url: str, text: str) -> float:
    """One stream: the text and `end` sent, ms until its first audio frame came back."""
    async with connect(url) as ws:
        started = time.perf_counter()
        await ws.send(json.dumps({"type": "text", "text": text}))
        await ws.send(json.dumps({"type": "end"}))
        first = None
        async for frame in ws:
            if isinstance(frame, bytes) and first is None:
                first = (time.perf_counter() - started) * 1000
            elif isinstance(frame, str) and json.loads(frame)["type"] == "done":
                break
    assert first is not None, f"no audio for {text!r}"
    return first


async def first_audio(voice: PiperVoice, redis_url: str) -> tuple[list[float], list[float]]:
    """(first audio ms on replica A, synthesized; on replica B, a shared hit) per stock phrase."""
    servers = []
    for _ in range(2):
        config = config_mod.build(environ={}, host="127.0.0.1", port=free_port(), workers=1,
                                  deterministic=True, kokoro=False, cache_url=redis_url)
        server = LitestreamServer(config, voices={voice.info.id: voice})
        await server.start()
        servers.append(server)
    a, b = (f"ws://127.0.0.1:{server.port}/v1/stream" for server in servers)
    made: list[float] = []
    hit: list[float] = []
    try:
        for phrase in (*STOCK_OPENERS, *STOCK_CLOSERS):
            made.append(await first_audio_ms(a, phrase))
            shared = servers[0].shared_cache
            if shared is not None:
                await shared.wait_writes()
            hit.append(await first_audio_ms(b, phrase))
        hits = servers[1].metrics.registry.get_sample_value("litestream_shared_cache_hits_total")
        assert hits == len(hit), f"{hits} shared hits on replica B for {len(hit)} phrases"
    finally:
        for server in servers:
            await server.close()
    return made, hit


def quantiles(values: Sequence[float]) -> str:
    if not values:
        return "none"
    ordered = np.sort(np.asarray(values))
    return (f"p50 {np.percentile(ordered, 50):.2f}, p99 {np.percentile(ordered, 99):.2f}, "
            f"max {ordered[-1]:.2f} ms (n={len(ordered)})")


def report(name: str, fleet: Fleet) -> str:
    gain = fleet.compute_all_s / fleet.compute_s if fleet.compute_s else float("inf")
    return (f"{name:<16} chunks {fleet.chunks}: local hits {fleet.local_hits} "
            f"({fleet.local_hits / fleet.chunks:.0%}), shared hits {fleet.shared_hits} "
            f"({fleet.shared_hits / fleet.chunks:.0%}); compute {fleet.compute_s:.2f} s of "
            f"{fleet.compute_all_s:.2f} s without any cache -> capacity x{gain:.2f}")


async def main_async(args: argparse.Namespace) -> int:
    meta = machine_info()
    voice = PiperVoice.load(deterministic=True)
    texts = replies(args.turns, args.seed)
    memo: dict[str, tuple[float, np.ndarray]] = {}
    counts = [int(n) for n in str(args.replicas).split(",") if n]
    lines: list[str] = []
    for replicas in counts:
        alone = await run(voice, texts, replicas, args.max_chars, memo, None, 0.0)
        with RedisServer.start(args.redis_port, maxmemory="256mb") as redis:
            together = await run(voice, texts, replicas, args.max_chars, memo, redis.url,
                                 args.timeout_ms / 1000)
        saved = alone.compute_s / together.compute_s if together.compute_s else float("inf")
        lines += [f"{replicas} replicas:",
                  "  " + report("local only", alone),
                  "  " + report("local + shared", together),
                  f"  shared over local only: compute {alone.compute_s:.2f} s -> "
                  f"{together.compute_s:.2f} s, capacity x{saved:.2f}",
                  f"  redis lookups, hits:   {quantiles(together.lookup_ms)}",
                  f"  redis lookups, misses: {quantiles(together.miss_ms)}"]
    if args.first_audio:
        with RedisServer.start(args.redis_port, maxmemory="256mb") as redis:
            made, hit = await first_audio(voice, redis.url)
        lines += [f"first audio of {len(made)} stock phrases, 2 servers of 1 worker:",
                  f"  replica A, synthesized:  {quantiles(made)}",
                  f"  replica B, shared hit:   {quantiles(hit)}"]
    print(f"machine {meta['node']} | {meta['cpu']} | nproc {meta['nproc']} | python "
          f"{meta['python']} | load avg 1m {meta['loadavg_1m_at_start']} at start, "
          f"{os.getloadavg()[0]:.2f} at end")
    print(f"voice {voice.info.id}, one thread; {args.turns} agent replies (seed {args.seed}) "
          f"dealt round-robin to the replicas; {len(memo)} distinct chunks; redis-server on "
          f"loopback, lookups bounded to {args.timeout_ms:.0f} ms")
    for line in lines:
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.shared_cache_bench")
    parser.add_argument("--turns", type=int, default=120, help="agent replies")
    parser.add_argument("--replicas", default="3,10",
                        help="replica counts to compare (comma list)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-chars", type=int, default=default_of("max_chunk_chars"))
    parser.add_argument("--timeout-ms", type=float, default=default_of("cache_timeout_ms"))
    parser.add_argument("--first-audio", action=argparse.BooleanOptionalAction, default=True,
                        help="also time first audio through two real servers sharing Redis")
    parser.add_argument("--redis-port", type=int, default=None,
                        help="port for the redis-server it starts (default: a free one)")
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
