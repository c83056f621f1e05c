"""Locust load test for litestream: many listeners, each playing its stream in real time.

    locust -f loadtest/locustfile.py --headless -u 50 -r 10 -t 60s --host ws://127.0.0.1:8765

Each task opens one protocol-v1 stream, sends a paragraph and `end`, and reads until `done`,
feeding a simulated real-time listener (`litestream.client.PlaybackClock`). What a listener
feels goes into locust's statistics, request type "WS":

- `connect`: the handshake (ms). Refusals (503 capacity/draining, 429 quota, ...) are failures.
- `ttfa`: text sent -> first audio frame, ms.
- `chunk_lateness`: for every chunk after the first, how long the listener waited for its
  first frame after it needed it (0 when the audio came early). protocol-v1: Timing promise.
- `stall`: a failure per stall, response time = how long the listener ran dry.
- `stream`: the whole stream, success on `done`; failure on an `error` or an abnormal close.
  Its time ends at `done`; the user then listens to the end of the audio it received before
  it waits (`wait_time`) and speaks again, so a user is one listener.

WebSocket library: `websocket-client`, plain blocking socket I/O that gevent's monkey-patching
makes cooperative (what locust-plugins uses too). `websockets.sync` was tried first: it closes
its socket from a background thread, which under gevent sometimes aborted the whole locust
process inside libev ("I/O watcher with invalid fd found in epoll_ctl").

Environment knobs (loadtest only; not LITESTREAM_*, which the server reads as settings):
LOADTEST_TOKEN (API key, sent as Authorization: Bearer), LOADTEST_ENCODING (json|msgpack,
default json), LOADTEST_VOICE.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import gevent
import websocket
from locust import User, between, task
from websocket import ABNF, WebSocket

if __package__ in (None, ""):  # locust imports this file by path: make `litestream` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from litestream.client import (
    Audio,
    Chunk,
    Done,
    Error,
    EventDecoder,
    PlaybackClock,
    Ready,
    build_url,
)
from litestream.protocol import STREAM_PATH, Encoding, encode

logger = logging.getLogger("litestream.loadtest")
RECV_TIMEOUT_S = 60.0  # the server may hold audio back while a listener has plenty buffered
MAX_RETRY_AFTER_S = 10.0  # cap on honouring Retry-After, so a short run still retries

PARAGRAPHS = (
    "Good morning. Here is your weather for today. Expect clear skies until noon, then "
    "clouds moving in from the west, with a light shower possible in the late afternoon.",
    "Thanks for calling. Your order shipped yesterday and should arrive on Thursday. "
    "You can follow it with the tracking link we sent by email.",
    "The museum opens at ten. The east wing holds the modern collection, and the guided "
    "tour starts every hour from the main hall. Photography is allowed without flash.",
    "To reset your password, open the settings page and choose security. Then follow the "
    "steps on the screen. The new password must be at least twelve characters long.",
)


class StallError(Exception):
    """The simulated listener ran dry: audio came later than real-time playback needed it."""


class StreamFailed(Exception):
    """An `error` message or an abnormal close."""


class ListenerUser(User):
    """One listener: connect, speak a paragraph, play it in real time, repeat."""

    wait_time = between(0.5, 2.0)
    encoding = Encoding(os.environ.get("LOADTEST_ENCODING", "json"))
    token = os.environ.get("LOADTEST_TOKEN")
    voice = os.environ.get("LOADTEST_VOICE")

    def _fire(self, name: str, response_time: float, *, length: int = 0,
              exception: Exception | None = None) -> None:
        self.environment.events.request.fire(
            request_type="WS", name=name, response_time=response_time,
            response_length=length, exception=exception, context={},
        )

    def _url(self) -> str:
        host = (self.host or "ws://127.0.0.1:8765").rstrip("/")
        if urlsplit(host).path in ("", "/"):
            host += STREAM_PATH
        return build_url(host, {"encoding": self.encoding.value, "voice": self.voice})

    def _connect(self) -> WebSocket | None:
        headers = [f"Authorization: Bearer {self.token}"] if self.token else []
        start = time.perf_counter()
        try:
            ws = websocket.create_connection(self._url(), header=headers, timeout=10)
        except websocket.WebSocketBadStatusException as exc:
            status = exc.status_code
            retry = (exc.resp_headers or {}).get("retry-after")
            self._fire("connect", (time.perf_counter() - start) * 1000.0,
                       exception=StreamFailed(f"HTTP {status} refused"))
            logger.debug("refused: HTTP %d, Retry-After %s", status, retry)
            # A well-behaved client honours Retry-After (protocol-v1: 429 and 503 carry it);
            # without this, refused users would hammer the handshake every wait_time.
            try:
                delay_s = float(retry) if retry is not None else 0.0
            except ValueError:
                delay_s = 1.0
            if delay_s > 0:
                gevent.sleep(min(MAX_RETRY_AFTER_S, delay_s) * random.uniform(1.0, 1.5))
            return None
        except (OSError, TimeoutError, websocket.WebSocketException) as exc:
            self._fire("connect", (time.perf_counter() - start) * 1000.0, exception=exc)
            return None
        self._fire("connect", (time.perf_counter() - start) * 1000.0)
        return ws

    @task
    def speak_paragraph(self) -> None:
        ws = self._connect()
        if ws is None:
            return
        try:
            plays_until = self._run_stream(ws, random.choice(PARAGRAPHS))
        finally:
            ws.close()
        # A listener hears what it received before it asks for more: `done` comes as soon as
        # the last audio is sent, which is up to --max-lookahead-s before playback ends.
        gevent.sleep(max(0.0, plays_until - time.perf_counter()))

    def _run_stream(self, ws: WebSocket, text: str) -> float:
        """Speak `text`; returns when (perf_counter) playback of the audio received ends."""
        decoder = EventDecoder(self.encoding)
        clock: PlaybackClock | None = None
        first_chunk_seq: int | None = None
        audio_bytes = 0
        start = time.perf_counter()
        for message in ({"type": "text", "text": text}, {"type": "end"}):
            frame = encode(message, self.encoding)
            if isinstance(frame, str):
                ws.send(frame)
            else:
                ws.send_binary(frame)
        sent_at = time.perf_counter()
        failure: Exception | None = None
        ws.settimeout(RECV_TIMEOUT_S)
        try:
            while True:
                opcode, data = ws.recv_data(control_frame=False)
                if opcode == ABNF.OPCODE_CLOSE:
                    code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
                    if code != 1000:
                        failure = StreamFailed(f"closed {code} before done")
                    break
                text_frame = opcode == ABNF.OPCODE_TEXT
                event = decoder.feed(data.decode() if text_frame else data)
                now = time.perf_counter()
                if isinstance(event, Ready):
                    clock = PlaybackClock.for_ready(event)
                elif isinstance(event, Chunk) and clock is not None:
                    clock.on_chunk(event, now)
                    if first_chunk_seq is None:
                        first_chunk_seq = event.seq
                elif isinstance(event, Audio) and clock is not None:
                    self._on_audio(clock, event, now, sent_at, first_chunk_seq)
                    audio_bytes += len(event.pcm)
                elif isinstance(event, Error):
                    failure = StreamFailed(f"{event.code}: {event.message}")
                    if event.fatal:
                        break
                elif isinstance(event, Done):
                    break
        except websocket.WebSocketTimeoutException:
            failure = StreamFailed(f"no message for {RECV_TIMEOUT_S:.0f} s")
        except (websocket.WebSocketConnectionClosedException, OSError):
            failure = StreamFailed("connection lost before done")
        end = time.perf_counter()
        self._fire("stream", (end - start) * 1000.0, length=audio_bytes, exception=failure)
        return end if clock is None else clock.ends_at(end)

    def _on_audio(self, clock: PlaybackClock, event: Audio, now: float, sent_at: float,
                  first_chunk_seq: int | None) -> None:
        first_frame_of_stream = clock.first_audio_at is None
        record = clock.chunks.get(event.seq)
        first_frame_of_chunk = record is not None and record.arrived_at is None
        stall_ms = clock.on_audio(event.seq, len(event.pcm), now)
        if first_frame_of_stream:
            self._fire("ttfa", (now - sent_at) * 1000.0, length=len(event.pcm))
        if first_frame_of_chunk and event.seq != first_chunk_seq and record is not None:
            # Lateness of the first chunk is its ttfa; the rest race the listener's clock.
            self._fire("chunk_lateness", record.lateness_ms or 0.0)
        if stall_ms > 0:
            # One message for all stalls so locust groups them; the ms is the response time.
            self._fire("stall", stall_ms, exception=StallError("listener ran dry"))

