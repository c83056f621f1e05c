"""`POST /v1/audio/speech`: one HTTP request is one stream (the asyncio side).

The request goes through the same checks as a WebSocket handshake (`SpeechHost.admit`, which
`LitestreamServer` implements:
draining, Origin, API key, the body, the key's quotas, admission control) and then through the
same per-stream rules: a `StreamSession` is given the input as one `text` and an `end`, and
what it queues is written to the response as it comes. So the scheduler, the cache, the
metrics and the limits see an ordinary stream. Request and error shapes: `protocol/openai.py`.

The body is chunked and written as audio is synthesized: the response starts with the first
audio (so an error before any audio can still be an HTTP error), and each batch of frames is
encoded (`encoders.py`, PyAV for the compressed formats) in a thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, MutableMapping
from typing import Protocol

import numpy as np
from aiohttp import web

from litestream.config import Config
from litestream.errors import CLOSE_CODE_FOR_ERROR, CloseCode, ErrorCode
from litestream.logs import SessionAdapter, clip
from litestream.metrics import ABNORMAL_CLOSE, Metrics
from litestream.protocol import Encoding, EndMsg, StreamSettings, TextMsg
from litestream.protocol import openai as openai_api
from litestream.security import Refusal, RefusalReason, refuse
from litestream.server import routes
from litestream.server.carrier import (
    DRAIN_RETRY_AFTER_S,
    Admitted,
    Carrier,
    summarize,
    web_response,
)
from litestream.server.encoders import Encoder, new_encoder, output_rate
from litestream.session import (
    Close,
    Disconnected,
    GoingAway,
    SendAudio,
    SendMessage,
    SendTimeout,
    StreamSession,
    StreamState,
)
from litestream.synthesis import StreamLink, Synthesis

log = logging.getLogger("litestream.speech")

CLIENT_CHECK_S = 1.0  # while waiting for audio, look this often whether the client left
# What a request answers when its session's first error comes before any byte of the body, by
# the error's code (rate_limited: a refusal in OpenAI's shape, see `_error_answer`).
_STATUS_FOR_ERROR = {ErrorCode.SYNTHESIS_FAILED.value: 500, ErrorCode.INTERNAL.value: 500}
_SERVER_ERRORS = frozenset({ErrorCode.SYNTHESIS_FAILED.value, ErrorCode.INTERNAL.value,
                            ErrorCode.OVERLOADED.value})


class SpeechHost(Protocol):
    """What a speech request asks of the server that accepted it (`app.LitestreamServer`)."""

    @property
    def config(self) -> Config: ...
    @property
    def voice_ids(self) -> frozenset[str]: ...
    @property
    def default_voice(self) -> str: ...
    @property
    def sample_rates(self) -> Mapping[str, int]: ...
    @property
    def languages(self) -> Mapping[str, str]:
        """Each voice's language (an OpenAI voice name speaks the input's language)."""
    @property
    def metrics(self) -> Metrics: ...
    @property
    def synthesis(self) -> Synthesis: ...
    @property
    def speech(self) -> MutableMapping[str, SpeechStream]:
        """The speech requests in flight, by session id (results reach them through it)."""

    def admit(self, request: web.Request, query: dict[str, str],
              check: Callable[[], Refusal | None], *, voice: Callable[[], str],
              priority: Callable[[], str], pace: Callable[[], str],
              request_id: str | None = None) -> Admitted | Refusal: ...

    def new_session(self, admitted: Admitted, settings: StreamSettings,
                    encoding: Encoding) -> tuple[StreamSession, StreamLink]: ...

    def release(self, admitted: Admitted) -> int: ...

    def refused(self, request: web.Request, status: int, reason: str,
                request_id: str | None = None) -> None:
        """Count and log a request refused before admission could look at it."""

    def rate_wait_s(self, admitted: Admitted, chars: int) -> float:
        """Seconds until the client of `admitted` may send a text of `chars` (0.0: now)."""

    def now(self) -> float: ...


class SpeechStream(Carrier):
    """One speech request from body to last byte."""

    def __init__(self, server: SpeechHost, request: web.Request) -> None:
        self.server = server
        self.request = request
        self.session: StreamSession | None = None
        self.wakeup = asyncio.Event()
        self.response: web.StreamResponse | None = None
        self.admitted: Admitted | None = None
        self.close_code: int = CloseCode.NORMAL
        # One a proxy or the client sent (X-Request-Id), else a new one (openai.request_id).
        self.request_id = openai_api.request_id(
            request.headers.get(openai_api.REQUEST_ID_HEADER))
        self.log: logging.Logger | SessionAdapter = log  # the session's, once admitted

    # ------------------------------------------------------------ from the server

    def going_away(self, now: float) -> None:
        self.feed(GoingAway(), now)

    # ------------------------------------------------------------ the request

    async def run(self) -> web.StreamResponse:
        """Answer the request; every answer names its request id (X-Request-Id), as its log
        lines do (an audio body's headers are written in `_write`)."""
        response = await self._run()
        if not response.prepared:
            response.headers[openai_api.REQUEST_ID_HEADER] = self.request_id
        return response

    async def _run(self) -> web.StreamResponse:
        server, request = self.server, self.request
        request_id = self.request_id
        timeout_s = server.config.request_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            # Counted and logged as every refusal is (a bad body: bad_param).
            server.refused(request, 413, RefusalReason.BAD_PARAM, request_id)
            return _api_error(openai_api.ApiError(
                413, f"request body over {openai_api.MAX_BODY_BYTES} bytes",
                code="body_too_large"))
        except TimeoutError:
            # A body that trickles in holds a socket and a handler: answer, then close.
            server.refused(request, 408, "other", request_id)
            answer = _api_error(openai_api.ApiError(
                408, f"request body not received within {timeout_s:g} s",
                code="request_timeout"))
            answer.force_close()
            return answer
        parsed: list[openai_api.SpeechRequest] = []
        bad: list[openai_api.ApiError] = []

        def check_body() -> Refusal | None:
            try:
                parsed.append(openai_api.parse_speech_request(
                    body, voices=sorted(server.voice_ids), default_voice=server.default_voice,
                    content_type=request.headers.get("Content-Type"),
                    query_pace=request.query.get("pace"), languages=server.languages))
            except openai_api.ApiError as exc:
                bad.append(exc)
                # The status the client gets (400, 415), which the refusal's line names.
                return dataclasses.replace(
                    refuse(RefusalReason.BAD_PARAM, exc.message, param=exc.param),
                    status=exc.status)
            return None

        admitted = server.admit(request, dict(request.query.items()), check_body,
                                voice=lambda: parsed[0].voice, priority=lambda: "normal",
                                pace=lambda: parsed[0].pace, request_id=request_id)
        if isinstance(admitted, Refusal):
            return _api_error(bad[0] if bad else routes.api_refusal(admitted))
        speech = parsed[0]
        self.admitted = admitted
        settings = StreamSettings(voice=speech.voice, speed=speech.speed, format="s16le",
                                  frame_ms=server.config.frame_ms, pace=speech.pace)
        session, link = server.new_session(admitted, settings, Encoding.JSON)
        self.session = session
        server.speech[session.id] = self
        server.metrics.stream_opened()
        slog = self.log = SessionAdapter(log, session.id, request_id)
        slog.info("speech: %d chars, voice %s (asked %s), %s%s, speed %g, pace %s",
                  len(speech.input), speech.voice, speech.requested_voice,
                  speech.response_format, " as sse" if speech.stream_format == "sse" else "",
                  speech.speed, speech.pace)
        try:
            now = server.now()
            session.receive(TextMsg(speech.input), now)
            session.receive(EndMsg(), now)
            server.synthesis.dispatch()
            return await self._send(speech)
        finally:
            session.receive(Disconnected(), server.now())
            server.speech.pop(session.id, None)
            underrun_ms = round(link.underrun_s() * 1000)  # before release forgets the stream
            dropped = server.release(admitted)
            server.metrics.stream_closed(self.close_code)
            summarize(slog.logger, session, link, underrun_ms=underrun_ms,
                      close_code=self.close_code, dropped=dropped)

    async def _send(self, speech: openai_api.SpeechRequest) -> web.StreamResponse:
        """Move what the session queues to the response; encode each batch of frames."""
        session = self.session
        assert session is not None
        rate = self.server.sample_rates[speech.voice]
        encoder = new_encoder(speech.response_format, rate, speech.sample_rate)
        loop = asyncio.get_running_loop()
        batch: list[bytes] = []
        while True:
            if not batch:
                # Cleared before the outbox is read, never after (as the WebSocket writer,
                # websocket.py): what the session queues while a batch is encoded or written
                # sets it again, so `_wait` returns at once and the next pass takes it.
                self.wakeup.clear()
            item = session.next_outgoing()
            if isinstance(item, SendAudio):
                batch.append(item.payload)
                continue
            if batch:  # everything queued so far: one trip to the encoder thread
                samples = np.frombuffer(b"".join(batch), dtype="<i2")
                batch = []
                data = await loop.run_in_executor(None, encoder.feed, samples)
                if not await self._write(speech, rate, data):
                    return self._gone()
            match item:
                case None:
                    if session.state is StreamState.CLOSED:
                        return self._gone()
                    if not await self._wait():
                        session.receive(Disconnected(), self.server.now())
                        return self._gone()
                case SendMessage(kind="error", payload=payload):
                    error = json.loads(payload)
                    # The server's failures warn; what the client caused (its text over the
                    # rate, say) is INFO, as a WebSocket's protocol errors are.
                    self.log.log(logging.WARNING if error.get("code") in _SERVER_ERRORS
                                 else logging.INFO, "speech ends with error %s: %s",
                                 error.get("code"), clip(str(error.get("message", ""))))
                    return self._failed(error, len(speech.input))
                case SendMessage():
                    pass  # ready, chunk, done: the HTTP answer has no place for them
                case Close(code=code):
                    self.close_code = code
                    if code != CloseCode.NORMAL:
                        return self._cut_short(code)
                    tail = await loop.run_in_executor(None, encoder.finish)
                    return await self._finish(speech, rate, tail, encoder)

    async def _finish(self, speech: openai_api.SpeechRequest, rate: int, tail: bytes,
                      encoder: Encoder) -> web.StreamResponse:
        if not await self._write(speech, rate, tail, final=True):
            return self._gone()
        assert self.response is not None
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.response.write_eof()
        return self.response

    # ------------------------------------------------------------ the wire

    async def _write(self, speech: openai_api.SpeechRequest, rate: int, data: bytes,
                     final: bool = False) -> bool:
        """Write encoded audio (as an SSE event when asked); False when the client is gone."""
        if not data and not final:
            return True
        try:
            response = self.response
            if response is None:
                headers = dict(openai_api.response_headers(
                    speech, output_rate(speech.response_format, rate, speech.sample_rate)))
                headers[openai_api.REQUEST_ID_HEADER] = self.request_id
                response = web.StreamResponse(status=200, headers=headers)
                response.enable_chunked_encoding()
                await response.prepare(self.request)
                self.response = response
            chunk = data
            if speech.stream_format == "sse":
                chunk = openai_api.sse_delta(data) if data else b""
                if final:
                    assert self.session is not None
                    chunk += openai_api.sse_done(self.session.chars)
            if chunk:
                async with asyncio.timeout(self.server.config.slow_reader_timeout_s):
                    await response.write(chunk)
        except TimeoutError:
            self.log.warning("speech client stopped reading; closing")
            self.close_code = CloseCode.POLICY
            self.feed(SendTimeout(), self.server.now())
            self.abort()
            return False
        except (ConnectionError, RuntimeError):  # the client is gone
            self.close_code = ABNORMAL_CLOSE
            return False
        return True

    async def _wait(self) -> bool:
        """Wait for the session's next item (`wakeup` is cleared by the caller before it read
        the outbox); False if the client went away meanwhile."""
        while True:
            try:
                async with asyncio.timeout(CLIENT_CHECK_S):
                    await self.wakeup.wait()
                return True
            except TimeoutError:
                transport = self.request.transport
                if transport is None or transport.is_closing():
                    self.close_code = ABNORMAL_CLOSE
                    return False

    def _failed(self, error: Mapping[str, object], chars: int) -> web.StreamResponse:
        """The session sent an error. A request has one text, so some of it will never be
        spoken (a chunk that failed; the text refused): the request ends here, with an error
        status if no byte was sent, else by cutting the connection, so the client sees the
        body is incomplete rather than a file that looks whole without a sentence
        (docs/openai.md, Response)."""
        code = str(error.get("code", ""))
        self.close_code = CLOSE_CODE_FOR_ERROR[ErrorCode(code)]
        if self.response is not None:
            self.abort()
            return self.response
        return _api_error(self._error_answer(code, str(error.get("message", "")), chars))

    def _error_answer(self, code: str, message: str, chars: int) -> openai_api.ApiError:
        """An error before any byte, in OpenAI's shape. Text over the key's rate is the same
        429 as a request refused at admission over its rate: OpenAI's type and code, and
        Retry-After (asked of the limits, which the refused text did not charge)."""
        if code == ErrorCode.RATE_LIMITED and self.admitted is not None:
            wait_s = self.server.rate_wait_s(self.admitted, chars)
            return routes.api_refusal(refuse(RefusalReason.RATE, message, retry_after_s=wait_s))
        status = _STATUS_FOR_ERROR.get(code, 400)
        kind = "server_error" if status >= 500 else "invalid_request_error"
        return openai_api.ApiError(status, message, type=kind, code=code or None)

    def _cut_short(self, code: int) -> web.StreamResponse:
        """The stream ended before its audio (drain, a stuck client): an error status if no
        byte was sent, else the connection is cut so the client sees the body is incomplete."""
        if self.response is None:
            if code == CloseCode.GOING_AWAY:
                return _api_error(openai_api.ApiError(
                    503, "server is shutting down", type="server_error", code="overloaded",
                    retry_after_s=DRAIN_RETRY_AFTER_S))
            return _api_error(openai_api.server_error("stream closed"))
        self.abort()
        return self.response

    def _gone(self) -> web.StreamResponse:
        if self.close_code == CloseCode.NORMAL:
            self.close_code = ABNORMAL_CLOSE
        return self.response if self.response is not None else web.Response(status=499)


def _api_error(error: openai_api.ApiError) -> web.Response:
    return web_response(routes.api_error(error))
