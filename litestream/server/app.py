"""The asyncio layer: handshake, routing, the registry of streams and the lifecycle.

Thin by design (docs/style.md: the asyncio layer only moves data): every per-stream rule
(order, flush, clear, done, limits, the send buffer) lives in `session.StreamSession`; one
WebSocket's socket loops live in `websocket.StreamConnection` and one speech request's in
`speech.SpeechStream` (what both share is in `carrier`); the scheduler, the workers and
calibration are reached through `synthesis`; what start-up settles once (voices, TLS, batch
size) is in `startup`; plain HTTP answers are written by `routes`; what a handshake refusal
says is decided by `security`. This module owns what is about the server as a whole: the
handshake checks, routing, the streams in flight, the start-up order and shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http
import logging
import os
import signal
import sys
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from functools import partial
from typing import Any

import aiohttp
from aiohttp import web

from litestream import config as config_mod
from litestream import protocol
from litestream.config import Config
from litestream.engine import Voice
from litestream.errors import CloseCode, ConfigError, LitestreamError
from litestream.logs import SessionAdapter, clip, setup_logging, stream_fields
from litestream.metrics import Metrics
from litestream.protocol import STREAM_PATH, HandshakeParams, QueryError, StreamSettings
from litestream.protocol import openai as openai_api
from litestream.scheduler import Scheduler
from litestream.security import (
    FORWARDED_FOR,
    ClientLimits,
    KeyCheck,
    Refusal,
    TrustedProxies,
    extract_key,
    origin_allowed,
    refuse_admission,
    refuse_bad_param,
    refuse_draining,
    refuse_origin,
    refuse_unauthorized,
    refuse_warming_up,
)
from litestream.server import routes, startup
from litestream.server.carrier import DRAIN_RETRY_AFTER_S, Admitted
from litestream.server.carrier import web_response as _web
from litestream.server.cors import CorsPolicy, is_preflight
from litestream.server.speech import SpeechStream
from litestream.server.websocket import StreamConnection
from litestream.session import GoingAway, SessionLimits, StreamSession, SynthesisResult
from litestream.synthesis import StreamLink, Synthesis
from litestream.synthesis.cache import SentenceCache
from litestream.synthesis.shared_cache import SharedCache, redacted
from litestream.synthesis.workers import (
    PoolEvent,
    WatchdogConfig,
    WorkerPool,
    keep_freed_memory_until_trim,
)
from litestream.text import languages

log = logging.getLogger("litestream.server")
# aiohttp's own lines about connections (its "aiohttp.server"), in litestream's tree: the
# format --log-json asked for, and a client's malformed request as one line (below).
http_log = logging.getLogger("litestream.http")


def _bad_request_in_one_line(record: logging.LogRecord) -> bool:
    """A request aiohttp could not parse (a bad header, a body length that is not a number:
    it answers 400) is the client's doing: one INFO line saying what was wrong, not an ERROR
    with a traceback of aiohttp's parser for every such request. Any other error (a bug: 500)
    keeps its level and traceback."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, aiohttp.http.HttpProcessingError):
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        record.msg = "bad HTTP request from %s: %d %s"
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        # Its first line only: the rest quotes the client's bytes under a caret.
        what = (str(exc.message).strip().splitlines() or [type(exc).__name__])[0]
        record.args = (remote, exc.code, clip(what))
        record.exc_info = record.exc_text = None
    return True


http_log.addFilter(_bad_request_in_one_line)

# Fewer streams than this allowed by the open-files limit is a warning at start: a GPU server
# is meant for about a thousand listeners (issue 17).
FEW_STREAMS = 1000
KEEPALIVE_S = 20.0  # WebSocket ping interval: a peer that stops answering is closed


class LitestreamServer:
    """The server: `async with LitestreamServer(config) as server:` or `await server.run()`.

    One aiohttp server on one port: the protocol-v1 WebSocket endpoint, OpenAI's
    `POST /v1/audio/speech`, and plain HTTP (health, metrics, voices, the player). The
    transport was chosen by measurement (docs/benchmarks.md, "Transport").
    """

    def __init__(self, config: Config, voices: Mapping[str, Voice] | None = None) -> None:
        open_files = startup.open_files_limit()
        cap = startup.stream_cap(config.max_streams, open_files)
        if cap != config.max_streams:
            # The open-files limit bounds the streams (each is a socket): the one past it is
            # refused with 503 "max_streams" at its handshake, not reset at accept.
            if cap < FEW_STREAMS:
                log.warning("at most %d streams: the open-files limit is %d (raise it with "
                            "ulimit -n, systemd's LimitNOFILE or docker's --ulimit nofile)",
                            cap, open_files)
            else:
                log.info("at most %d streams: the open-files limit is %d", cap, open_files)
            config = dataclasses.replace(config, max_streams=cap)
        self.config = config
        self.voices = voices or startup.voices_from_config(config)
        self.default_voice = next(iter(self.voices))
        self.voice_ids = frozenset(self.voices)
        self.sample_rates = {voice_id: v.sample_rate for voice_id, v in self.voices.items()}
        self.languages = {voice_id: languages.segmenter_language(v.language)
                          for voice_id, v in self.voices.items()}
        self.whole_chunk_voices = frozenset(
            voice_id for voice_id, v in self.voices.items()
            if not v.description.streams_in_chunk)
        self.metrics = Metrics()
        self.keys = KeyCheck(config.all_api_keys())
        self.limits = ClientLimits.from_config(config)
        self.proxies = TrustedProxies.from_config(config)
        self.cors = CorsPolicy(config.allowed_origins)
        self.cache = SentenceCache(config.cache_bytes)
        self.shared_cache: SharedCache | None = None
        if config.cache_url:
            self.shared_cache = SharedCache(
                config.cache_url, {v: voice.fingerprint for v, voice in self.voices.items()},
                self.sample_rates, self.metrics, ttl_s=config.cache_ttl_s,
                timeout_s=config.cache_timeout_ms / 1000.0)
        self.synthesis = Synthesis(config, self.voices, self.metrics,
                                   startup.max_batch(config, self.voices),
                                   self.default_voice, cache=self.cache,
                                   shared=self.shared_cache,
                                   max_window_frames=startup.max_window_frames(config,
                                                                               self.voices))
        self.streams: dict[str, StreamConnection] = {}
        self.speech: dict[str, SpeechStream] = {}  # POST /v1/audio/speech in flight
        self.static_dir = routes.default_static_dir()
        self.draining = False
        self._runner: web.AppRunner | None = None
        self.warming = True  # until every worker is warm and calibrated: /readyz 503
        self._pool: WorkerPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._defaults = StreamSettings(
            voice=self.default_voice, format=config.audio_format, frame_ms=config.frame_ms
        )
        self.session_limits = SessionLimits(
            max_stream_chars=config.max_stream_chars,
            max_buffered_chars=config.max_buffered_chars,
            max_chunk_chars=config.max_chunk_chars,
            first_chunk_chars=config.first_chunk_chars,
            send_buffer_s=config.send_buffer_s,
        )

    @property
    def scheduler(self) -> Scheduler:
        """For tests and benchmarks that look inside; the server itself goes through
        `synthesis`."""
        return self.synthesis.scheduler

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Listen at once (/healthz answers, /readyz says 503 warming up), let every worker
        build and warm its own sessions, calibrate, then turn ready (issue 10: warm start)."""
        self._loop = asyncio.get_running_loop()
        config = self.config
        self.synthesis.set_workers(0, self.now())
        tls = startup.tls_context(config)
        app = web.Application(client_max_size=openai_api.MAX_BODY_BYTES)
        app.router.add_get(STREAM_PATH, self._stream)
        app.router.add_post(openai_api.SPEECH_PATH, self._speech)
        app.router.add_route("*", "/{path:.*}", self._http)
        app.on_response_prepare.append(_server_header)
        app.on_response_prepare.append(self._cors_headers)
        # Streams end by their own rules (drain closes them first); shutdown only waits for
        # handlers already told to finish.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0,
                                     keepalive_timeout=config.request_timeout_s,
                                     logger=http_log)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port, ssl_context=tls,
                           reuse_address=True, backlog=self.config.listen_backlog)
        try:
            await site.start()
        except OSError as exc:  # the port taken, an address not this host's, no permission
            # uvloop's strerror repeats the address; a name lookup's errno is negative.
            why = (os.strerror(exc.errno) if exc.errno and exc.errno > 0
                   else exc.strerror or str(exc))
            raise ConfigError(f"cannot listen on {config.host}:{config.port}: {why}") from exc
        # Threads only once the port is ours: a start that cannot listen leaves none behind.
        pool = self._pool = WorkerPool(
            self.voices, config.workers, self._loop, self.synthesis.take_result,
            watchdog=WatchdogConfig(factor=config.watchdog_factor,
                                    floor_s=config.watchdog_floor_s,
                                    grace_s=config.watchdog_grace_s),
            on_change=self._on_pool_change, on_drained=self.synthesis.dispatch,
        )
        # Not fatal: without Redis the replica serves from its own cache (warned once).
        if self.shared_cache is not None and await self.shared_cache.ping():
            log.info("shared sentence cache: %s (entries live %.0f s, lookups bounded to "
                         "%.0f ms)", redacted(config.cache_url), config.cache_ttl_s,
                         config.cache_timeout_ms)
        await pool.ready()
        await asyncio.to_thread(self.synthesis.calibrate, pool, self.voices)
        await asyncio.to_thread(startup.warm_segmenters, self.voices)
        self.synthesis.start(pool, self._loop, self._deliver)
        self.warming = False
        log.info(
            "listening on %s://%s:%d%s (and %s) with %d workers, voices %s",
            "wss" if tls else "ws", self.config.host, self.port, STREAM_PATH,
            openai_api.SPEECH_PATH, self.config.workers, ", ".join(self.voice_ids),
        )

    def _on_pool_change(self, event: PoolEvent) -> None:
        """Capacity and admission follow the workers actually serving (issue 10: watchdog)."""
        pool = self._pool
        if event is PoolEvent.TERMINATED:
            self.metrics.watchdog_terminated()
        elif event is PoolEvent.REPLACED:
            self.metrics.worker_replaced()
        elif pool is not None:
            self.synthesis.set_workers(pool.serving, self.now())
            self.metrics.set_workers_serving(pool.serving)
            self.synthesis.dispatch()

    @property
    def port(self) -> int:
        assert self._runner is not None and self._runner.addresses
        return int(self._runner.addresses[0][1])

    async def drain(self, grace_s: float | None = None) -> None:
        """Stop taking streams, let those in flight finish, then close the rest with 1001.

        The order follows uvicorn's: stop accepting, wait under a timeout, then close.
        """
        grace = self.config.drain_grace_s if grace_s is None else grace_s
        if not self.draining:
            self.draining = True
            log.info("draining: %d streams in flight, grace %.1f s",
                     len(self.streams) + len(self.speech), grace)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while (self.streams or self.speech) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await self._close_streams()
        await self.close()

    async def _close_streams(self) -> None:
        """Every stream still open ends now: WebSockets with 1001, speech bodies cut short."""
        for conn in list(self.streams.values()):
            conn.feed(GoingAway(), self.now())
            with contextlib.suppress(Exception):
                await conn.ws.close(code=CloseCode.GOING_AWAY, message=b"server shutting down")
        for speech in list(self.speech.values()):
            speech.going_away(self.now())

    async def close(self) -> None:
        """Safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await self._close_streams()
            await runner.cleanup()
        # The dispatcher's pool, or one a failed start made and never handed over.
        pool = self.synthesis.take_pool() or self._pool
        self._pool = None
        if pool is not None:
            await asyncio.to_thread(pool.close)
        shared, self.shared_cache = self.shared_cache, None
        if shared is not None:
            await shared.close()

    async def __aenter__(self) -> LitestreamServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ plain HTTP

    async def _cors_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        """CORS on every answer of a shared path (cors.py), refusals included, so a page on
        an allowed origin reads why it was refused and when to retry."""
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS" and is_preflight(
                origin, request.headers.get("Access-Control-Request-Method")):
            return  # the preflight's answer carries its own
        for name, value in self.cors.response_headers(origin, request.path):
            if name == "Vary":
                response.headers.add(name, value)
            else:
                response.headers[name] = value

    async def _http(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if request.method == "OPTIONS":
            preflight = self.cors.preflight(
                request.headers.get("Origin"), path,
                request.headers.get("Access-Control-Request-Method"),
                request.headers.get("Access-Control-Request-Headers"))
            if preflight is not None:
                return web.Response(status=preflight.status, headers=dict(preflight.headers))
        if path == "/healthz":
            # Alive, unless no inference worker is left and none is coming (the pool stops
            # replacing stuck ones past its limit): a liveness probe then restarts the process
            # instead of an operator reading the ERROR line.
            if self._pool is not None and self._pool.exhausted:
                return _web(routes.text(http.HTTPStatus.SERVICE_UNAVAILABLE,
                                        "no inference worker left: restart\n"))
            return _web(routes.text(http.HTTPStatus.OK, "ok\n"))
        if path == "/readyz":
            if self.draining:
                return _web(routes.text(http.HTTPStatus.SERVICE_UNAVAILABLE, "draining\n"))
            if self.warming:
                return _web(routes.text(http.HTTPStatus.SERVICE_UNAVAILABLE, "warming up\n"))
            # The same figure litestream_load exports: 1 exactly when admission refuses.
            if self.synthesis.fullness(self.now()) >= 1.0:
                return _web(routes.text(http.HTTPStatus.SERVICE_UNAVAILABLE, "at capacity\n"))
            return _web(routes.text(http.HTTPStatus.OK, "ready\n"))
        if path == "/metrics":
            now = self.now()
            self.synthesis.refresh_gauges(now)
            self.metrics.set_load(None if self.draining or self.warming
                                  else self.synthesis.fullness(now))
            body, content_type = self.metrics.render()
            return _web(routes.response(http.HTTPStatus.OK, body, content_type))
        if path == "/v1/voices":
            return _web(routes.json_doc(http.HTTPStatus.OK,
                                        routes.voices_doc(self.voices, self.default_voice)))
        if path == openai_api.MODELS_PATH:
            return _web(routes.json_doc(http.HTTPStatus.OK, openai_api.models_document()))
        if path.startswith(openai_api.MODELS_PATH + "/"):
            model_id = path[len(openai_api.MODELS_PATH) + 1:]
            return _web(routes.json_doc(http.HTTPStatus.OK, openai_api.model_document(model_id)))
        if path == openai_api.VOICES_PATH:
            entries = [openai_api.VoiceEntry(voice_id, v.language, v.sample_rate)
                       for voice_id, v in self.voices.items()]
            return _web(routes.json_doc(http.HTTPStatus.OK, openai_api.voices_document(
                entries, self.default_voice)))
        if path in (STREAM_PATH, openai_api.SPEECH_PATH):
            # The right path with the wrong method (GET /v1/stream is routed to _stream).
            return _web(routes.api_error(openai_api.method_not_allowed(request.method, path)))
        return _web(routes.static(self.static_dir, path))

    # ------------------------------------------------------------ admission (both endpoints)

    def admit(self, request: web.Request, query: dict[str, str],
              check: Callable[[], Refusal | None], *, voice: Callable[[], str],
              priority: Callable[[], str], pace: Callable[[], str],
              request_id: str | None = None) -> Admitted | Refusal:
        """The checks every stream passes, WebSocket or HTTP, in this order: draining,
        Origin, API key, the request's own parameters (`check`; `voice`, `priority` and `pace`
        are read after it passed), the client's rate and stream quota, then admission control.
        Admitted: its stream is open in the scheduler now, so in a burst each admission test
        counts the ones accepted just before it. `request_id`: a speech request's, on its
        log lines."""
        now = self.now()
        refusal, client = self._checks(request, query, check, voice, pace, now, preview=False)
        if refusal is not None:
            self.refused(request, refusal.status, refusal.reason, request_id)
            return refusal
        session_id = uuid.uuid4().hex[:12]
        self.synthesis.open_stream(session_id, priority(), now, pace(), voice())
        return Admitted(client, session_id, request_id)

    def preview(self, request: web.Request, query: dict[str, str],
                check: Callable[[], Refusal | None], *, voice: Callable[[], str],
                pace: Callable[[], str]) -> Refusal | None:
        """What `admit` would answer now, opening nothing and taking nothing (no message from
        the rate bucket, no stream slot, no refusal counted): for a browser whose handshake
        was refused, which its WebSocket API only reports as close 1006."""
        return self._checks(request, query, check, voice, pace, self.now(), preview=True)[0]

    def _client_addr(self, request: web.Request) -> str:
        return self.proxies.client(request.remote, request.headers.getall(FORWARDED_FOR, []))

    def _checks(self, request: web.Request, query: dict[str, str],
                check: Callable[[], Refusal | None], voice: Callable[[], str],
                pace: Callable[[], str], now: float, *,
                preview: bool) -> tuple[Refusal | None, str]:
        """`admit`'s checks in its order: the first refusal (None: admitted) and the client
        the limits count. Not a preview: an admitted client holds a stream slot now."""
        refusal: Refusal | None = None
        key_label: str | None = None
        if self.draining:
            refusal = refuse_draining(DRAIN_RETRY_AFTER_S)
        elif self.warming:
            refusal = refuse_warming_up(DRAIN_RETRY_AFTER_S)
        elif not origin_allowed(request.headers.get("Origin"), self.config.allowed_origins):
            refusal = refuse_origin()
        if refusal is None and self.keys.enabled:
            key_label = self.keys.check(extract_key(dict(request.headers.items()), query))
            if key_label is None:
                refusal = refuse_unauthorized()
        if refusal is None:
            refusal = check()
        client = key_label or self._client_addr(request)
        if refusal is None:
            if preview:
                refusal = self.limits.preview_handshake(client, now)
            else:
                refusal = self.limits.admit_handshake(client, now)
        if refusal is None:
            if preview:
                admission = self.synthesis.would_admit(now, voice(), pace())
            else:
                admission = self.synthesis.admit(now, voice(), pace())
            if not admission.accepted:
                if not preview:
                    self.limits.release(client)
                refusal = refuse_admission(admission.reason, admission.retry_after_s)
        return refusal, client

    def refused(self, request: web.Request, status: int, reason: str,
                request_id: str | None = None) -> None:
        """A stream refused before it opened: counted by reason, and one INFO line naming the
        status the client got (and a speech request's id)."""
        self.metrics.refused(reason)
        log.info("refused %s %s from %s: %d %s", request.method, request.path,
                 self._client_addr(request), status, reason,
                 extra={} if request_id is None else {"request_id": request_id})

    def release(self, admitted: Admitted) -> int:
        """A stream admitted by admit() ended: free its scheduler state and quota slot.
        Returns how many queued chunks were dropped."""
        dropped = self.synthesis.close_stream(admitted.session_id, self.now())
        self.limits.release(admitted.client, admitted.session_id)
        self.synthesis.dispatch()
        return dropped

    def rate_wait_s(self, admitted: Admitted, chars: int) -> float:
        """Seconds until the client of `admitted` may send a text of `chars` (0.0: now): the
        Retry-After of a speech request whose input its session refused over the rate."""
        return self.limits.message_wait_s(admitted.client, chars, self.now(),
                                          admitted.session_id)

    def new_session(self, admitted: Admitted, settings: StreamSettings,
                    encoding: protocol.Encoding) -> tuple[StreamSession, StreamLink]:
        link = self.synthesis.link(admitted.session_id)
        session = StreamSession(
            admitted.session_id, settings=settings, encoding=encoding,
            sample_rates=self.sample_rates, languages=self.languages,
            whole_chunk_voices=self.whole_chunk_voices, limits=self.session_limits, link=link,
            metrics=self.metrics, rate_check=partial(self.limits.on_message, admitted.client,
                               stream=admitted.session_id),
            log_fields=stream_fields(admitted.session_id, admitted.request_id),
        )
        return session, link

    # ------------------------------------------------------------ POST /v1/audio/speech

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        speech = SpeechStream(self, request)
        return await speech.run()

    # ------------------------------------------------------------ one WebSocket stream

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        """protocol-v1: Endpoint. Refusals are plain HTTP, before the upgrade."""
        query = dict(request.query.items())
        parsed: list[HandshakeParams] = []

        def check_query() -> Refusal | None:
            try:
                parsed.append(protocol.parse_query(query, self._defaults, self.voice_ids))
            except QueryError as exc:
                return refuse_bad_param(exc.param, exc.message)
            return None

        if "websocket" not in request.headers.get("Upgrade", "").lower():
            # docs/protocol.md, "Why a handshake was refused": a browser's WebSocket sees a
            # refused handshake only as close 1006; the same URL over plain HTTP tells it
            # the refusal the handshake would get now, or 426 when it would be let in.
            refused = self.preview(request, query, check_query,
                                   voice=lambda: parsed[0].settings.voice,
                                   pace=lambda: parsed[0].settings.pace)
            if refused is not None:
                return _web(routes.refusal(refused))
            return _web(routes.text(http.HTTPStatus.UPGRADE_REQUIRED, "use a WebSocket client\n"))
        admitted = self.admit(request, query, check_query,
                              voice=lambda: parsed[0].settings.voice,
                              priority=lambda: parsed[0].settings.priority,
                              pace=lambda: parsed[0].settings.pace)
        if isinstance(admitted, Refusal):
            return _web(routes.refusal(admitted))
        params = parsed[0]
        ws = web.WebSocketResponse(
            max_msg_size=self.config.max_message_bytes,  # over it: close 1009
            compress=False,  # PCM does not compress; deflate would cost CPU we need for synthesis
            heartbeat=KEEPALIVE_S,
            autoping=False,  # the stream's writer answers pings (StreamConnection.pong)
        )
        try:
            await ws.prepare(request)
        except Exception:
            self.release(admitted)
            raise
        session, link = self.new_session(admitted, params.settings, params.encoding)
        conn = StreamConnection(ws=ws, request=request, session=session, link=link,
                                client=admitted.client,
                                log=SessionAdapter(log, admitted.session_id),
                                now=self.now, dispatch=self.synthesis.dispatch,
                                idle_timeout_s=self.config.idle_timeout_s,
                                slow_reader_timeout_s=self.config.slow_reader_timeout_s)
        self.streams[conn.id] = conn
        self.metrics.stream_opened()
        try:
            await conn.run()
        finally:
            self._finish(conn, admitted)
        return ws

    def _finish(self, conn: StreamConnection, admitted: Admitted) -> None:
        self.streams.pop(conn.id, None)
        underrun_ms = round(conn.link.underrun_s() * 1000)  # before release forgets the stream
        dropped = self.release(admitted)
        self.metrics.stream_closed(conn.close_code)
        conn.summarize(underrun_ms, dropped)

    def _deliver(self, stream_id: str, results: Sequence[SynthesisResult]) -> None:
        now = self.now()
        conn = self.streams.get(stream_id)
        if conn is not None:
            for result in results:
                conn.feed(result, now)
            return
        speech = self.speech.get(stream_id)
        if speech is not None:
            for result in results:
                speech.feed(result, now)

    def now(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()


async def _server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = "litestream"  # not aiohttp's version: tells an attacker less


async def run(config: Config) -> None:
    """Serve until SIGTERM/SIGINT; the first signal drains, a second exits at once."""
    server = LitestreamServer(config)
    try:
        await server.start()
    except BaseException:
        await server.close()  # no worker thread outlives a failed start
        raise
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            log.info("%s: draining for up to %.0f s (send it again to exit now)", sig.name,
                     config.drain_grace_s)
            stop.set()
            return
        log.warning("%s again: exiting now", sig.name)
        # Die of the signal itself, as a process without a handler would.
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    await stop.wait()
    await server.drain()
    log.info("drained; bye")


def serve(argv: Sequence[str] | None = None) -> int:
    try:
        args = config_mod.parse_args(argv)
        config = config_mod.build(args)
    except LitestreamError as exc:
        print(f"litestream serve: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level, config.log_json)
    # Before any thread allocates (voices load next): the workers reuse what their runs free.
    keep_freed_memory_until_trim()
    before, after = startup.raise_open_files_limit()
    if after > before:
        log.info("open files: soft limit raised from %d to %d (the hard limit)", before, after)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; Windows lacks it
        runner: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(run(config))
    except LitestreamError as exc:  # a start that cannot go on: one line, not a traceback
        log.error("cannot start: %s", exc)  # to stderr, as text or JSON as configured
        return 1
    return 0
