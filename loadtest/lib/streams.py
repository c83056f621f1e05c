"""Realtime load test: N simulated listeners against a litestream server: the library behind
`python -m loadtest.realtime` (its command line is loadtest/realtime.py).

Each stream speaks the raw protocol-v1 (json encoding) and plays its audio in simulated real
time: playback starts at the first audio frame and advances with the wall clock. A stall is
time the listener spent with an empty buffer after playback started and before `done`
(protocol-v1: Timing promise); it is measured when each audio frame arrives.

Layout (docs/style.md: pure cores): the accounting is pure and takes times as arguments --
`StreamRecorder` (one listener; wraps `litestream.client.PlaybackClock`), `percentile`,
`summarize`, `arrival_offsets`, `capacity_search` with an injected probe, in
loadtest/lib/recorder.py. The asyncio part here (`run_stream`, `run_load`) only moves frames from
the socket into the recorder with a timestamp.

Timing claims are printed, never asserted (docs/style.md: tests). The listener runs on the
same machine as the server: on a 2-core box the client's own CPU use is part of the figures."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import platform
import statistics
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from litestream.client import EventDecoder, build_url
from litestream.protocol import Encoding
from loadtest.lib.recorder import (
    StreamRecorder,
    StreamResult,
    Summary,
    arrival_offsets,
    summarize,
)
from loadtest.lib.texts import text_for, words

DEFAULT_URL = "ws://127.0.0.1:8765/v1/stream"
REPLICA_HEADER = "X-Litestream-Replica"
MAX_STREAMS_HARD = 1024  # a bound on any single run, whatever the flags say


# ---------------------------------------------------------------- the machine

def machine_info() -> dict[str, Any]:
    model = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"node": platform.node(), "cpu": model or "unknown", "nproc": os.cpu_count() or 0,
            "python": platform.python_version(), "loadavg_1m_at_start": loadavg()}


def loadavg() -> float | None:
    """1-minute load average: on a shared box, other work skews every figure; say so."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None



# ---------------------------------------------------------------- asyncio: the listeners

def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise SystemExit(f"refusing non-loopback host {host!r}; pass --allow-remote to load it")


async def connect_recorded(url: str, result: StreamResult, *, open_timeout: float,
                           max_queue: int | None = 16) -> Any:
    """The listener's WebSocket, or None with the refusal or connection error in `result`.
    A URL without a path means the stream endpoint, as for `litestream.client` (the server's
    `/` is the player page, which answers an upgrade with 200 and HTML)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    try:
        ws = await connect(build_url(url, {}), open_timeout=open_timeout, proxy=None,
                           max_size=8 * 1024 * 1024, compression=None, max_queue=max_queue)
    except InvalidStatus as exc:
        result.refused_status = exc.response.status_code
        result.retry_after = exc.response.headers.get("Retry-After")
    except (OSError, TimeoutError) as exc:
        result.connect_error = f"{type(exc).__name__}: {exc}"
    else:
        # HAProxy in front of a fleet names the replica it chose (deploy/fleet/haproxy.cfg).
        result.replica = ws.response.headers.get(REPLICA_HEADER) if ws.response else None
        return ws
    return None


async def run_stream(url: str, mode: str, recorder: StreamRecorder, *, token_rate: float,
                     timeout_s: float) -> StreamResult:
    """One listener: connect, send the text, record every frame with its arrival time."""
    from websockets.exceptions import ConnectionClosed

    loop = asyncio.get_running_loop()
    now = loop.time
    result = recorder.result
    ws = await connect_recorded(url, result, open_timeout=min(timeout_s, 30))
    if ws is None:
        return result

    text = text_for(mode)

    async def send() -> None:
        if mode == "tokens":
            # Word by word on a fixed schedule, no flush; `end` speaks the tail.
            start = now()
            for i, token in enumerate(words(text)):
                delay = start + i / token_rate - now()
                if delay > 0:
                    await asyncio.sleep(delay)
                recorder.on_text_sent(now())
                await ws.send(json.dumps({"type": "text", "text": token}))
        else:
            recorder.on_text_sent(now())
            await ws.send(json.dumps({"type": "text", "text": text}))
        await ws.send(json.dumps({"type": "end"}))

    async def receive() -> None:
        decoder = EventDecoder(Encoding.JSON)
        while True:
            frame = await ws.recv()
            t = now()  # taken at arrival, before decoding
            recorder.on_event(decoder.feed(frame), t)

    sender = asyncio.create_task(send())
    try:
        async with asyncio.timeout(timeout_s):
            try:
                await receive()
            except ConnectionClosed as exc:
                recorder.on_close(exc.rcvd.code if exc.rcvd is not None else 1006)
    except TimeoutError:
        result.timed_out = True
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
            await sender
        await ws.close()
    return result


async def run_load(url: str, *, streams: int, arrival: str = "burst", text: str = "paragraph",
                   token_rate: float = 8.0, seed: int = 1, timeout_s: float = 300.0,
                   mix: Sequence[tuple[str, str]] = (),
                   ) -> tuple[Summary, list[StreamResult]]:
    """N listeners arriving as `arrival` says; returns the summary and every stream's result.
    `mix` ((voice, text), ...) gives stream i the i-th pair, round robin, instead of `text`."""
    if not 1 <= streams <= MAX_STREAMS_HARD:
        raise ValueError(f"streams must be 1..{MAX_STREAMS_HARD}")
    if token_rate <= 0:
        raise ValueError("token rate must be > 0")
    text_for(text)  # validate early
    offsets = arrival_offsets(streams, arrival, seed)
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def one(i: int, offset: float) -> StreamResult:
        delay = t0 + offset - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        voice, mode = mix[i % len(mix)] if mix else ("", text)
        target = build_url(url, {"voice": voice}) if voice else url
        return await run_stream(target, mode, StreamRecorder(i, offset),
                                token_rate=token_rate, timeout_s=timeout_s)

    results = await asyncio.gather(*(one(i, off) for i, off in enumerate(offsets)))
    return summarize(results, loop.time() - t0), list(results)


# ---------------------------------------------------------------- the 1-thread RTF bar

def measure_rtf(text: str, runs: int = 3) -> dict[str, Any]:
    """RTF of the bundled voice on one intra-op thread, in this process, chunked the way the
    server chunks (the segmenter's sentences), median of `runs`."""
    from litestream.engine import PiperVoice
    from litestream.text.segmenter import Segmenter

    voice = PiperVoice.load(intra_op_threads=1)
    seg = Segmenter()
    chunks = seg.feed(text) + seg.flush()
    rtfs: list[float] = []
    audio_s = 0.0
    for _ in range(max(1, runs)):
        t = time.perf_counter()
        samples = sum(len(voice.synthesize(c)) for c in chunks)
        compute_s = time.perf_counter() - t
        audio_s = samples / voice.sample_rate
        rtfs.append(compute_s / audio_s)
    rtf = statistics.median(rtfs)
    cores = os.cpu_count() or 1
    return {"rtf_1_thread": rtf, "runs": rtfs, "audio_s": audio_s, "cores": cores,
            "bar_streams": 0.75 * cores / rtf}


# ---------------------------------------------------------------- CLI
