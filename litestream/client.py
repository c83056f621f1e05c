"""Python client for litestream's protocol v1, plus a pure playback clock.

Three layers, each usable on its own:

- `EventDecoder` (sans I/O): WebSocket frames in, typed frozen events out. It owns the one
  client-side subtlety of protocol-v1: with ``encoding=json`` a binary frame is raw PCM of the
  most recent ``chunk``'s seq (protocol-v1: Encodings).
- `connect()` / `ClientStream` (asyncio, thin): handshake with query parameters and a Bearer token,
  send methods, and ``async for event in stream``. Handshake refusals become typed exceptions.
- `PlaybackClock` (pure, the caller passes ``now``): simulates a listener that starts playing at
  the first audio frame and plays in real time; reports stalls, chunk lateness and which chunks
  were fully heard. The voice agent, the locust user and the realtime benchmark share it.

`synthesize()` is the blocking one-shot helper built on the above.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import numpy as np
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from litestream.errors import LitestreamError
from litestream.protocol import BYTES_PER_SAMPLE, Encoding, decode, encode

logger = logging.getLogger("litestream.client")

__all__ = [
    "Audio",
    "BadRequest",
    "Chunk",
    "ChunkPlayback",
    "Cleared",
    "ClientStream",
    "Done",
    "DoneStats",
    "Error",
    "Event",
    "EventDecoder",
    "Flushed",
    "Forbidden",
    "HandshakeRefused",
    "PlaybackClock",
    "RateLimited",
    "Ready",
    "Stall",
    "StreamClosed",
    "StreamError",
    "Unauthorized",
    "Unavailable",
    "build_url",
    "connect",
    "synthesize",
]


# ---------------------------------------------------------------- events (server -> client)

@dataclass(frozen=True)
class Ready:
    """protocol-v1 `ready`: the first message on every stream."""

    protocol: int
    session: str
    voice: str
    sample_rate: int  # Hz
    format: str  # "s16le" | "f32le"
    channels: int
    frame_ms: int


@dataclass(frozen=True)
class Chunk:
    """protocol-v1 `chunk`: the audio of this text follows."""

    seq: int
    text: str
    start_ms: int  # where it starts in this stream's audio (the server's count)
    duration_ms: int


@dataclass(frozen=True)
class Audio:
    """One audio frame of chunk `seq`: raw little-endian PCM, mono."""

    seq: int
    pcm: bytes
    format: str = "s16le"

    def samples(self) -> np.ndarray:
        """The frame as int16 (s16le) or float32 (f32le) samples; a copy, safe to modify."""
        dtype = "<i2" if self.format == "s16le" else "<f4"
        return np.frombuffer(self.pcm, dtype=dtype).astype(dtype[1:])


@dataclass(frozen=True)
class Flushed:
    seq: int  # last chunk that existed when the flush arrived; -1 if none


@dataclass(frozen=True)
class Cleared:
    seq: int  # last chunk that existed when the clear arrived; no audio of it or earlier follows


@dataclass(frozen=True)
class DoneStats:
    """The server's own account of the stream (protocol-v1 `done`)."""

    chars: int
    chunks: int
    audio_ms: int
    ttfa_ms: int | None  # None when no audio was ever sent
    underrun_ms: int


@dataclass(frozen=True)
class Done:
    stats: DoneStats


@dataclass(frozen=True)
class Error:
    code: str  # one of litestream.errors.ErrorCode's values
    message: str
    fatal: bool


Event = Ready | Chunk | Audio | Flushed | Cleared | Done | Error


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

    def feed(self, frame: str | bytes) -> Event | None:
        if self.encoding is Encoding.JSON and isinstance(frame, bytes):
            return Audio(seq=self._last_seq, pcm=frame, format=self.format)
        obj = decode(frame, self.encoding)
        event = _event_from_message(obj, self.format)
        if isinstance(event, Ready):
            self.format = event.format
            self.sample_rate = event.sample_rate
        elif isinstance(event, Chunk):
            self._last_seq = event.seq
        elif event is None:
            logger.debug("skipping unknown server message type %r", obj.get("type"))
        return event


# ---------------------------------------------------------------- asyncio stream

def build_url(url: str, params: Mapping[str, Any]) -> str:
    """Add query parameters (None values skipped) to a ws:// URL, keeping any already there."""
    parts = urlsplit(url)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = "&".join(q for q in (parts.query, extra) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class ClientStream:
    """One open protocol-v1 stream, client side. Made by `connect()`; not constructed directly."""

    def __init__(self, ws: ClientConnection, encoding: Encoding) -> None:
        self._ws = ws
        self.encoding = encoding
        self._decoder = EventDecoder(encoding)
        self._finished = False
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
        await self._send(message)

    async def flush(self) -> None:
        await self._send({"type": "flush"})

    async def clear(self) -> None:
        await self._send({"type": "clear"})

    async def end(self) -> None:
        await self._send({"type": "end"})

    async def configure(self, **fields: Any) -> None:
        """Send a `config` message; fields left None are not sent."""
        await self._send({"type": "config", **{k: v for k, v in fields.items() if v is not None}})

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
    headers: Mapping[str, str] | None = None,
    open_timeout: float = 10,
    token_in_query: bool = False,
) -> AsyncIterator[ClientStream]:
    """Open a stream: ``async with connect(url, voice=...) as stream: ...``.

    Settings travel as query parameters (protocol-v1: Endpoint). The token goes in an
    ``Authorization: Bearer`` header; ``token_in_query=True`` sends it as ``?token=`` instead,
    as a browser must. Raises a `HandshakeRefused` subclass when the server refuses.
    """
    enc = Encoding(encoding)
    params: dict[str, Any] = {
        "voice": voice, "speed": speed, "format": format, "frame_ms": frame_ms,
        "priority": priority,
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
    async with connect(url, voice=voice, speed=speed, token=token, encoding=encoding,
                       format="s16le") as stream:
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
    """Speak `text` in one stream and return (sample_rate, int16 mono samples). Blocking."""

    async def run() -> tuple[int, np.ndarray]:
        return await asyncio.wait_for(
            _synthesize(url, text, voice, speed, token, encoding), timeout)

    return asyncio.run(run())


# ---------------------------------------------------------------- playback clock (pure)

@dataclass(frozen=True)
class Stall:
    """The simulated listener ran dry: silence it did not ask for."""

    at_s: float  # caller's clock when the buffer ran dry
    ms: float  # how long it stayed dry
    seq: int  # the chunk whose audio ended the stall


@dataclass
class ChunkPlayback:
    """Where one chunk sits on the listener's timeline (ms of audio from playback start)."""

    seq: int
    text: str
    start_ms: float  # position of its first sample on the local playback timeline
    duration_ms: float  # from the `chunk` message
    received_ms: float = 0.0  # audio of it that arrived
    arrived_at: float | None = None  # caller's clock at its first audio frame
    lateness_ms: float | None = None  # how long the listener waited for it; 0 if on time
    dropped: bool = False  # a clear cut it: audio after the clear point is never played
    heard_at_clear_ms: float = 0.0  # for a dropped chunk: how much of it was heard

    @property
    def end_ms(self) -> float:
        return self.start_ms + max(self.duration_ms, self.received_ms)


class PlaybackClock:
    """A simulated listener: starts at the first audio frame, plays in real time.

    Pure: no clock calls inside; every method takes the caller's `now` in seconds (any
    monotonic clock). Calls must come in time order. This is the listener of protocol-v1's
    Timing promise: a stall is time the listener spent dry after playback started and before
    more audio came. The clock cannot tell a server stall from a client that simply had no
    more text to send; callers that send text slowly must read stalls with that in mind.
    """

    def __init__(self, sample_rate: int, format: str = "s16le", *, channels: int = 1,
                 min_stall_ms: float = 1.0) -> None:
        self.sample_rate = sample_rate
        self.bytes_per_ms = sample_rate * channels * BYTES_PER_SAMPLE[format] / 1000.0
        # Rounding of duration_ms and float error make sub-millisecond "stalls"; not audible.
        self.min_stall_ms = min_stall_ms
        self.first_audio_at: float | None = None
        self.chunks: dict[int, ChunkPlayback] = {}
        self.stalls: list[Stall] = []
        self._received_ms = 0.0  # end of audio on the local timeline
        self._played_ms = 0.0  # play head at `_last_t`
        self._last_t: float | None = None
        self._dry_since: float | None = None  # when the play head caught up with the audio
        self._playing = False  # False before the first frame and after a clear
        self._discard_through: int | None = None  # after clear(): drop audio of seq <= this
        self._discarding = False  # between clear() and on_cleared(): drop all audio

    @classmethod
    def for_ready(cls, ready: Ready, **kwargs: Any) -> PlaybackClock:
        return cls(ready.sample_rate, ready.format, channels=ready.channels, **kwargs)

    # -- feeding

    def _advance(self, now: float) -> None:
        """Move the play head to `now`, noting when the listener ran dry."""
        if self._last_t is not None and now < self._last_t:
            raise ValueError(f"time went backwards: {now} < {self._last_t}")
        if self._playing and self._last_t is not None and self._dry_since is None:
            head = self._played_ms + (now - self._last_t) * 1000.0
            if head >= self._received_ms:
                self._dry_since = self._last_t + (self._received_ms - self._played_ms) / 1000.0
                head = self._received_ms
            self._played_ms = head
        self._last_t = now

    def on_chunk(self, chunk: Chunk, now: float) -> None:
        self._advance(now)
        # Every frame of earlier chunks came before this chunk (protocol-v1: Server to client),
        # so it starts where received audio ends.
        self.chunks[chunk.seq] = ChunkPlayback(
            seq=chunk.seq, text=chunk.text, start_ms=self._received_ms,
            duration_ms=float(chunk.duration_ms), dropped=self._discarding,
        )

    def on_audio(self, seq: int, nbytes: int, now: float) -> float:
        """An audio frame arrived. Returns the stall it ended, in ms (0 if none)."""
        if self._discarding or (self._discard_through is not None
                                and seq <= self._discard_through):
            self._advance(now)
            return 0.0
        self._advance(now)
        stall_ms = 0.0
        if not self._playing:
            self._playing = True
            if self.first_audio_at is None:
                self.first_audio_at = now
        elif self._dry_since is not None:
            dry_ms = (now - self._dry_since) * 1000.0
            if dry_ms > self.min_stall_ms:
                stall_ms = dry_ms
                self.stalls.append(Stall(at_s=self._dry_since, ms=dry_ms, seq=seq))
        self._dry_since = None
        frame_ms = nbytes / self.bytes_per_ms
        self._received_ms += frame_ms
        record = self.chunks.get(seq)
        if record is not None:
            if record.arrived_at is None:
                record.arrived_at = now
                record.lateness_ms = stall_ms
            record.received_ms += frame_ms
        return stall_ms

    def clear(self, now: float) -> None:
        """The listener stops playback now (barge-in): unplayed audio is thrown away.

        Audio keeps arriving until the server's `cleared`; it is dropped until `on_cleared`.
        The next audio after that starts playback afresh (no stall: the silence was asked for).
        """
        self._advance(now)
        for record in self.chunks.values():
            if not record.dropped and record.end_ms > self._played_ms + self.min_stall_ms:
                record.heard_at_clear_ms = self._heard_ms(record, self._played_ms)
                record.dropped = True
        self._received_ms = self._played_ms
        self._playing = False
        self._dry_since = None
        self._discarding = True

    def on_cleared(self, seq: int) -> None:
        """The server's `cleared`: audio of chunks up to `seq` will not come; later audio plays."""
        self._discarding = False
        self._discard_through = seq

    # -- queries (do not change state)

    def played_ms(self, t: float) -> float:
        """Audio the listener has heard by `t`, ms."""
        if not self._playing or self._last_t is None or self._dry_since is not None:
            return self._played_ms
        return min(self._received_ms, self._played_ms + max(0.0, t - self._last_t) * 1000.0)

    def buffered_ms(self, t: float) -> float:
        """Audio received but not yet played at `t`, ms."""
        return self._received_ms - self.played_ms(t)

    def ends_at(self, t: float) -> float:
        """When playback of everything received so far ends, if nothing else arrives."""
        return t + self.buffered_ms(t) / 1000.0

    @property
    def stall_count(self) -> int:
        return len(self.stalls)

    @property
    def stall_ms(self) -> float:
        return math.fsum(s.ms for s in self.stalls)

    def _heard_ms(self, c: ChunkPlayback, head: float) -> float:
        if c.dropped:
            return c.heard_at_clear_ms
        if c.received_ms == 0:
            return 0.0
        return min(max(0.0, head - c.start_ms), c.end_ms - c.start_ms)

    def _is_whole(self, c: ChunkPlayback, heard_ms: float) -> bool:
        return heard_ms > 0 and heard_ms >= c.end_ms - c.start_ms - self.min_stall_ms

    def fully_played(self, t: float) -> list[ChunkPlayback]:
        """Chunks whose every sample was heard by `t`, in seq order."""
        head = self.played_ms(t)
        return [c for _, c in sorted(self.chunks.items())
                if self._is_whole(c, self._heard_ms(c, head))]

    def partly_played(self, t: float) -> list[tuple[ChunkPlayback, float]]:
        """Chunks begun but not finished by `t` (or cut by a clear), with the fraction heard."""
        head = self.played_ms(t)
        out: list[tuple[ChunkPlayback, float]] = []
        for _, c in sorted(self.chunks.items()):
            heard = self._heard_ms(c, head)
            if heard > 0 and not self._is_whole(c, heard):
                out.append((c, heard / (c.end_ms - c.start_ms)))
        return out

    def unplayed(self, t: float) -> list[ChunkPlayback]:
        """Chunks announced of which the listener had heard nothing by `t`."""
        head = self.played_ms(t)
        return [c for _, c in sorted(self.chunks.items()) if self._heard_ms(c, head) <= 0]
