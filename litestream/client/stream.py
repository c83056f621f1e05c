"""Python client for litestream's protocol v1, plus a pure playback clock.

Three layers, each usable on its own:

- `EventDecoder` (sans I/O): WebSocket frames in, typed frozen events out. It owns the one
  client-side subtlety of protocol-v1: with ``encoding=json`` a binary frame is raw PCM of the
  most recent ``chunk``'s seq (protocol-v1: Encodings).
- `connect()` / `ClientStream` (asyncio, thin): handshake with query parameters and a Bearer token,
  send methods, and ``async for event in stream``. Handshake refusals become typed exceptions.
- `PlaybackClock` (pure, the caller passes ``now``; it lives in `client/playback.py` and the
  events in `client/events.py`, both re-exported by the package): simulates a listener that starts
  playing at the first audio frame and plays in real time; reports stalls, chunk lateness and
  which chunks were fully heard. The voice agent, the locust user and the realtime benchmark
  share it.

`synthesize()` is the blocking one-shot helper built on the above.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import numpy as np
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from litestream.client.events import (
    Audio,
    Chunk,
    Cleared,
    Done,
    DoneStats,
    Error,
    Event,
    Flushed,
    Ready,
    Word,
    Words,
)
from litestream.errors import LitestreamError
from litestream.protocol import PCM_FORMATS, STREAM_PATH, Encoding, decode, encode

logger = logging.getLogger("litestream.client")



# ---------------------------------------------------------------- exceptions

class HandshakeRefused(LitestreamError):
    """The server answered the upgrade with plain HTTP (protocol-v1: Endpoint, refusals)."""

    def __init__(self, status: int, body: Any, retry_after_s: float | None = None) -> None:
        self.status = status
        self.body = body  # the decoded JSON body, or its text when it is not JSON
        self.retry_after_s = retry_after_s
        super().__init__(f"handshake refused: HTTP {status}: {_detail(body)}")


def _detail(body: Any) -> str:
    """The human part of a refusal body: {"error": {"message": ...}}, {"message": ...} or text."""
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict):
            return str(inner.get("message") or inner.get("code") or inner)
        return str(body.get("message") or inner or body)
    return str(body).strip()


class BadRequest(HandshakeRefused):
    """400: a query parameter has a bad value; the body names it."""


class Unauthorized(HandshakeRefused):
    """401: the API key is missing or wrong."""


class Forbidden(HandshakeRefused):
    """403: the Origin is not allowed."""


class RateLimited(HandshakeRefused):
    """429: the key is over its quota; retry after `retry_after_s`."""


class Unavailable(HandshakeRefused):
    """503: draining or no capacity; retry after `retry_after_s`."""


_REFUSALS: dict[int, type[HandshakeRefused]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 429: RateLimited, 503: Unavailable,
}


class StreamClosed(LitestreamError):
    """The server closed the stream with a code other than 1000 before `done`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"stream closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class StreamError(LitestreamError):
    """A fatal `error` message, raised by helpers that do not hand events to the caller."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _refusal(exc: InvalidStatus) -> HandshakeRefused:
    response = exc.response
    raw = response.body or b""
    body: Any
    try:
        body = json.loads(raw)
    except ValueError:
        body = raw.decode("utf-8", "replace")
    retry_after_s: float | None = None
    header = response.headers.get("Retry-After")
    if header is not None:
        try:
            retry_after_s = float(header)
        except ValueError:
            # An HTTP date is legal too; we do not guess a clock offset, the caller gets None.
            retry_after_s = None
    cls = _REFUSALS.get(response.status_code, HandshakeRefused)
    return cls(response.status_code, body, retry_after_s)


# ---------------------------------------------------------------- sans-IO decoding

def _event_from_message(obj: Mapping[str, Any], fmt: str) -> Event | None:
    kind = obj.get("type")
    if kind == "ready":
        return Ready(
            protocol=int(obj["protocol"]), session=str(obj["session"]), voice=str(obj["voice"]),
            sample_rate=int(obj["sample_rate"]), format=str(obj["format"]),
            channels=int(obj["channels"]), frame_ms=int(obj["frame_ms"]),
        )
    if kind == "chunk":
        return Chunk(seq=int(obj["seq"]), text=str(obj["text"]),
                     start_ms=int(obj["start_ms"]), duration_ms=int(obj["duration_ms"]))
    if kind == "words":
        return Words(seq=int(obj["seq"]), words=tuple(
            Word(text=str(w["text"]), start_ms=int(w["start_ms"]), end_ms=int(w["end_ms"]),
                 char_start=int(w["char_start"]), char_end=int(w["char_end"]))
            for w in obj.get("words") or ()))
    if kind == "audio":
        return Audio(seq=int(obj["seq"]), pcm=bytes(obj["pcm"]), format=fmt)
    if kind == "flushed":
        return Flushed(seq=int(obj["seq"]))
    if kind == "cleared":
        return Cleared(seq=int(obj["seq"]))
    if kind == "done":
        stats = obj.get("stats") or {}
        ttfa = stats.get("ttfa_ms")
        return Done(DoneStats(
            chars=int(stats.get("chars", 0)), chunks=int(stats.get("chunks", 0)),
            audio_ms=int(stats.get("audio_ms", 0)),
            ttfa_ms=None if ttfa is None else int(ttfa),
            underrun_ms=int(stats.get("underrun_ms", 0)),
        ))
    if kind == "error":
        return Error(code=str(obj.get("code", "")), message=str(obj.get("message", "")),
                     fatal=bool(obj.get("fatal", False)))
    return None


class EventDecoder:
    """Frames in, events out; no I/O. Unknown message types are skipped (forward compat)."""

    def __init__(self, encoding: Encoding | str = Encoding.JSON) -> None:
        self.encoding = Encoding(encoding)
        self.format = "s16le"  # updated by `ready`; audio frames decode with it
        self.sample_rate: int | None = None
        self._last_seq = -1  # json audio carries no seq: it belongs to the latest chunk
        self._asked: str | None = None  # a format configured before any text: `ready` is older

    def ask_format(self, fmt: str) -> None:
        """A `config` changed the format before the stream's first text: every chunk comes in
        it, even if the `ready` read after this call still names the handshake's."""
        self.format = self._asked = fmt

    def feed(self, frame: str | bytes) -> Event | None:
        if self.encoding is Encoding.JSON and isinstance(frame, bytes):
            return Audio(seq=self._last_seq, pcm=frame, format=self.format)
        obj = decode(frame, self.encoding)
        event = _event_from_message(obj, self.format)
        if isinstance(event, Ready):
            self.format = self._asked or event.format
            self.sample_rate = event.sample_rate
        elif isinstance(event, Chunk):
            self._last_seq = event.seq
        elif event is None:
            logger.debug("skipping unknown server message type %r", obj.get("type"))
        return event


# ---------------------------------------------------------------- asyncio stream

def build_url(url: str, params: Mapping[str, Any]) -> str:
    """Add query parameters (None values skipped) to a ws:// URL, keeping any already there.

    A URL without a path (``ws://host:8765``) means the stream endpoint: the server's ``/`` is
    the browser player's page, which would answer an upgrade with HTML.
    """
    parts = urlsplit(url)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = "&".join(q for q in (parts.query, extra) if q)
    path = parts.path if parts.path not in ("", "/") else STREAM_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, query, parts.fragment))


class ClientStream:
    """One open protocol-v1 stream, client side. Made by `connect()`; not constructed directly."""

    def __init__(self, ws: ClientConnection, encoding: Encoding) -> None:
        self._ws = ws
        self.encoding = encoding
        self._decoder = EventDecoder(encoding)
        self._finished = False
        self._text_sent = False
        self.ready: Ready | None = None  # set once the `ready` event has been read
        self.done: Done | None = None

    @property
    def format(self) -> str:
        return self._decoder.format

    @property
    def sample_rate(self) -> int | None:
        return self._decoder.sample_rate

    async def _send(self, message: Mapping[str, Any]) -> None:
        await self._ws.send(encode(message, self.encoding))

    async def send_text(self, text: str, flush: bool = False) -> None:
        message: dict[str, Any] = {"type": "text", "text": text}
        if flush:
            message["flush"] = True
        self._text_sent = True
        await self._send(message)

    async def flush(self) -> None:
        await self._send({"type": "flush"})

    async def clear(self) -> None:
        await self._send({"type": "clear"})

    async def end(self) -> None:
        await self._send({"type": "end"})

    async def configure(self, **fields: Any) -> None:
        """Send a `config` message; fields left None are not sent.

        ``format`` only before the first text. The server applies a new format from the next
        chunk it cuts, which no event names, so this client could not tell which frames are in
        which format and would decode some of them wrongly; open another stream instead.
        """
        fmt = fields.get("format")
        if fmt is not None and fmt not in PCM_FORMATS:
            raise ValueError(f"format must be one of {', '.join(PCM_FORMATS)}, not {fmt!r}")
        if fmt is not None and fmt != self.format and self._text_sent:
            raise ValueError("this client cannot change format after the stream's first text "
                             "(no event says which chunk changes); open another stream")
        await self._send({"type": "config", **{k: v for k, v in fields.items() if v is not None}})
        if fmt is not None and not self._text_sent:
            self._decoder.ask_format(str(fmt))

    async def close(self) -> None:
        await self._ws.close()

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        if self._finished:
            raise StopAsyncIteration
        while True:
            try:
                frame = await self._ws.recv()
            except ConnectionClosed as exc:
                self._finished = True
                code = exc.rcvd.code if exc.rcvd is not None else 1006
                reason = exc.rcvd.reason if exc.rcvd is not None else ""
                if code == 1000:
                    raise StopAsyncIteration from None
                raise StreamClosed(code, reason) from None
            event = self._decoder.feed(frame)
            if event is None:
                continue
            if isinstance(event, Ready):
                self.ready = event
            elif isinstance(event, Done):
                # protocol-v1: after `done` the server closes with 1000; nothing more to read.
                self.done = event
                self._finished = True
            return event


@asynccontextmanager
async def connect(
    url: str,
    *,
    voice: str | None = None,
    encoding: str = "json",
    token: str | None = None,
    speed: float | None = None,
    format: str | None = None,
    frame_ms: int | None = None,
    priority: str | None = None,
    timestamps: str | None = None,
    pace: str | None = None,
    headers: Mapping[str, str] | None = None,
    open_timeout: float = 10,
    token_in_query: bool = False,
) -> AsyncIterator[ClientStream]:
    """Open a stream: ``async with connect(url, voice=...) as stream: ...``.

    Settings travel as query parameters (protocol-v1: Endpoint). The token goes in an
    ``Authorization: Bearer`` header; ``token_in_query=True`` sends it as ``?token=`` instead,
    as a browser must. ``timestamps="word"`` adds a `Words` event after each `Chunk`.
    ``pace="download"`` asks for the audio as fast as it can be made, read at the client's
    own speed, instead of paced to a real-time player (protocol-v1: Pace).
    Raises a `HandshakeRefused` subclass when the server refuses.
    """
    enc = Encoding(encoding)
    params: dict[str, Any] = {
        "voice": voice, "speed": speed, "format": format, "frame_ms": frame_ms,
        "priority": priority, "timestamps": timestamps, "pace": pace,
        # json is the server's default; saying so anyway makes logs and URLs unambiguous.
        "encoding": enc.value,
    }
    extra_headers = dict(headers or {})
    if token is not None:
        if token_in_query:
            params["token"] = token
        else:
            extra_headers["Authorization"] = f"Bearer {token}"
    full_url = build_url(url, params)
    try:
        # proxy=None: an environment proxy must never capture a stream to a litestream server.
        ws = await ws_connect(full_url, additional_headers=extra_headers, open_timeout=open_timeout,
                              proxy=None, max_size=4 * 1024 * 1024)
    except InvalidStatus as exc:
        raise _refusal(exc) from None
    stream = ClientStream(ws, enc)
    try:
        yield stream
    finally:
        await ws.close()


# ---------------------------------------------------------------- sync helper

async def _synthesize(url: str, text: str, voice: str | None, speed: float | None,
                      token: str | None, encoding: str) -> tuple[int, np.ndarray]:
    parts: list[np.ndarray] = []
    sample_rate = 0
    # pace="download": nobody plays this while it arrives, so it comes as fast as the server
    # can make it (as POST /v1/audio/speech does), not paced to a listener's clock.
    async with connect(url, voice=voice, speed=speed, token=token, encoding=encoding,
                       format="s16le", pace="download") as stream:
        await stream.send_text(text)
        await stream.end()
        async for event in stream:
            if isinstance(event, Ready):
                sample_rate = event.sample_rate
            elif isinstance(event, Audio):
                parts.append(event.samples())
            elif isinstance(event, Error):
                if event.fatal:
                    raise StreamError(event.code, event.message)
                logger.warning("session %s: %s: %s", stream.ready and stream.ready.session,
                               event.code, event.message)
    pcm = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
    return sample_rate, pcm


def synthesize(url: str, text: str, *, voice: str | None = None, speed: float | None = None,
               token: str | None = None, encoding: str = "json",
               timeout: float = 60) -> tuple[int, np.ndarray]:
    """Speak `text` in one stream and return (sample_rate, int16 mono samples). Blocking.

    The audio comes at download pace (protocol-v1: Pace), so ``timeout`` (seconds, for the whole
    text) bounds the server's compute, not the audio's length.
    """

    async def run() -> tuple[int, np.ndarray]:
        try:
            return await asyncio.wait_for(
                _synthesize(url, text, voice, speed, token, encoding), timeout)
        except TimeoutError:
            raise TimeoutError(f"{url} did not finish {len(text)} characters in {timeout} s "
                               "(synthesize's timeout)") from None

    return asyncio.run(run())
