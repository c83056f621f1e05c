"""Clients that misbehave on purpose, over real sockets: whatever they send, the server lets
go of them in bounded time and memory, and says what protocol-v1 says.

The client here is hand-written WebSocket framing over a raw socket, because a well-kept
client library will not misbehave: it answers pings, reads its socket, and frames correctly.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct

from websockets.asyncio.client import connect

from litestream.server.websocket import StreamConnection
from tests.serverutil import RunningServer, read_all, run_server, until


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One masked client frame (RFC 6455 5.2), FIN set, a zero mask: the payload as is."""
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, 0x80 | size))
    else:
        header = bytes((0x80 | opcode, 0x80 | 126)) + struct.pack("!H", size)
    return header + b"\0\0\0\0" + payload


TEXT, PING = 0x1, 0x9


async def raw_stream(srv: RunningServer) -> tuple[socket.socket, StreamConnection]:
    """A WebSocket handshake on a raw socket; returns the socket and the server's side."""
    sock = socket.create_connection(("127.0.0.1", srv.port))
    key = base64.b64encode(os.urandom(16))
    sock.sendall(b"GET /v1/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 b"Sec-WebSocket-Key: " + key + b"\r\n\r\n")
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(sock, 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    await until(lambda: len(srv.server.streams) == 1, timeout_s=10)
    [conn] = srv.server.streams.values()
    return sock, conn


async def test_a_client_that_pings_without_reading_is_still_read() -> None:
    """A client that sends pings and does not read their pongs fills its socket with them.
    The server goes on reading what it sends: only the newest ping is answered, and by the
    stream's writer, whose waits on the socket the slow-reader rule bounds. (aiohttp's own
    autoping awaited the socket's drain in the reader with no bound: nothing more was read,
    and a client that never read again held its stream, socket and quota slot forever, with
    no idle timeout either.)"""
    async with run_server(slow_reader_timeout_s=30.0) as srv:
        sock, conn = await raw_stream(srv)
        loop = asyncio.get_running_loop()
        try:
            pings = client_frame(PING, b"p" * 125) * 1000
            for _ in range(100):  # 13 MB of pings at most: more than the network holds
                try:
                    async with asyncio.timeout(1.0):
                        await loop.sock_sendall(sock, pings)
                except TimeoutError:
                    break  # the server stopped reading
            text = client_frame(TEXT, json.dumps({"type": "text", "text": "Still here."}).encode())
            end = client_frame(TEXT, json.dumps({"type": "end"}).encode())
            sock.setblocking(True)
            sending = asyncio.create_task(asyncio.to_thread(sock.sendall, text + end))
            # Read by the server while the client still reads nothing.
            await until(lambda: conn.session.chars > 0, timeout_s=20)
            await sending
            reader = asyncio.create_task(asyncio.to_thread(read_until_close, sock))
            assert await reader == 1000
        finally:
            sock.close()


def read_until_close(sock: socket.socket) -> int | None:
    """Read server frames (pongs, events, audio) until its close frame: the close code."""
    stream = sock.makefile("rb")
    while True:
        head = stream.read(2)
        if len(head) < 2:
            return None
        size = head[1] & 0x7F
        if size == 126:
            size = struct.unpack("!H", stream.read(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", stream.read(8))[0]
        payload = stream.read(size)
        if head[0] & 0x0F == 0x8:
            code: int = struct.unpack("!H", payload[:2])[0]
            return code


async def test_a_stream_flooding_messages_leaves_its_neighbour_on_the_same_address_served(
) -> None:
    """The message rate is per key (or address), shared by its streams. One stream sending
    messages as fast as it can took the whole budget: a listener beside it on the same
    address had most of its sentences refused `rate_limited`, never spoken. Now one stream may
    use at most half (security.STREAM_SHARE): the flood is refused, the neighbour is not."""
    sentences = [f"Sentence number {n} is here." for n in range(4)]
    async with (run_server(messages_per_s=40.0) as srv, connect(srv.url) as flood,
                connect(srv.url) as listener):
        flooding = True
        refused_flood = 0

        async def send_flood() -> None:
            while flooding:
                for _ in range(20):
                    await flood.send('{"type": "config", "speed": 1.0}')
                await asyncio.sleep(0)

        async def read_flood() -> None:
            nonlocal refused_flood
            async for message in flood:
                if isinstance(message, str) and '"rate_limited"' in message:
                    refused_flood += 1

        tasks = [asyncio.create_task(send_flood()), asyncio.create_task(read_flood())]
        await asyncio.sleep(0.5)  # the flood has spent the address's burst by now
        for text in sentences:
            await listener.send(json.dumps({"type": "text", "text": text}))
            await asyncio.sleep(0.1)
        await listener.send(json.dumps({"type": "end"}))
        heard = await read_all(listener)
        flooding = False
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert refused_flood > 0  # the premise: the flood went over the rate
    assert [e["code"] for e in heard.of_type("error")] == []
    assert heard.events[-1]["type"] == "done" and heard.close_code == 1000
    assert "".join(c["text"] for c in heard.of_type("chunk")) == "".join(sentences)
