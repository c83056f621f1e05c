"""One accepted protocol-v1 WebSocket: the socket loops between it and its stream session.

`StreamConnection` owns what happens on one socket after the handshake: the reader loop (with
the idle timeout), the one writer loop (with the slow-reader timeout), cutting the TCP
connection of a client that stopped reading (`carrier.Carrier`, shared with the speech
endpoint), and the stream's summary line. Like python-websockets' asyncio `Connection`, it only
moves data: every per-stream rule lives in `session.StreamSession`. The handshake, the registry
of open streams and shutdown stay in `app.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import WebSocketError, WSMsgType, web

from litestream.errors import CloseCode
from litestream.logs import SessionAdapter
from litestream.server.carrier import Carrier, summarize
from litestream.session import (
    ClientFrame,
    Disconnected,
    ReceiveTimeout,
    SendAudio,
    SendMessage,
    SendTimeout,
    StreamSession,
    StreamState,
)
from litestream.synthesis import StreamLink


@dataclass(eq=False)
class StreamConnection(Carrier):
    """One accepted WebSocket and the stream session it carries (server side)."""

    ws: web.WebSocketResponse
    request: web.Request
    session: StreamSession
    link: StreamLink
    client: str
    log: SessionAdapter
    now: Callable[[], float]  # the event loop's clock, in seconds
    dispatch: Callable[[], None]  # after a client frame: hand new sentences to idle workers
    idle_timeout_s: float  # no client message for this long: the session is told
    slow_reader_timeout_s: float  # one send blocked this long: the client is cut off
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)  # the sender has work
    # A close this connection sent that its session did not choose: a frame the WebSocket
    # library refused (1009 over max_message_bytes, 1007 text that is not UTF-8), or 1011
    # when the writer itself failed.
    closed_with: int | None = None
    # The payload of the newest client ping not answered yet: the writer answers it, under
    # its slow-reader timeout (RFC 6455 5.5.3 lets only the newest of several be answered).
    pong: bytes | None = None

    @property
    def id(self) -> str:
        return self.session.id

    async def run(self) -> None:
        """Carry the stream until the connection is gone and the sender has stopped."""
        sender = asyncio.create_task(self._send_loop())
        try:
            await self._receive_loop()
        finally:
            self.feed(Disconnected(), self.now())
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    @property
    def close_code(self) -> int:
        """The code the stream closed with: the one the server chose (its session's, else the
        library's for a frame it refused), else the client's (1006: it vanished).

        Not the WebSocket's own `close_code` first: aiohttp records 1000 for a close this
        server starts while the reader waits (its reader sees a CLOSING message), so a stream
        closed 1008 or 1011 was logged and counted (litestream_streams_total) as normal, and
        one closed 1009 as abnormal."""
        code: int | None = self.session.close_code
        if code is None:
            code = self.closed_with
        if code is None:
            code = self.ws.close_code
        return CloseCode.NORMAL if code is None else code

    def summarize(self, underrun_ms: int, dropped: int) -> None:
        """Log the stream's one summary line."""
        summarize(self.log.logger, self.session, self.link, underrun_ms=underrun_ms,
                  close_code=self.close_code, dropped=dropped)

    async def _receive_loop(self) -> None:
        """Read client messages until the connection is gone. Reading goes on after `end`
        (a `clear` may still interrupt what is left to speak); the close handshake of a close
        the session asked for is read by the sender's `close()`."""
        idle = self.idle_timeout_s
        while True:
            try:
                msg = await self.ws.receive(timeout=idle)
            except TimeoutError:
                self.feed(ReceiveTimeout(), self.now())
                continue
            if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                self.feed(ClientFrame(msg.data), self.now())
                self.dispatch()
            elif msg.type is WSMsgType.PING:
                # Not aiohttp's autoping: it writes the pong here and awaits the socket's drain
                # with no bound, so a client that sent pings and stopped reading held this loop,
                # its stream and its socket forever (no idle timeout, no slow-reader cut).
                self.pong = msg.data
                self.wakeup.set()
            elif msg.type is WSMsgType.PONG:
                pass  # an answer to the heartbeat (aiohttp saw it arrive)
            else:  # CLOSE, CLOSING, CLOSED or ERROR (a message over max_msg_size: 1009 sent)
                if msg.type is WSMsgType.ERROR and isinstance(msg.data, WebSocketError):
                    self.closed_with = msg.data.code  # aiohttp closed with this code
                return

    async def _send_loop(self) -> None:
        """The one writer of a stream: sends what its session queued, in order.

        Everything queued when the writer wakes goes to the socket in one write (framed
        here, `ws_frames`: one message per SendMessage and per audio frame, a SendAudio
        holding a piece's frames): a decode window's frames cost one system call, not one
        each (docs/benchmarks.md, "One process, 1,000 listeners"). Backpressure: when the
        socket's buffer is over its high-water mark the writer waits for it to drain. A
        client that stops reading for `slow_reader_timeout_s` is cut off, and the session
        cuts off one with more than `send_buffer_s` of audio waiting; so memory stays
        bounded (the scheduler also stops synthesizing past its lookahead cap for a stream
        whose audio piles up).
        """
        timeout = self.slow_reader_timeout_s
        session, ws, request = self.session, self.ws, self.request
        try:
            while True:
                # Cleared before the outbox is read, never after: whatever the session queues
                # while this pass writes, or waits for the socket to drain, sets it again, so
                # the wait below returns at once and the next pass sends it. (Cleared after a
                # drain, it lost what was queued during the drain: the last audio, `done` and
                # the close of a stream whose client read slowly, which then stayed open
                # until its client gave up.)
                self.wakeup.clear()
                items, end = session.take_outgoing()
                parts = ws_frames(items)
                items.clear()  # what waits below holds no audio (nor parts, once written)
                if self.pong is not None:
                    parts += ws_frame(self.pong, _FIN_PONG)
                    self.pong = None
                if parts:
                    transport = request.transport
                    if ws.closed or transport is None or transport.is_closing():
                        return  # the client is gone, or the connection is closing
                    transport.writelines(parts)
                    parts.clear()
                    if request.protocol.writing_paused:
                        try:
                            async with asyncio.timeout(timeout):
                                await request.writer.drain()
                        except TimeoutError:
                            self.log.warning("client stopped reading for %.0f s; closing",
                                             timeout)
                            self.feed(SendTimeout(), self.now())
                            self.abort()
                            return
                if end is not None:
                    if end.abort:
                        self.abort()
                    else:
                        await ws.close(code=end.code, message=end.reason.encode())
                    return
                if session.state is StreamState.CLOSED:
                    return
                await self.wakeup.wait()
        except (ConnectionError, RuntimeError):  # the client is gone (aiohttp raises both)
            return
        except Exception:  # a bug must cost this stream only, never the server
            self.log.exception("sender failed")
            self.closed_with = CloseCode.INTERNAL_ERROR
            with contextlib.suppress(Exception):
                await ws.close(code=CloseCode.INTERNAL_ERROR, message=b"internal error")


def ws_frames(items: list[SendMessage | SendAudio]) -> list[bytes | memoryview]:
    """The items as WebSocket messages for one write, headers and payloads: one message per
    SendMessage and per audio frame (a SendAudio holds a piece's frames: split here, as
    views of its payload)."""
    parts: list[bytes | memoryview] = []
    for item in items:
        if type(item) is SendAudio:
            parts += ws_audio_frames(item)
        else:
            parts += ws_frame(item.payload)
    return parts


def ws_audio_frames(item: SendAudio) -> list[bytes | memoryview]:
    """Its frames as binary messages (`SendAudio.frames`): every full frame shares one
    header."""
    frames = item.frames()
    header, size = ws_frame(frames[0])[0], len(frames[0])
    parts: list[bytes | memoryview] = []
    append = parts.append
    for frame in frames:
        append(header if len(frame) == size else ws_frame(frame)[0])
        append(frame)
    return parts


# A whole message's first byte: FIN + opcode (RFC 6455 5.2).
_FIN_TEXT, _FIN_BINARY, _FIN_PONG = 0x81, 0x82, 0x8A


def ws_frame(payload: str | bytes | memoryview,
             first: int | None = None) -> tuple[bytes, bytes | memoryview]:
    """One unmasked server-to-client WebSocket message (RFC 6455 5.2): its header and its
    payload, a text frame for a str and a binary frame for bytes (`first`: another first
    byte, a pong's). What aiohttp's writer writes for `send_str`/`send_bytes`/`pong` without
    compression, which these streams never use."""
    data: bytes | memoryview
    if isinstance(payload, str):
        data, kind = payload.encode(), _FIN_TEXT
    else:
        data, kind = payload, _FIN_BINARY
    first = kind if first is None else first
    size = len(data)
    if size < 126:
        return bytes((first, size)), data
    if size < 65536:
        return _HEADER_16(first, 126, size), data
    return _HEADER_64(first, 127, size), data


_HEADER_16 = struct.Struct("!BBH").pack
_HEADER_64 = struct.Struct("!BBQ").pack
