"""What both transports do the same way with the stream they carry.

A stream arrives as a WebSocket (`websocket.StreamConnection`) or as one `POST
/v1/audio/speech` (`speech.SpeechStream`). Both pass the same admission (`Admitted`), feed
their session the same way (`Carrier.feed`: give it the input, cut a client that stopped
reading, wake the writer), log the same summary line when it ends (`summarize`) and write
an `Answer` the same way (`web_response`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiohttp import web

from litestream.errors import CloseCode
from litestream.logs import stream_summary
from litestream.metrics import ABNORMAL_CLOSE
from litestream.server.routes import Answer
from litestream.session import SessionInput, StreamSession
from litestream.synthesis import StreamLink

DRAIN_RETRY_AFTER_S = 5.0  # a draining (or warming) server's clients retry this much later


@dataclass(frozen=True)
class Admitted:
    """A request let in: its stream is open in the scheduler and its client holds a slot."""

    client: str  # key label, or client address without keys
    session_id: str
    request_id: str | None = None  # a speech request's (X-Request-Id); None for a WebSocket


class Carrier:
    """The part of a transport's per-stream object that both transports share."""

    request: web.Request
    session: StreamSession | None
    wakeup: asyncio.Event  # the writer has work

    def abort(self) -> None:
        """Cut the TCP connection at once (no close handshake: the client stopped reading)."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    def feed(self, item: SessionInput, now: float) -> None:
        """Give the session an input, then let the writer move what it queued."""
        session = self.session
        if session is None:  # a speech request not admitted yet
            return
        session.receive(item, now)
        if session.aborting:
            # The writer may be stuck in a send to a client that stopped reading: cut now.
            self.abort()
        self.wakeup.set()


def summarize(log: logging.Logger, session: StreamSession, link: StreamLink, *,
              underrun_ms: int, close_code: int, dropped: int) -> None:
    """The stream's one summary line (logs.stream_summary). `underrun_ms` is read before the
    stream is released: the scheduler forgets its playback clock then."""
    stream_summary(
        log, session=session.id, request_id=session.log_fields.get("request_id"),
        chars=session.chars, audio_ms=round(session.cursor_ms),
        ttfa_ms=session.ttfa_ms, stalls=link.stalls, underrun_ms=underrun_ms,
        close_code=close_code, reason=session.close_reason or _UNCHOSEN.get(close_code,
                                                                           "client_closed"),
        protocol_errors=session.protocol_errors, dropped_chunks=dropped,
    )


# The summary's `reason` for a stream whose session chose no close: a bounded set of codes, as
# the session's own ("done", "idle timeout", ...), so a log pipeline can group by it.
_UNCHOSEN: dict[int, str] = {
    ABNORMAL_CLOSE: "client_gone",  # no close frame: the client vanished
    CloseCode.TOO_BIG: "message_too_big",  # the WebSocket library closed 1009
    1007: "invalid_utf8",  # ... or 1007 (RFC 6455; not a protocol-v1 code)
    CloseCode.INTERNAL_ERROR: "internal",  # the writer failed
}


def web_response(answer: Answer) -> web.Response:
    """An `Answer` (routes.py, which knows no HTTP library) as aiohttp's response."""
    return web.Response(status=answer.status, headers=dict(answer.headers), body=answer.body)
