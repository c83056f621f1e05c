"""The asyncio layer: handshake, one handler per stream, frames out, drain at shutdown.

Thin by design (style: habit 2). Chunk boundaries belong to the segmenter, deadlines and order
to the scheduler, the wire format to `protocol`, limits to `security`. This module moves
messages between the socket and those parts, and owns only what is about connections:
ordering of outgoing frames, backpressure, and the lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import mimetypes
import os
import signal
import ssl
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server as WsServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from litestream import config as config_mod
from litestream import protocol
from litestream.config import Config
from litestream.engine import PiperVoice
from litestream.errors import CloseCode, ErrorCode, LitestreamError, ProtocolError
from litestream.logs import SessionAdapter, setup_logging, stream_summary
from litestream.metrics import Metrics
from litestream.protocol import Encoding, HandshakeParams, QueryError, StreamSettings
from litestream.scheduler import ChunkJob, Priority, Scheduler, SchedulerConfig
from litestream.security import (
    ClientLimits,
    KeyCheck,
    Refusal,
    extract_key,
    origin_allowed,
    refusal_body,
    refusal_headers,
    refuse_bad_param,
    refuse_capacity,
    refuse_draining,
    refuse_origin,
    refuse_unauthorized,
)
from litestream.segmenter import Segmenter
from litestream.workers import PoolEvent, WatchdogConfig, WorkerPool, WorkResult

log = logging.getLogger("litestream.server")

STREAM_PATH = "/v1/stream"
DRAIN_RETRY_AFTER_S = 5.0
ABANDONED_HANDSHAKE_S = 30.0  # an accepted handshake whose handler never ran is released
# Measured on every worker at start-up: an ordinary sentence or two (see _calibrate).
CALIBRATION_TEXT = (
    "The weather today is mild, with a light breeze from the west. "
    "Later this evening, clouds will gather and rain may fall."
)  # a draining pod's clients should reconnect (to another pod) soon
_CLOSE = object()  # outbox sentinel: close the stream normally after what precedes it


@dataclass(frozen=True, slots=True)
class _Audio:
    """An outbox item a `clear` drops: a frame of audio, or the `chunk` event announcing it."""

    payload: str | bytes
    ms: float            # audio in this item (0 for the chunk event)
    announces: bool = False


def default_static_dir() -> Path | None:
    """The browser player: clients/browser in a source checkout (and in the Docker image)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "static", here.parent / "clients" / "browser"):
        if (candidate / "index.html").is_file():
            return candidate
    return None


@dataclass
class Stream:
    """One connection's state, owned by the event loop."""

    id: str
    ws: ServerConnection
    encoding: Encoding
    settings: StreamSettings
    segmenter: Segmenter
    client: str                          # key label, or client address without keys
    log: SessionAdapter
    sample_rate: int
    outbox: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    results: dict[int, WorkResult] = field(default_factory=dict)  # done, waiting for order
    pending_seqs: deque[int] = field(default_factory=deque)      # submitted, not yet sent
    flush_marks: deque[int] = field(default_factory=deque)       # send `flushed` after seq
    last_seq: int = -1                   # newest seq handed out for this stream
    ending: bool = False                 # `end` received
    shaped: bool = False                 # the segmenter got its chunk shape for this start
    finished: bool = False               # `done` queued
    chars: int = 0                       # text accepted, characters
    chunks_sent: int = 0
    cursor_ms: float = 0.0               # start_ms of the next chunk (audio sent so far)
    first_text_at: float | None = None   # loop time of the first speakable text
    ttfa_ms: int | None = None
    stalls: int = 0                      # the scheduler's estimate of listener underruns
    close_code: int = CloseCode.NORMAL
    close_reason: str = ""


class LitestreamServer:
    """The server: `async with LitestreamServer(config) as server:` or `await server.run()`."""

    def __init__(self, config: Config, voices: dict[str, PiperVoice] | None = None) -> None:
        self.config = config
        self.voices = voices or load_voices(config)
        self.default_voice = next(iter(self.voices))
        self.voice_ids = frozenset(self.voices)
        self.metrics = Metrics()
        self.keys = KeyCheck(config.all_api_keys())
        self.limits = ClientLimits.from_config(config)
        self.scheduler = Scheduler(_scheduler_config(config), workers=config.workers)
        self.streams: dict[str, Stream] = {}
        self.static_dir = default_static_dir()
        self.draining = False
        self.warming = True  # until every worker is warm and calibrated: /readyz 503
        # Accepted handshakes waiting for their handler, by connection: (params, client,
        # session id, accepted at). Their streams are already open in the scheduler.
        self._accepted: dict[int, tuple[HandshakeParams, str, str, float]] = {}
        self._pool: WorkerPool | None = None
        self._ws_server: WsServer | None = None
        self._wakeup: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._max_batch = config.max_batch or (
            8 if any(v.provider.startswith("CUDA") for v in self.voices.values()) else 1
        )
        self._defaults = StreamSettings(
            voice=self.default_voice, format=config.audio_format, frame_ms=config.frame_ms
        )

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Listen at once (/healthz answers, /readyz says 503 warming up), warm every worker
        on the shapes it will meet, calibrate, then turn ready (issue 10: warm start)."""
        self._loop = asyncio.get_running_loop()
        config = self.config
        self._pool = WorkerPool(
            self.voices, config.workers, self._loop, self._on_result,
            watchdog=WatchdogConfig(factor=config.watchdog_factor,
                                    floor_s=config.watchdog_floor_s,
                                    grace_s=config.watchdog_grace_s),
            on_change=self._on_pool_change,
        )
        self.scheduler.set_workers(0, self._now())
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
        await self._pool.ready()
        await asyncio.to_thread(self._calibrate, self._pool)
        self.warming = False
        log.info(
            "listening on %s://%s:%d%s with %d workers, voices %s",
            "wss" if tls else "ws", self.config.host, self.port, STREAM_PATH,
            self.config.workers, ", ".join(self.voice_ids),
        )

    def _calibrate(self, pool: WorkerPool) -> None:
        """Teach the scheduler what a chunk costs on this machine before the first stream.

        The cost model learns as it goes, but a burst of streams at start-up would be admitted
        and shaped with the priors; so measure each voice once with every worker busy at once,
        as under load."""
        for voice_id in self.voices:
            results = [r for r in pool.calibrate(voice_id, CALIBRATION_TEXT)
                       if r.audio is not None and len(r.audio)]
            if not results:
                log.warning("calibration of voice %s failed; using the priors", voice_id)
                continue
            rate = self.voices[voice_id].sample_rate
            audio_s = sum(len(r.audio) for r in results if r.audio is not None) / rate
            rtf = sum(r.compute_s for r in results) / audio_s
            per_char_s = audio_s / (len(CALIBRATION_TEXT) * len(results))
            # The default voice also prices streams whose voice is not known yet ("").
            for key in (voice_id, "") if voice_id == self.default_voice else (voice_id,):
                self.scheduler.model.calibrate(
                    key, audio_per_char_s=per_char_s, compute_per_audio_s=rtf)
            log.info("voice %s: RTF %.3f per worker with %d workers busy, %.3f s audio/char",
                     voice_id, rtf, len(results), per_char_s)

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
        for stream in list(self.streams.values()):
            stream.close_code, stream.close_reason = CloseCode.GOING_AWAY, "server shutting down"
            with contextlib.suppress(Exception):
                await stream.ws.close(CloseCode.GOING_AWAY, "server shutting down")
        await self.close()

    async def close(self) -> None:
        """Safe to call twice."""
        if self._ws_server is not None:
            self._ws_server.close(close_connections=True)
            await self._ws_server.wait_closed()
            self._ws_server = None
        if self._wakeup is not None:
            self._wakeup.cancel()
        if self._pool is not None:
            pool, self._pool = self._pool, None
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
                return _text(http.HTTPStatus.UPGRADE_REQUIRED, "use a WebSocket client\n")
            return self._check_handshake(connection, request, dict(parse_qsl(url.query)))
        if path == "/healthz":
            return _text(http.HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            if self.draining:
                return _text(http.HTTPStatus.SERVICE_UNAVAILABLE, "draining\n")
            if self.warming:
                return _text(http.HTTPStatus.SERVICE_UNAVAILABLE, "warming up\n")
            if not self.scheduler.has_capacity(self._now()):
                return _text(http.HTTPStatus.SERVICE_UNAVAILABLE, "at capacity\n")
            return _text(http.HTTPStatus.OK, "ready\n")
        if path == "/metrics":
            self._refresh_gauges()
            body, content_type = self.metrics.render()
            return _response(http.HTTPStatus.OK, body, content_type)
        if path == "/v1/voices":
            return _json(http.HTTPStatus.OK, self._voices_doc())
        return self._static(path)

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
            refusal = refuse_capacity(DRAIN_RETRY_AFTER_S)
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
        if refusal is None:
            admission = self.scheduler.admit(now)
            if not admission.accepted:
                self.limits.release(client)
                refusal = refuse_capacity(admission.retry_after_s)
        if refusal is not None:
            self.metrics.refused(refusal.reason)
            log.info("refused handshake from %s: %d %s", client_addr, refusal.status,
                     refusal.reason)
            return _refusal_response(refusal)
        assert params is not None
        # Reserve the stream in the scheduler now, not when the handler starts: in a burst
        # of handshakes, each admission test must count the ones accepted just before it.
        session = uuid.uuid4().hex[:12]
        self.scheduler.open_stream(session, Priority(params.settings.priority), now)
        self._accepted[id(connection)] = (params, client, session, now)
        self._forget_abandoned(now)
        return None

    def _forget_abandoned(self, now: float) -> None:
        """Release handshakes accepted long ago whose handler never ran (the client left)."""
        for key, (_, client, session, at) in list(self._accepted.items()):
            if now - at > ABANDONED_HANDSHAKE_S:
                del self._accepted[key]
                self.scheduler.close_stream(session, now)
                self.limits.release(client)

    def _static(self, path: str) -> Response:
        if self.static_dir is None:
            return _text(http.HTTPStatus.NOT_FOUND, "not found\n")
        if path in ("/", "/index.html"):
            target = self.static_dir / "index.html"
        elif path.startswith("/static/"):
            name = path[len("/static/"):]
            target = (self.static_dir / name).resolve()
            # No path traversal, and no subfolders (the player's test tooling lives in one):
            # only files directly in the static directory are served.
            if target.parent != self.static_dir.resolve():
                return _text(http.HTTPStatus.NOT_FOUND, "not found\n")
        else:
            return _text(http.HTTPStatus.NOT_FOUND, "not found\n")
        if not target.is_file():
            return _text(http.HTTPStatus.NOT_FOUND, "not found\n")
        content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if target.suffix in (".js", ".mjs"):
            content_type = "text/javascript"
        return _response(http.HTTPStatus.OK, target.read_bytes(), content_type)

    def _voices_doc(self) -> dict[str, Any]:
        return {
            "default": self.default_voice,
            "voices": [
                {"id": v.info.id, "language": v.info.language, "sample_rate": v.sample_rate,
                 "source": v.info.source}
                for v in self.voices.values()
            ],
        }

    # ------------------------------------------------------------ one stream

    async def _handle(self, ws: ServerConnection) -> None:
        accepted = self._accepted.pop(id(ws), None)
        if accepted is None:  # released as abandoned: the client took too long
            await ws.close(CloseCode.TRY_AGAIN_LATER, "handshake took too long")
            return
        params, client, session, _ = accepted
        settings = params.settings
        stream = Stream(
            id=session, ws=ws, encoding=params.encoding, settings=settings,
            segmenter=Segmenter(max_chars=self.config.max_chunk_chars),
            client=client, log=SessionAdapter(log, session),
            sample_rate=self.voices[settings.voice].sample_rate,
        )
        self.streams[session] = stream
        self.metrics.stream_opened()
        sender = asyncio.create_task(self._send_loop(stream))
        self._queue(stream, protocol.ready(session, settings, stream.sample_rate))
        try:
            if await self._receive_loop(stream):
                await sender  # it sends what is queued, `done` or a fatal error, then closes
        except ConnectionClosed:
            pass
        finally:
            if not sender.done():
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sender
            elif not sender.cancelled():
                failure = sender.exception()
                if failure is not None and not isinstance(failure, ConnectionClosed):
                    stream.log.error("sender failed: %r", failure)
            self._finish(stream)

    def _finish(self, stream: Stream) -> None:
        self.streams.pop(stream.id, None)
        underrun_ms = round(self.scheduler.underrun_s(stream.id) * 1000)
        dropped = self.scheduler.close_stream(stream.id, self._now())
        self.limits.release(stream.client)
        code = stream.ws.close_code if stream.ws.close_code is not None else stream.close_code
        self.metrics.stream_closed(code)
        stream_summary(
            stream.log.logger, session=stream.id, chars=stream.chars,
            audio_ms=round(stream.cursor_ms), ttfa_ms=stream.ttfa_ms, stalls=stream.stalls,
            underrun_ms=underrun_ms, close_code=code,
            reason=stream.close_reason or f"dropped {dropped} queued chunks",
        )
        self._dispatch()

    async def _receive_loop(self, stream: Stream) -> bool:
        """Read client messages until a fatal error (True: the sender must finish and close)
        or until the connection is gone (False). Reading goes on after `end`: a `clear` may
        still interrupt what is left to speak (barge-in); the sender closes after `done`."""
        idle = self.config.idle_timeout_s
        while True:
            try:
                frame = await asyncio.wait_for(stream.ws.recv(), timeout=idle)
            except TimeoutError:
                if stream.ending or stream.pending_seqs or not stream.outbox.empty():
                    continue  # still speaking: not idle
                stream.close_code, stream.close_reason = CloseCode.POLICY, "idle timeout"
                await stream.ws.close(CloseCode.POLICY, "idle timeout")
                return False
            try:
                self._on_frame(stream, frame)
                continue
            except ProtocolError as exc:
                error = exc
                stream.log.info("protocol error %s: %s", error.code, error.message)
            except Exception:  # a bug must cost this stream only, never the server
                stream.log.exception("internal error while handling a message")
                error = ProtocolError(ErrorCode.INTERNAL, "internal error", fatal=True)
            self.metrics.error(error.code)
            self._queue(stream, protocol.error(error.code, error.message, error.fatal))
            if error.fatal:
                stream.close_code, stream.close_reason = error.close_code, str(error.code)
                self._queue(stream, (error.close_code, error.message))
                return True

    def _on_frame(self, stream: Stream, frame: str | bytes) -> None:
        now = self._now()
        message = protocol.parse(protocol.decode(frame, stream.encoding), self.voice_ids)
        if stream.ending and not isinstance(message, protocol.ClearMsg):
            raise ProtocolError(ErrorCode.BAD_MESSAGE,
                                "the stream has ended; only clear is accepted after end")
        if isinstance(message, protocol.TextMsg):
            self._check_text_limits(stream, message.text)
        # `clear` and `end` are never rate limited: dropping a barge-in or an end would leave
        # the client waiting for `cleared` or `done` forever.
        if not isinstance(message, protocol.ClearMsg | protocol.EndMsg):
            chars = len(message.text) if isinstance(message, protocol.TextMsg) else 0
            wait_s = self.limits.on_message(stream.client, chars, now)
            if wait_s > 0:
                # Refused, and said so: none of this message was accepted.
                raise ProtocolError(ErrorCode.RATE_LIMITED,
                                    f"over the message or text rate; retry in {wait_s:.1f} s")
        if isinstance(message, protocol.ConfigMsg):
            stream.settings = protocol.apply_config(stream.settings, message)
            if "priority" in message.changes:
                # Re-opening a stream in the scheduler changes its class, keeps its queue.
                self.scheduler.open_stream(stream.id, Priority(stream.settings.priority), now)
        elif isinstance(message, protocol.TextMsg):
            self._accept_text(stream, message.text, now)
            if message.flush:
                self._flush(stream, now)
        elif isinstance(message, protocol.FlushMsg):
            self._flush(stream, now)
        elif isinstance(message, protocol.ClearMsg):
            self._clear(stream, now)
        elif isinstance(message, protocol.EndMsg):
            stream.ending = True
            self._submit(stream, stream.segmenter.flush(), now)
            self._maybe_done(stream)
        self._dispatch()

    def _check_text_limits(self, stream: Stream, text: str) -> None:
        if stream.chars + len(text) > self.config.max_stream_chars:
            raise ProtocolError(ErrorCode.TEXT_TOO_LONG,
                                f"stream text over {self.config.max_stream_chars} characters",
                                fatal=True)
        if stream.segmenter.buffered_chars + len(text) > self.config.max_buffered_chars:
            # Refused, and said so: the client knows this text was not accepted.
            raise ProtocolError(ErrorCode.TEXT_TOO_LONG,
                                f"buffered text over {self.config.max_buffered_chars} characters;"
                                " send flush or smaller pieces")

    def _accept_text(self, stream: Stream, text: str, now: float) -> None:
        stream.chars += len(text)
        if not stream.shaped:
            # protocol-v1: Timing promise. The first chunk is sized so first audio comes within
            # target given the work queued now; the chunks after it grow as fast as the load
            # allows (scheduler-notes: the burst problem).
            shape = self.scheduler.chunk_shape(now, stream.settings.voice)
            stream.segmenter.first_chunk_chars = shape.first_chunk_chars
            stream.segmenter.chunk_growth = shape.chunk_growth
            stream.segmenter.ramp_margin_chars = shape.ramp_margin_chars
            stream.shaped = True
        self._submit(stream, stream.segmenter.feed(text), now)

    def _flush(self, stream: Stream, now: float) -> None:
        self._submit(stream, stream.segmenter.flush(), now)
        stream.flush_marks.append(stream.last_seq)
        self._pump(stream)

    def _clear(self, stream: Stream, now: float) -> None:
        """Barge-in: drop buffered text, queued chunks and every frame not yet sent."""
        stream.segmenter.clear()
        stream.shaped = False  # the next text starts afresh: shape it for the load then
        self.scheduler.clear(stream.id, now)
        stream.results.clear()
        stream.pending_seqs.clear()
        stream.flush_marks.clear()
        # Drop every frame not yet sent (and the chunk events announcing them); keep control
        # messages such as an `error` queued before the clear.
        kept: list[Any] = []
        while not stream.outbox.empty():
            item = stream.outbox.get_nowait()
            if isinstance(item, _Audio):
                stream.cursor_ms -= item.ms  # start_ms counts audio actually sent
                stream.chunks_sent -= item.announces
            else:
                kept.append(item)
        for item in kept:
            stream.outbox.put_nowait(item)
        self._queue(stream, protocol.cleared(stream.last_seq))
        self._maybe_done(stream)  # a clear after `end` leaves nothing to speak

    def _submit(self, stream: Stream, chunks: Sequence[str], now: float) -> None:
        for text in chunks:
            if stream.first_text_at is None:
                stream.first_text_at = now
            job = self.scheduler.submit(stream.id, text, speed=stream.settings.speed,
                                        voice=stream.settings.voice, now=now)
            stream.last_seq = job.seq
            stream.pending_seqs.append(job.seq)

    # ------------------------------------------------------------ scheduling and results

    def _now(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()

    def _dispatch(self) -> None:
        """Give every idle worker the most urgent work, as late as possible."""
        pool = self._pool
        if pool is None:
            return
        now = self._now()
        while pool.idle:
            jobs = self.scheduler.next_jobs(now, self._max_batch)
            if not jobs:
                break
            for group in _same_voice_and_speed(jobs):
                if pool.idle:
                    pool.dispatch(group)
                else:  # cannot happen with max_jobs=1; keeps a mixed batch honest
                    for job in group:
                        self.scheduler.fail(job, now)
        if self._wakeup is not None:
            self._wakeup.cancel()
            self._wakeup = None
        if pool.idle:
            wake = self.scheduler.next_wakeup_s(now)
            if wake is not None and self._loop is not None:
                self._wakeup = self._loop.call_at(max(wake, now + 0.001), self._dispatch)

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
            self._dispatch()

    def _on_result(self, result: WorkResult) -> None:
        now = self._now()
        job = result.job
        audio_s = 0.0 if result.audio is None else len(result.audio) / self._rate(job.voice)
        if result.audio is None:
            self.scheduler.fail(job, now)
            keep = job.stream_id in self.streams
        else:
            keep = self.scheduler.complete(job, audio_s=audio_s, compute_s=result.compute_s,
                                           now=now)
            self.metrics.synthesized(result.compute_s, audio_s)
            if job.overrun:
                log.warning("session=%s seq=%d took %.2f s, predicted %.2f s", job.stream_id,
                            job.seq, result.compute_s, job.predicted_compute_s)
        stream = self.streams.get(job.stream_id)
        if keep and stream is not None and job.seq in stream.pending_seqs:
            stream.results[job.seq] = result
            self._pump(stream)
        self._dispatch()

    def _rate(self, voice: str) -> int:
        return self.voices[voice].sample_rate

    def _pump(self, stream: Stream) -> None:
        """Move finished chunks to the outbox in seq order (protocol-v1: frames in order)."""
        now = self._now()
        while stream.pending_seqs and stream.pending_seqs[0] in stream.results:
            seq = stream.pending_seqs.popleft()
            result = stream.results.pop(seq)
            if result.audio is None:
                self.metrics.error(ErrorCode.SYNTHESIS_FAILED)
                self._queue(stream, protocol.error(
                    ErrorCode.SYNTHESIS_FAILED, f"chunk {seq} could not be synthesized", False))
            else:
                self._queue_audio(stream, result, now)
        while stream.flush_marks and (
            not stream.pending_seqs or stream.flush_marks[0] < stream.pending_seqs[0]
        ):
            self._queue(stream, protocol.flushed(stream.flush_marks.popleft()))
        self._maybe_done(stream)

    def _queue_audio(self, stream: Stream, result: WorkResult, now: float) -> None:
        assert result.audio is not None
        job = result.job
        settings = stream.settings
        rate = self._rate(job.voice)
        pcm = protocol.to_pcm(result.audio, settings.format)
        duration_ms = protocol.samples_to_ms(len(result.audio), rate)
        audio_s = len(result.audio) / rate
        if stream.ttfa_ms is None and stream.first_text_at is not None:
            ttfa_s = now - stream.first_text_at
            stream.ttfa_ms = round(ttfa_s * 1000)
            self.metrics.first_audio(ttfa_s)
        event = protocol.chunk(job.seq, job.text, round(stream.cursor_ms), duration_ms)
        stream.outbox.put_nowait(_Audio(protocol.encode(event, stream.encoding), 0.0, True))
        size = protocol.frame_bytes(rate, settings.frame_ms, settings.format)
        ms_per_byte = 1000.0 / (rate * protocol.BYTES_PER_SAMPLE[settings.format])
        for frame in protocol.split_frames(pcm, size):
            payload = protocol.encode_audio(job.seq, frame, stream.encoding)
            stream.outbox.put_nowait(_Audio(payload, len(frame) * ms_per_byte))
        stream.cursor_ms += duration_ms
        stream.chunks_sent += 1
        # The scheduler owns the playback clock and the listener's stall estimate.
        underrun_before = self.scheduler.underrun_s(stream.id)
        self.scheduler.audio_sent(stream.id, audio_s, now)
        gap_s = self.scheduler.underrun_s(stream.id) - underrun_before
        if gap_s > 0:
            stream.stalls += 1
            self.metrics.stall(gap_s)
        # Slack at send time: how long before its deadline this chunk's audio went out.
        self.metrics.chunk_sent(job.deadline_s - now, audio_s, len(pcm))

    def _maybe_done(self, stream: Stream) -> None:
        if (stream.ending and not stream.finished and not stream.pending_seqs
                and not stream.flush_marks):
            stream.finished = True
            self._queue(stream, protocol.done(
                chars=stream.chars, chunks=stream.chunks_sent, audio_ms=round(stream.cursor_ms),
                ttfa_ms=stream.ttfa_ms,
                underrun_ms=round(self.scheduler.underrun_s(stream.id) * 1000)))
            self._queue(stream, _CLOSE)

    def _queue(self, stream: Stream, message: Any) -> None:
        if isinstance(message, dict):
            message = protocol.encode(message, stream.encoding)
        stream.outbox.put_nowait(message)

    async def _send_loop(self, stream: Stream) -> None:
        """The one writer of a stream: keeps frames and events in the order they were queued.

        Backpressure: `send` waits while the socket's buffer is full. A client that stops
        reading for `slow_reader_timeout_s` is cut off, so memory stays bounded (the scheduler
        also stops synthesizing past its lookahead cap for a stream whose audio piles up).
        """
        timeout = self.config.slow_reader_timeout_s
        ws = stream.ws
        while True:
            item = await stream.outbox.get()
            if item is _CLOSE:
                await ws.close(CloseCode.NORMAL, "done")
                return
            if isinstance(item, tuple):  # (close code, reason) after a fatal error
                await ws.close(item[0], item[1][:120])
                return
            payload = item.payload if isinstance(item, _Audio) else item
            try:
                await asyncio.wait_for(ws.send(payload), timeout=timeout)
            except TimeoutError:
                stream.close_code, stream.close_reason = CloseCode.POLICY, "slow reader"
                stream.log.warning("client stopped reading for %.0f s; closing", timeout)
                ws.transport.abort()
                return

    def _refresh_gauges(self) -> None:
        stats = self.scheduler.stats()
        self.metrics.set_queue(stats.queued_jobs, self.scheduler.load(self._now()))


# ---------------------------------------------------------------- helpers

def _same_voice_and_speed(jobs: Sequence[ChunkJob]) -> list[list[ChunkJob]]:
    """One session.run takes one voice at one speed."""
    groups: dict[tuple[str, float], list[ChunkJob]] = {}
    for job in jobs:
        groups.setdefault((job.voice, job.speed), []).append(job)
    return list(groups.values())


def _address(connection: ServerConnection) -> str:
    peer = connection.remote_address
    return str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"


def _response(status: http.HTTPStatus, body: bytes, content_type: str,
              retry_after_s: float | None = None) -> Response:
    headers = Headers()
    headers["Content-Type"] = content_type
    headers["Content-Length"] = str(len(body))
    headers["Cache-Control"] = "no-store"
    if retry_after_s is not None:
        headers["Retry-After"] = str(max(1, round(retry_after_s)))
    return Response(status.value, status.phrase, headers, body)


def _refusal_response(refusal: Refusal) -> Response:
    status = http.HTTPStatus(refusal.status)
    body = refusal_body(refusal)
    headers = Headers(refusal_headers(refusal))
    headers["Content-Length"] = str(len(body))
    return Response(status.value, status.phrase, headers, body)


def _text(status: http.HTTPStatus, text: str, retry_after_s: float | None = None) -> Response:
    return _response(status, text.encode(), "text/plain; charset=utf-8", retry_after_s)


def _json(status: http.HTTPStatus, doc: Any) -> Response:
    return _response(status, json.dumps(doc).encode(), "application/json")


def _scheduler_config(config: Config) -> SchedulerConfig:
    return SchedulerConfig(
        first_audio_target_s=config.first_audio_target_s,
        first_chunk_slack_s=config.first_chunk_slack_ms / 1000.0,
        jitter_s=config.jitter_s,
        lookahead_s=config.lookahead_s,
        max_lookahead_s=config.max_lookahead_s,
        target_utilization=config.target_utilization,
        max_streams=config.max_streams,
    )


def load_voices(config: Config) -> dict[str, PiperVoice]:
    """Load the default voice first (its id becomes the default), then the extra ones."""
    voices: dict[str, PiperVoice] = {}
    for path in (config.voice, *config.extra_voices):
        voice = PiperVoice.load(
            path, intra_op_threads=config.intra_op_threads, device=config.device,
            deterministic=config.deterministic,
        )
        voices.setdefault(voice.info.id, voice)
    return voices


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
