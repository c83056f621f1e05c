"""Start a real litestream server on a free loopback port, in this process (uvicorn's habit),
and talk to it: `run_server`, `slow_reader`, `held_reader`, and a protocol-v1 client's
transcript of what one stream received (`read_all`, `speak`).

The deterministic voice is loaded once per test session and shared by every server, so each
test pays only for the server, not for loading the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from litestream import config as config_mod
from litestream.engine import PiperVoice, Voice
from litestream.server import LitestreamServer
from litestream.server.websocket import StreamConnection
from loadtest.lib.net import free_port

_VOICE: list[PiperVoice] = []


def shared_voice() -> PiperVoice:
    """The bundled voice, deterministic (no noise), loaded once per test session: the
    `voice` fixture (conftest.py) and every server share it."""
    if not _VOICE:
        _VOICE.append(PiperVoice.load(deterministic=True))
    return _VOICE[0]


def shared_voices() -> dict[str, Voice]:
    voice = shared_voice()
    return {voice.info.id: voice}




@dataclass
class RunningServer:
    server: LitestreamServer
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def run_server(voices: Mapping[str, Voice] | None = None,
                     **overrides: Any) -> AsyncIterator[RunningServer]:
    """`async with run_server(workers=2) as srv:` -> srv.url, srv.http_url, srv.server.
    ``voices`` (default: the shared Piper voice) replaces the voices the server serves;
    ``port=srv.port`` starts one where an earlier one was (a restart)."""
    overrides.setdefault("workers", 2)
    overrides.setdefault("deterministic", True)
    overrides.setdefault("port", free_port())
    config = config_mod.build(environ={}, host="127.0.0.1", **overrides)
    server = LitestreamServer(config, voices=dict(voices) if voices else shared_voices())
    await server.start()
    try:
        yield RunningServer(server, server.port)
    finally:
        await server.close()


async def _narrow_connect(srv: RunningServer) -> tuple[ClientConnection, StreamConnection]:
    """A WebSocket whose network holds only a few KB: the client's receive buffer and the
    server's send buffer are shrunk (real sockets, real kernel), so the server's writes block
    as soon as the client stops reading. Returns the client's side and the server's."""
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    before = set(srv.server.streams)
    ws = await connect(srv.url, sock=sock)
    # The server's side, found before any text is sent: a fast server may have filled the
    # buffers and cut the stream off before a later look would find it.
    for _ in range(100):
        if set(srv.server.streams) - before:
            break
        await asyncio.sleep(0.01)
    [stream_id] = set(srv.server.streams) - before
    conn = srv.server.streams[stream_id]
    conn.request.transport.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return ws, conn


@contextlib.asynccontextmanager
async def slow_reader(srv: RunningServer, sentences: int) -> AsyncIterator[StreamConnection]:
    """A client that sends `sentences` sentences and never reads; yields the server's side
    (the network is narrowed as in `held_reader`). The client's connection is cut on the way
    out."""
    ws, conn = await _narrow_connect(srv)
    try:
        await ws.send(json.dumps({"type": "text", "text": " ".join(
            f"Sentence {i} keeps coming while nobody listens." for i in range(sentences))}))
        await asyncio.sleep(0.3)
        yield conn
    finally:
        ws.transport.abort()


@contextlib.asynccontextmanager
async def held_reader(srv: RunningServer, text: str
                      ) -> AsyncIterator[tuple[ClientConnection, StreamConnection]]:
    """A client that sends `text` and `end`, then reads nothing until the caller does
    (`read_all(ws)`), through a network that holds only a few KB: the server's writer waits
    for its socket to drain meanwhile. Yields the client's side and the server's."""
    ws, conn = await _narrow_connect(srv)
    try:
        await ws.send(json.dumps({"type": "text", "text": text}))
        await ws.send(json.dumps({"type": "end"}))
        yield ws, conn
    finally:
        ws.transport.abort()


async def until(check: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Poll `check` until it holds; TimeoutError past `timeout_s` (a bound, not a figure)."""
    async with asyncio.timeout(timeout_s):
        while not check():
            await asyncio.sleep(0.01)


# The seq of the last `chunk` event read on each connection: frames belong to it.
_current_seq: dict[int, int] = {}


@dataclass
class Transcript:
    """What one stream received, in order."""

    events: list[dict[str, Any]] = field(default_factory=list)  # control messages
    order: list[tuple[str, Any]] = field(default_factory=list)  # ("event", msg) | ("audio", seq)
    audio: dict[int, bytearray] = field(default_factory=dict)   # seq -> PCM bytes
    close_code: int | None = None

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


async def read_all(ws: ClientConnection, msgpack_enc: bool = False,
                   stop_after: str | None = None, timeout_s: float = 60) -> Transcript:
    out = Transcript()
    # Frames belong to the last `chunk` event on this connection, even one an earlier call read.
    current: int | None = _current_seq.get(id(ws))
    try:
        async with asyncio.timeout(timeout_s):
            async for frame in ws:
                if msgpack_enc:
                    assert isinstance(frame, bytes)
                    msg = msgpack.unpackb(frame)
                    if msg["type"] == "audio":
                        out.audio.setdefault(msg["seq"], bytearray()).extend(msg["pcm"])
                        out.order.append(("audio", msg["seq"]))
                        continue
                elif isinstance(frame, bytes):
                    assert current is not None, "audio before any chunk event"
                    out.audio.setdefault(current, bytearray()).extend(frame)
                    out.order.append(("audio", current))
                    continue
                else:
                    msg = json.loads(frame)
                out.events.append(msg)
                out.order.append(("event", msg))
                if msg["type"] == "chunk":
                    current = _current_seq[id(ws)] = msg["seq"]
                if stop_after and msg["type"] == stop_after:
                    return out
    except ConnectionClosed:
        pass
    out.close_code = ws.close_code
    return out


async def speak(url: str, text: str, **query: str) -> Transcript:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    async with connect(url + ("?" + qs if qs else "")) as ws:
        await ws.send(json.dumps({"type": "text", "text": text}))
        await ws.send(json.dumps({"type": "end"}))
        return await read_all(ws, msgpack_enc=query.get("encoding") == "msgpack")
