"""A scripted protocol-v1 client for the fault and endurance runs, and the frames it sends.

`speak` sends a fixed list of frames (json encoding) and records what comes back in a
`loadtest.lib.recorder.StreamRecorder`; it can also stop reading, drop the TCP connection
mid-stream, pace its frames, or retry a refused handshake. `text_msgs` builds ordinary
messages; `fuzz_frames` and `SPEAKABLE_FUZZ` malformed and hostile ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Callable, Sequence

from litestream.client import Audio, EventDecoder
from litestream.protocol import Encoding
from loadtest.lib.recorder import StreamRecorder, StreamResult


async def speak(url: str, index: int, messages: Sequence[str | bytes], *, timeout_s: float = 120,
                read: bool = True, abort_after_s: float | None = None,
                pace_s: float = 0.0, playing: asyncio.Event | None = None,
                retries: int = 0) -> StreamResult:
    """One client: send `messages` (raw frames, json encoding), record what comes back.

    `read=False`: never read (a client that stops reading). `abort_after_s`: drop the TCP
    connection without a close frame that long after the first message. `playing` is set at
    its first audio (or when it ends without any)."""
    try:
        for _ in range(retries):  # a refused handshake (admission) may try again shortly
            result = await _speak(url, index, messages, timeout_s=timeout_s, read=read,
                                  abort_after_s=abort_after_s, pace_s=pace_s, playing=playing)
            if result.refused_status != 503:
                return result
            await asyncio.sleep(0.5)
        return await _speak(url, index, messages, timeout_s=timeout_s, read=read,
                            abort_after_s=abort_after_s, pace_s=pace_s, playing=playing)
    finally:
        if playing is not None:
            playing.set()


async def _speak(url: str, index: int, messages: Sequence[str | bytes], *, timeout_s: float,
                 read: bool, abort_after_s: float | None, pace_s: float,
                 playing: asyncio.Event | None) -> StreamResult:
    from websockets.exceptions import ConnectionClosed

    from loadtest.lib.streams import connect_recorded

    loop = asyncio.get_running_loop()
    recorder = StreamRecorder(index)
    result = recorder.result
    ws = await connect_recorded(url, result, open_timeout=30, max_queue=None if read else 1)
    if ws is None:
        return result

    async def send() -> None:
        for message in messages:
            recorder.on_text_sent(loop.time())
            await ws.send(message)
            if pace_s:
                await asyncio.sleep(pace_s)

    async def receive() -> None:
        decoder = EventDecoder(Encoding.JSON)
        while True:
            frame = await ws.recv()
            t = loop.time()
            event = decoder.feed(frame)
            recorder.on_event(event, t)
            if isinstance(event, Audio) and playing is not None:
                playing.set()

    try:
        async with asyncio.timeout(timeout_s):
            if abort_after_s is not None:
                await send()
                await asyncio.sleep(abort_after_s)
                ws.transport.abort()
                result.close_code = 1006
            elif not read:
                await send()
                await ws.wait_closed()
                result.close_code = ws.close_code
            else:
                sender = asyncio.create_task(send())
                try:
                    await receive()
                except ConnectionClosed as exc:
                    recorder.on_close(exc.rcvd.code if exc.rcvd is not None else 1006)
                finally:
                    sender.cancel()
                    with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                        await sender
    except TimeoutError:
        result.timed_out = True
    finally:
        with contextlib.suppress(Exception):
            await ws.close()
    return result


def text_msgs(text: str, *, end: bool = True) -> list[str]:
    out = [json.dumps({"type": "text", "text": text})]
    if end:
        out.append(json.dumps({"type": "end"}))
    return out


# ---------------------------------------------------------------- fuzzed frames

def fuzz_frames(rng: random.Random, n: int) -> list[str | bytes]:
    """Malformed and hostile messages (protocol-v1 says each gets an error, never a crash)."""
    pool: list[Callable[[], str | bytes]] = [
        lambda: "{not json",
        lambda: json.dumps([1, 2, 3]),
        lambda: json.dumps({"type": "nope"}),
        lambda: json.dumps({"type": "text"}),
        lambda: json.dumps({"type": "text", "text": 42}),
        lambda: json.dumps({"type": "text", "text": "x", "flush": "yes"}),
        lambda: json.dumps({"type": "config", "speed": 1e308}),
        lambda: json.dumps({"type": "config", "speed": -1}),
        lambda: json.dumps({"type": "config", "voice": "no-such-voice"}),
        lambda: json.dumps({"type": "config", "frame_ms": "ten"}),
        lambda: json.dumps({"type": "flush", "extra": {"deep": [None] * 50}}),
        lambda: bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))),
        lambda: "\x00\x01\x02",
    ]
    return [rng.choice(pool)() for _ in range(n)]


# Speakable but hostile: a lone surrogate, control and combining characters, emoji and CJK.
SPEAKABLE_FUZZ: tuple[str, ...] = (
    json.dumps({"type": "text", "text": "Before \ud800 after."}, ensure_ascii=True),
    json.dumps({"type": "text", "text": "\u200b\u202e\ufeff e\u0301\u0302 \U0001F600 \u4e00. "}),
    json.dumps({"type": "text", "text": "Fine words after the noise."}),
)
