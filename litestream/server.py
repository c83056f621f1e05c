"""The asyncio layer: handshake, one handler per stream, lifecycle and calibration.

Thin by design (style: habit 2), like python-websockets' asyncio `Connection`: every
per-stream rule (order, flush, clear, done, limits, the send buffer) lives in
`session.StreamSession`; the scheduler and the workers are reached through `synthesis`; plain
HTTP answers are written by `routes`; what a handshake refusal says is decided by `security`.
This module moves frames between each socket and its session, and owns what is about
connections: the handshake checks, the socket loops, backpressure and shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import os
import signal
import ssl
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from litestream import config as config_mod
from litestream import protocol, routes
from litestream.config import Config
from litestream.engine import Voice, registry
from litestream.errors import CloseCode, LitestreamError
from litestream.logs import SessionAdapter, setup_logging, stream_summary
from litestream.metrics import Metrics
from litestream.protocol import HandshakeParams, QueryError, StreamSettings
from litestream.scheduler import Scheduler
from litestream.security import (
    ClientLimits,
    KeyCheck,
    Refusal,
    extract_key,
    origin_allowed,
    refuse_admission,
    refuse_bad_param,
    refuse_draining,
    refuse_origin,
    refuse_unauthorized,
)
from litestream.session import (
    ClientFrame,
    Close,
    Disconnected,
    GoingAway,
    ReceiveTimeout,
    SendAudio,
    SendMessage,
    SendTimeout,
    SessionInput,
    SessionLimits,
    StreamSession,
    StreamState,
    SynthesisResult,
)
from litestream.synthesis import StreamLink, Synthesis
from litestream.workers import PoolEvent, WatchdogConfig, WorkerPool

log = logging.getLogger("litestream.server")

STREAM_PATH = "/v1/stream"
DRAIN_RETRY_AFTER_S = 5.0  # a draining pod's clients should reconnect (to another pod) soon
ABANDONED_HANDSHAKE_S = 30.0  # an accepted handshake whose handler never ran is released
# Start-up calibration decodes its sentence (engine/registry.py: one per language) in windows of
# a mid-range size.
CALIBRATION_WINDOW_FRAMES = 64


@dataclass(frozen=True)
class _Accepted:
    """A handshake accepted, waiting for its handler. Its stream is already open in the
    scheduler, so the admission test of the next handshake counts it."""

    params: HandshakeParams
    client: str  # key label, or client address without keys
    session_id: str
    at_s: float  # loop time of acceptance


@dataclass(eq=False)
class StreamConnection:
    """One accepted WebSocket and the stream session it carries (server side)."""

    ws: ServerConnection
    session: StreamSession
    link: StreamLink
    client: str
    log: SessionAdapter
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)  # the sender has work

    @property
    def id(self) -> str:
        return self.session.id

    def feed(self, item: SessionInput, now: float) -> None:
        """Give the session an input, then let the sender move what it queued."""
        self.session.receive(item, now)
        if self.session.aborting:
            # The sender may be stuck in a send to a client that stopped reading: cut now.
            self.ws.transport.abort()
        self.wakeup.set()


class LitestreamServer:
    """The server: `async with LitestreamServer(config) as server:` or `await server.run()`."""

    def __init__(self, config: Config, voices: Mapping[str, Voice] | None = None) -> None:
        self.config = config
        self.voices = voices or load_voices(config)
        self.default_voice = next(iter(self.voices))
        self.voice_ids = frozenset(self.voices)
        self.sample_rates = {voice_id: v.sample_rate for voice_id, v in self.voices.items()}
        self.languages = {voice_id: registry.segmenter_language(v.language)
                          for voice_id, v in self.voices.items()}
        self.metrics = Metrics()
        self.keys = KeyCheck(config.all_api_keys())
        self.limits = ClientLimits.from_config(config)
        max_batch = config.max_batch or (
            8 if any(v.provider.startswith("CUDA") for v in self.voices.values()) else 1
        )
        self.synthesis = Synthesis(config, self.voices, self.metrics, max_batch,
                                   self.default_voice)
        self.streams: dict[str, StreamConnection] = {}
        self.static_dir = routes.default_static_dir()
        self.draining = False
        self.warming = True  # until every worker is warm and calibrated: /readyz 503
        self._pool: WorkerPool | None = None
        self._accepted: dict[int, _Accepted] = {}  # by id() of the connection
        self._ws_server: WsServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._defaults = StreamSettings(
            voice=self.default_voice, format=config.audio_format, frame_ms=config.frame_ms
        )
        self._session_limits = SessionLimits(
            max_stream_chars=config.max_stream_chars,
            max_buffered_chars=config.max_buffered_chars,
            max_chunk_chars=config.max_chunk_chars,
            send_buffer_s=config.send_buffer_s,
        )

    @property
    def scheduler(self) -> Scheduler:
        return self.synthesis.scheduler

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Listen at once (/healthz answers, /readyz says 503 warming up), let every worker
        build and warm its own sessions, calibrate, then turn ready (issue 10: warm start)."""
        self._loop = asyncio.get_running_loop()
        config = self.config
        self.scheduler.set_workers(0, self._now())
        pool = self._pool = WorkerPool(
            self.voices, config.workers, self._loop, self.synthesis.on_result,
            watchdog=WatchdogConfig(factor=config.watchdog_factor,
                                    floor_s=config.watchdog_floor_s,
                                    grace_s=config.watchdog_grace_s),
            on_change=self._on_pool_change,
        )
        tls = None
        if self.config.tls_cert is not None and self.config.tls_key is not None:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        self._ws_server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self._process_request,
            max_size=self.config.max_message_bytes,
            ssl=tls,
            compression=None,  # PCM does not compress; deflate would cost CPU we need for synthesis
            server_header="litestream",
        )
        await pool.ready()
        await asyncio.to_thread(self._calibrate, pool)
        self.synthesis.start(pool, self._loop, self._deliver)
        self.warming = False
        log.info(
            "listening on %s://%s:%d%s with %d workers, voices %s",
            "wss" if tls else "ws", self.config.host, self.port, STREAM_PATH,
            self.config.workers, ", ".join(self.voice_ids),
        )

    def _on_pool_change(self, event: PoolEvent) -> None:
        """Capacity and admission follow the workers actually serving (issue 10: watchdog)."""
        pool = self._pool
        if event is PoolEvent.TERMINATED:
            self.metrics.watchdog_terminated()
        elif event is PoolEvent.REPLACED:
            self.metrics.worker_replaced()
        elif pool is not None:
            self.scheduler.set_workers(pool.serving, self._now())
            self.metrics.set_workers_serving(pool.serving)
            self.synthesis.dispatch()

    def _calibrate(self, pool: WorkerPool) -> None:
        """Teach the scheduler what a step costs on this machine before the first stream.

        The cost model learns as it goes, but a burst of streams at start-up would be admitted
        and priced with the priors; so measure each voice once with every worker busy at once,
        as under load: a sentence's encode, then its decode in windows."""
        for group in registry.cost_groups(self.voices):
            voice_id = group[0]  # voices of one model and language cost the same
            text = registry.calibration_text(self.voices[voice_id].language)
            try:
                runs = pool.calibrate(voice_id, text, CALIBRATION_WINDOW_FRAMES)
            except Exception:
                log.exception("calibration of voice %s failed; using the priors", voice_id)
                continue
            for member in group:
                self.synthesis.calibrate(member, runs)
            encode_ms = 1000 * sum(r.encode_s for r in runs) / len(runs)
            frames = sum(r.frames for r in runs)
            log.info("voices %s with %d workers busy: encode %.0f ms for %d chars, decode %.2f ms"
                     " per frame in %d-frame windows", ",".join(group), len(runs), encode_ms,
                     len(text), 1000 * sum(r.decode_s for r in runs) / max(frames, 1),
                     CALIBRATION_WINDOW_FRAMES)

    @property
    def port(self) -> int:
        assert self._ws_server is not None
        sock = next(iter(self._ws_server.sockets))
        return int(sock.getsockname()[1])

    async def drain(self, grace_s: float | None = None) -> None:
        """Stop taking streams, let those in flight finish, then close the rest with 1001.

        The order follows uvicorn's: stop accepting, wait under a timeout, then close.
        """
        grace = self.config.drain_grace_s if grace_s is None else grace_s
        if not self.draining:
            self.draining = True
            log.info("draining: %d streams in flight, grace %.1f s", len(self.streams), grace)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.streams and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.streams.values()):
            conn.feed(GoingAway(), self._now())
            with contextlib.suppress(Exception):
                await conn.ws.close(CloseCode.GOING_AWAY, "server shutting down")
        await self.close()

    async def close(self) -> None:
        """Safe to call twice."""
        if self._ws_server is not None:
            self._ws_server.close(close_connections=True)
            await self._ws_server.wait_closed()
            self._ws_server = None
        pool = self.synthesis.take_pool()
        if pool is not None:
            await asyncio.to_thread(pool.close)

    async def __aenter__(self) -> LitestreamServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------ HTTP side of the handshake

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        path = url.path
        if path == STREAM_PATH:
            if "websocket" not in request.headers.get("Upgrade", "").lower():
                return routes.text(http.HTTPStatus.UPGRADE_REQUIRED, "use a WebSocket client\n")
            return self._check_handshake(connection, request, dict(parse_qsl(url.query)))
        if path == "/healthz":
            return routes.text(http.HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            if self.draining:
                return routes.text(http.HTTPStatus.SERVICE_UNAVAILABLE, "draining\n")
            if self.warming:
                return routes.text(http.HTTPStatus.SERVICE_UNAVAILABLE, "warming up\n")
            if not self.synthesis.has_capacity(self._now()):
                return routes.text(http.HTTPStatus.SERVICE_UNAVAILABLE, "at capacity\n")
            return routes.text(http.HTTPStatus.OK, "ready\n")
        if path == "/metrics":
            self.synthesis.refresh_gauges(self._now())
            body, content_type = self.metrics.render()
            return routes.response(http.HTTPStatus.OK, body, content_type)
        if path == "/v1/voices":
            return routes.json_doc(http.HTTPStatus.OK,
                                   routes.voices_doc(self.voices, self.default_voice))
        return routes.static(self.static_dir, path)

    def _check_handshake(self, connection: ServerConnection, request: Request,
                         query: dict[str, str]) -> Response | None:
        """protocol-v1: Endpoint. Refusals are plain HTTP, before the upgrade."""
        now = self._now()
        client_addr = _address(connection)
        refusal: Refusal | None = None
        params: HandshakeParams | None = None
        key_label: str | None = None
        if self.draining:
            refusal = refuse_draining(DRAIN_RETRY_AFTER_S)
        elif self.warming:
            refusal = refuse_admission("warming up", DRAIN_RETRY_AFTER_S)
        elif not origin_allowed(request.headers.get("Origin"), self.config.allowed_origins):
            refusal = refuse_origin()
        if refusal is None and self.keys.enabled:
            key_label = self.keys.check(extract_key(dict(request.headers.raw_items()), query))
            if key_label is None:
                refusal = refuse_unauthorized()
        if refusal is None:
            try:
                params = protocol.parse_query(query, self._defaults, self.voice_ids)
            except QueryError as exc:
                refusal = refuse_bad_param(exc.param, exc.message)
        client = key_label or client_addr
        if refusal is None:
            refusal = self.limits.admit_handshake(client, now)
        if refusal is None and params is not None:
            admission = self.synthesis.admit(now, params.settings.voice)
            if not admission.accepted:
                self.limits.release(client)
                refusal = refuse_admission(admission.reason, admission.retry_after_s)
        if refusal is not None:
            self.metrics.refused(refusal.reason)
            log.info("refused handshake from %s: %d %s", client_addr, refusal.status,
                     refusal.reason)
            return routes.refusal(refusal)
        assert params is not None
        # Reserve the stream in the scheduler now, not when the handler starts: in a burst
        # of handshakes, each admission test must count the ones accepted just before it.
        session_id = uuid.uuid4().hex[:12]
        self.synthesis.open_stream(session_id, params.settings.priority, now)
        self._accepted[id(connection)] = _Accepted(params, client, session_id, now)
        self._forget_abandoned(now)
        return None

    def _forget_abandoned(self, now: float) -> None:
        """Release handshakes accepted long ago whose handler never ran (the client left)."""
        for key, accepted in list(self._accepted.items()):
            if now - accepted.at_s > ABANDONED_HANDSHAKE_S:
                del self._accepted[key]
                self.synthesis.close_stream(accepted.session_id, now)
                self.limits.release(accepted.client)

    # ------------------------------------------------------------ one stream

    async def _handle(self, ws: ServerConnection) -> None:
        accepted = self._accepted.pop(id(ws), None)
        if accepted is None:  # released as abandoned: the client took too long
            await ws.close(CloseCode.TRY_AGAIN_LATER, "handshake took too long")
            return
        conn = self._open(ws, accepted)
        sender = asyncio.create_task(self._send_loop(conn))
        try:
            await self._receive_loop(conn)
        finally:
            conn.feed(Disconnected(), self._now())
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            self._finish(conn)

    def _open(self, ws: ServerConnection, accepted: _Accepted) -> StreamConnection:
        settings = accepted.params.settings
        link = self.synthesis.link(accepted.session_id)
        session = StreamSession(
            accepted.session_id, settings=settings, encoding=accepted.params.encoding,
            sample_rates=self.sample_rates, languages=self.languages,
            limits=self._session_limits, link=link,
            metrics=self.metrics, rate_check=partial(self.limits.on_message, accepted.client),
        )
        conn = StreamConnection(ws=ws, session=session, link=link, client=accepted.client,
                                log=SessionAdapter(log, accepted.session_id))
        self.streams[conn.id] = conn
        self.metrics.stream_opened()
        return conn

    def _finish(self, conn: StreamConnection) -> None:
        self.streams.pop(conn.id, None)
        underrun_ms = round(conn.link.underrun_s() * 1000)
        dropped = self.synthesis.close_stream(conn.id, self._now())
        self.limits.release(conn.client)
        session = conn.session
        code = conn.ws.close_code
        if code is None:
            code = session.close_code if session.close_code is not None else CloseCode.NORMAL
        self.metrics.stream_closed(code)
        stream_summary(
            conn.log.logger, session=conn.id, chars=session.chars,
            audio_ms=round(session.cursor_ms), ttfa_ms=session.ttfa_ms, stalls=conn.link.stalls,
            underrun_ms=underrun_ms, close_code=code,
            reason=session.close_reason or f"dropped {dropped} queued chunks",
        )
        self.synthesis.dispatch()

    async def _receive_loop(self, conn: StreamConnection) -> None:
        """Read client messages until the connection is gone. Reading goes on after `end`
        (a `clear` may still interrupt what is left to speak) and after the session queued
        its Close (the close handshake needs the client's frames read)."""
        idle = self.config.idle_timeout_s
        while True:
            try:
                frame = await asyncio.wait_for(conn.ws.recv(), timeout=idle)
            except TimeoutError:
                conn.feed(ReceiveTimeout(), self._now())
                continue
            except ConnectionClosed:
                return
            conn.feed(ClientFrame(frame), self._now())
            self.synthesis.dispatch()

    async def _send_loop(self, conn: StreamConnection) -> None:
        """The one writer of a stream: sends what its session queued, in order.

        Backpressure: `send` waits while the socket's buffer is full. A client that stops
        reading for `slow_reader_timeout_s` is cut off, and the session cuts off one with more
        than `send_buffer_s` of audio waiting; so memory stays bounded (the scheduler also
        stops synthesizing past its lookahead cap for a stream whose audio piles up).
        """
        timeout = self.config.slow_reader_timeout_s
        session, ws = conn.session, conn.ws
        try:
            while True:
                item = session.next_outgoing()
                match item:
                    case None:
                        if session.state is StreamState.CLOSED:
                            return
                        conn.wakeup.clear()
                        await conn.wakeup.wait()
                    case SendMessage(payload=payload) | SendAudio(payload=payload):
                        try:
                            await asyncio.wait_for(ws.send(payload), timeout=timeout)
                        except TimeoutError:
                            conn.log.warning("client stopped reading for %.0f s; closing", timeout)
                            conn.feed(SendTimeout(), self._now())
                            ws.transport.abort()
                            return
                    case Close(code=code, reason=reason, abort=abort):
                        if abort:
                            ws.transport.abort()
                        else:
                            await ws.close(code, reason)
                        return
        except ConnectionClosed:
            return
        except Exception:  # a bug must cost this stream only, never the server
            conn.log.exception("sender failed")
            with contextlib.suppress(Exception):
                await ws.close(CloseCode.INTERNAL_ERROR, "internal error")

    def _deliver(self, stream_id: str, results: Sequence[SynthesisResult]) -> None:
        conn = self.streams.get(stream_id)
        if conn is None:
            return
        now = self._now()
        for result in results:
            conn.feed(result, now)

    def _now(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()


def _address(connection: ServerConnection) -> str:
    peer = connection.remote_address
    return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"


def load_voices(config: Config) -> dict[str, Voice]:
    """Every voice by id (engine/registry.py); the first one loaded is the default."""
    return registry.load_voices(
        config.voice, config.extra_voices, kokoro_voices=config.kokoro,
        cache_dir=config.model_cache_dir, intra_op_threads=config.intra_op_threads,
        device=config.device, deterministic=config.deterministic,
    )


async def run(config: Config) -> None:
    """Serve until SIGTERM/SIGINT; the first signal drains, a second exits at once."""
    server = LitestreamServer(config)
    await server.start()
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


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = config_mod.parse_args(argv)
        config = config_mod.build(args)
    except LitestreamError as exc:
        print(f"litestream serve: {exc}")
        return 2
    setup_logging(config.log_level, config.log_json)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; Windows lacks it
        asyncio.run(run(config))
    else:
        uvloop.run(run(config))
    return 0
