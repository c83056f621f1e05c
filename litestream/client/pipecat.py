"""A Pipecat TTS service backed by a litestream server (protocol v1): `LitestreamTTSService`.

One protocol-v1 stream per conversation: the service opens it when the pipeline starts and
keeps it for every turn (reconnecting only if the server closes it, e.g. after its idle
timeout). Within a turn:

- the LLM's text frames go to the server as they come (`text`), token by token by default:
  litestream's segmenter, not Pipecat's sentence aggregator, decides where chunks are cut, so
  the first chunk can be short and first audio early;
- the end of the LLM's response sends `flush`; the server's `flushed` ends the audio context;
- audio frames (s16le at the voice's rate) are pushed as they arrive, resampled to the
  pipeline's output rate when it differs;
- a stream lost mid-turn (its server killed, or its drain out of grace: a close other than
  1000) is replaced by a new one (Pipecat's reconnect, or the next turn's text), which is sent
  what the lost one had not spoken, with its flushes: the turns in flight are spoken to their
  end (the chunk that was playing, again whole) and their audio contexts end
  (`litestream.client.unspoken`);
- Pipecat's interruption (barge-in) sends `clear`; audio still in flight from before the clear
  is dropped until the server's `cleared`;
- what was heard: the stream asks for word timestamps (`timestamps=word`), and each chunk's
  `words` event, the voice's own time for every word, goes to Pipecat's word-timestamp
  mechanism (`add_word_timestamps`): Pipecat stamps each word's `TTSTextFrame` with the time
  its audio starts playing, the output transport releases it then, and an interruption drops
  the frames of words not yet begun, so the LLM context keeps exactly the words heard. A
  server without word timestamps sends no `words`; its chunks' words are then spread over
  the chunk by character position (`word_times`), an estimate. The service also keeps a
  `PlaybackClock` (a listener playing in real time from the first frame) and, on
  interruption, tells `on_interrupted_heard` handlers what was heard of the turn cut short,
  word by word by the same rule: ``async def handler(service, heard: str, unheard: str)``.

Needs `pipecat-ai`; see clients/pipecat/README.md for why it is installed without its
dependencies (it pins plain `onnxruntime`, which would replace onnxruntime-gpu).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Protocol

from loguru import logger
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    InterruptionFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TextAggregationMode, WebsocketTTSService
from pipecat.services.websocket_service import WebsocketService

from litestream.client.events import Audio, Chunk, Cleared, Done, Error, Flushed, Ready, Words
from litestream.client.playback import PlaybackClock
from litestream.client.stream import HandshakeRefused, connect
from litestream.client.unspoken import Unspoken


class _Stream(Protocol):
    """What the service uses of the client's stream (litestream.client.connect yields one)."""

    async def send_text(self, text: str, flush: bool = False) -> None: ...

    async def flush(self) -> None: ...

    async def clear(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[object]: ...


def word_times(text: str, start_s: float, duration_s: float) -> list[tuple[str, float]]:
    """Spread a chunk's words over its duration by character position: (word, start s).

    The estimate for a server that sends no `words` events (timing per chunk only), so that
    Pipecat can still release each word's text frame while its audio plays."""
    words = text.split()
    total = max(1, len(text))
    out: list[tuple[str, float]] = []
    at = 0
    for word in words:
        at = text.index(word, at)
        out.append((word, start_s + duration_s * at / total))
        at += len(word)
    return out


class LitestreamTTSService(WebsocketTTSService):
    """Pipecat TTS over one litestream protocol-v1 stream per conversation.

    Args:
        url: the server's stream endpoint, e.g. ``ws://127.0.0.1:8765/v1/stream``.
        voice: a litestream voice id (None: the server's default).
        api_key: sent as ``Authorization: Bearer``.
        speed: 0.5..2.0 (None: 1.0).
        sample_rate: output rate; None takes the pipeline's. Audio is resampled to it.
        text_aggregation_mode: TOKEN (default) sends LLM tokens as they come; SENTENCE lets
            Pipecat cut sentences first (adds latency; litestream cuts chunks itself).
    """

    def __init__(self, *, url: str, voice: str | None = None, api_key: str | None = None,
                 speed: float | None = None, sample_rate: int | None = None,
                 text_aggregation_mode: TextAggregationMode = TextAggregationMode.TOKEN,
                 **kwargs: Any) -> None:
        super().__init__(
            text_aggregation_mode=text_aggregation_mode,
            push_text_frames=False,     # words come with their times (`words` events)
            push_start_frame=True,      # the base class opens an audio context per turn
            pause_frame_processing=False,
            sample_rate=sample_rate,
            settings=TTSSettings(model=None, voice=voice, language=None),
            **kwargs,
        )
        self._url = url
        self._api_key = api_key
        self._speed = speed
        self._stack: contextlib.AsyncExitStack | None = None
        self._stream: _Stream | None = None
        self._receive_task: Any = None
        self._server_rate = 0
        self._flushes: deque[str] = deque()   # audio contexts waiting for `flushed`, in order
        self._clears_pending = 0              # `clear` sent, `cleared` not yet received
        self._context_base_ms: dict[str, float] = {}  # stream start_ms of a context's audio
        self._context_audio_ms: dict[str, float] = {}  # audio pushed into a context so far
        self._unspoken = Unspoken()           # sent, not yet spoken: sent again if the stream
        self._speaking: str | None = None     # is lost; the chunk whose audio is arriving
        self._untimed: dict[int, Chunk] = {}  # chunks announced, their words not yet given
        self._clock: PlaybackClock | None = None  # the listener, for on_interrupted_heard
        self._first_live_seq = 0                   # chunks before this were heard in full
        self._last_context: str | None = None      # the turn run_tts last spoke for
        self._connecting = asyncio.Lock()     # one handshake at a time: run_tts or the loop
        self._retry_at = 0.0                  # monotonic: a refusal's Retry-After runs out
        self._unspoken_context: str | None = None  # a turn with no stream, reported once
        self._silent_contexts: set[str] = set()  # flushed with no chunk: nothing to say
        self.conversation_streams = 0         # streams opened (1 unless the server closed one)
        self.session_id: str | None = None    # the open stream's session (protocol-v1 ready)
        self._register_event_handler("on_interrupted_heard")

    def can_generate_metrics(self) -> bool:
        return True

    # ------------------------------------------------------------ connection

    async def start(self, frame: Any) -> None:
        await super().start(frame)
        await self._connect()

    async def _connect(self) -> None:
        await super()._connect()
        await self._connect_websocket()
        if (self._stream is not None and self._receive_task is not None
                and self._reconnect_in_progress):
            # A turn opened the stream while the receive loop waits out a backoff before it
            # retries: a new loop reads the stream now, not seconds into the turn.
            await self.cancel_task(self._receive_task)
            self._receive_task = None
        if self._stream is not None and self._receive_task is None:
            self._receive_task = self.create_task(self._receive_task_handler(self._report_error))

    async def _disconnect(self) -> None:
        await super()._disconnect()
        self._unspoken.clear()  # the pipeline stops: nothing is to be spoken any more
        if self._receive_task is not None:
            await self.cancel_task(self._receive_task)
            self._receive_task = None
        await self._disconnect_websocket()

    async def _connect_websocket(self) -> None:
        async with self._connecting:  # run_tts and the receive loop's reconnect may race
            if self._stream is not None:
                return
            if time.monotonic() < self._retry_at:
                return  # the server said when to come back (Retry-After): sooner is refused
            stack = contextlib.AsyncExitStack()
            try:
                voice = self._settings.voice if isinstance(self._settings.voice, str) else None
                self._stream = await stack.enter_async_context(connect(
                    self._url, voice=voice, token=self._api_key, speed=self._speed,
                    format="s16le", timestamps="word"))
            except Exception as exc:  # a refusal (HandshakeRefused) or the network
                await stack.aclose()
                self._stream = None
                if isinstance(exc, HandshakeRefused) and exc.retry_after_s:
                    self._retry_at = time.monotonic() + exc.retry_after_s
                # The exception carries a refusal's HTTP status: Pipecat files a 400, 401 or
                # 403 as permanent (no retry can fix a wrong key) and stops giving work.
                await self.push_error_frame(ErrorFrame(error=f"{self} cannot connect: {exc}",
                                                       exception=exc))
                await self._call_event_handler("on_connection_error", str(exc))
                return
            self._stack = stack
            self._flushes.clear()
            self._clears_pending = 0
            self._untimed.clear()
            self._speaking = None
            self.conversation_streams += 1
            await self._resume_unspoken()
            await self._call_event_handler("on_connected")

    async def _resume_unspoken(self) -> None:
        """The stream before this one was lost mid-turn (its server died, or its drain ran
        out of grace): send what it had not spoken, and its flushes, again on this one, so
        the turns in flight are spoken to their end (the chunk that was playing is spoken
        again whole) instead of stopping mid-answer and never ending their audio context."""
        segments = self._unspoken.segments()
        if self._stream is None or not segments:
            return
        logger.warning(f"{self} stream lost mid-turn: speaking its last "
                       f"{self._unspoken.chars()} characters again on a new stream")
        # The new stream's audio starts at 0: a context resumed here goes on after the audio
        # it already pushed, which is where its next words' times count from.
        for ctx in self._context_base_ms:
            self._context_base_ms[ctx] = -self._context_audio_ms.get(ctx, 0.0)
        with contextlib.suppress(Exception):  # lost again: the next stream tries again
            for segment in segments:
                if segment.text:
                    await self._stream.send_text(segment.text)
                if segment.flush is not None:
                    if not self.audio_context_available(segment.flush):
                        # It went quiet while the new stream was found (Pipecat ends a
                        # context after a few seconds without audio): open it again.
                        await self.create_audio_context(segment.flush)
                    self._flushes.append(segment.flush)
                    await self._stream.flush()

    async def _disconnect_websocket(self) -> None:
        stack, self._stack, self._stream = self._stack, None, None
        if stack is not None:
            with contextlib.suppress(Exception):
                await stack.aclose()
            await self._call_event_handler("on_disconnected")

    async def _verify_connection(self) -> bool:
        return self._stream is not None

    async def _reconnect_websocket(self, attempt_number: int) -> bool:
        if self._stream is not None:
            # A turn opened a stream (run_tts) while the receive loop waited to retry: read
            # that one. Reconnecting again would drop the turn it carries.
            return True
        if self._unspoken.segments():
            # Pipecat's WebsocketTTSService closes every audio context before it reconnects,
            # since its providers cannot resume a context on a new connection. This one does
            # (_resume_unspoken): the contexts stay open for the audio still to come.
            return await WebsocketService._reconnect_websocket(self, attempt_number)
        return await super()._reconnect_websocket(attempt_number)

    async def _record_context_audio_outcome(self, context_id: str, received_audio: bool) -> None:
        if context_id in self._silent_contexts:
            # The server flushed the turn without a chunk: it had nothing to say ("...", an
            # emoji). Not a TTS that went silent; Pipecat would count it toward giving up.
            self._silent_contexts.discard(context_id)
            return
        await super()._record_context_audio_outcome(context_id, received_audio)

    # ------------------------------------------------------------ text in

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        if context_id != self._last_context and self._clock is not None:
            # A new turn: chunks heard in full by now are history, not part of what a later
            # interruption cuts short.
            self._last_context = context_id
            played = [c.seq for c in self._clock.fully_played(time.monotonic())]
            if played:
                self._first_live_seq = max(self._first_live_seq, max(played) + 1)
        if self._stream is None and context_id != self._unspoken_context:
            await self._connect()  # once per turn: not a handshake for every token
        if self._stream is None:
            if context_id != self._unspoken_context:
                self._unspoken_context = context_id
                yield ErrorFrame(error=f"{self} not connected: this turn is not spoken")
            return
        try:
            self._unspoken.sent_text(text)  # before the send: a failed send is sent again
            await self._stream.send_text(text)
            await self.start_tts_usage_metrics(text)
        except Exception as exc:
            yield ErrorFrame(error=f"{self} send failed: {exc}")
            return
        yield None  # audio arrives through the receive task

    async def flush_audio(self, context_id: str | None = None) -> None:
        """The LLM's response ended: speak what is buffered; `flushed` ends the context."""
        flush_id = context_id or self.get_active_audio_context_id()
        if self._stream is None or flush_id is None:
            return
        self._flushes.append(flush_id)
        self._unspoken.sent_flush(flush_id)
        await self._stream.flush()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, InterruptionFrame):
            await self._interrupt()
        await super().process_frame(frame, direction)

    async def _interrupt(self) -> None:
        """Barge-in: report what was heard, then `clear` the server's queued text, chunks and
        unsent frames. Sent even when this turn's audio has all arrived (it may still be
        playing): the clear is cheap and the server's `cleared` marks where new audio begins."""
        await self.stop_all_metrics()
        await self._report_heard()
        if self._stream is not None and self._clears_pending == 0:
            self._clears_pending += 1
            self._flushes.clear()  # the server drops pending flush marks on clear
            self._unspoken.clear()  # and the text: nothing of it is to be spoken
            self._speaking = None
            with contextlib.suppress(Exception):
                await self._stream.clear()

    async def on_audio_context_interrupted(self, context_id: str) -> None:
        self._context_base_ms.pop(context_id, None)
        self._context_audio_ms.pop(context_id, None)
        await super().on_audio_context_interrupted(context_id)

    async def _report_heard(self) -> None:
        """Tell `on_interrupted_heard` handlers what the listener heard of the turn cut short:
        (service, heard, unheard): the turn's text up to the end of the last word whose start
        was heard, and the rest of what was synthesized.

        The listener is the PlaybackClock: it plays in real time from the first frame, as
        Pipecat's output transport does; a word counts as heard once its start has played, the
        rule Pipecat releases word frames by."""
        clock = self._clock
        if clock is None:
            return
        split = clock.heard_text(time.monotonic(), from_seq=self._first_live_seq)
        await self._call_event_handler("on_interrupted_heard", split.heard, split.unheard)

    # ------------------------------------------------------------ events out

    async def _receive_messages(self) -> None:
        stream = self._stream
        if stream is None:
            return
        try:
            async for event in stream:
                await self._on_event(event)
        except asyncio.CancelledError:
            raise  # _disconnect is closing it
        except Exception:
            await self._forget_stream(stream)
            raise
        await self._forget_stream(stream)

    async def _forget_stream(self, stream: _Stream) -> None:
        """The server closed `stream` (or reading it failed): the next turn opens a new one
        instead of sending into it, and the receive loop's reconnect does not wait on it."""
        if self._stream is stream:
            await self._disconnect_websocket()

    async def _on_event(self, event: object) -> None:
        now = time.monotonic()
        if isinstance(event, Ready):
            self._server_rate = event.sample_rate
            self.session_id = event.session
            self._clock = PlaybackClock.for_ready(event)
            self._first_live_seq = 0  # a new stream counts its chunks from 0
        elif isinstance(event, Cleared):
            self._clears_pending = max(0, self._clears_pending - 1)
            self._untimed.clear()  # chunks the clear dropped: their audio never comes
            # Playback stopped at the clear: the next audio starts a fresh listener timeline.
            self._clock = PlaybackClock(self._server_rate) if self._server_rate else None
        elif self._clears_pending:
            return  # audio and events of chunks the clear dropped: never play them
        elif isinstance(event, Chunk):
            await self._on_chunk(event, now)
        elif isinstance(event, Words):
            await self._on_words(event)
        elif isinstance(event, Audio):
            await self._on_audio(event, now)
        elif isinstance(event, Flushed):
            self._speaking = None
            self._unspoken.flushed()
            if self._flushes:
                ctx = self._flushes.popleft()
                if self._context_base_ms.pop(ctx, None) is None:
                    self._silent_contexts.add(ctx)  # no chunk: the text had nothing to say
                await self.append_to_audio_context(ctx, TTSStoppedFrame(context_id=ctx))
                await self.remove_audio_context(ctx)
                self._context_audio_ms.pop(ctx, None)
        elif isinstance(event, Error):
            logger.warning(f"{self} server error {event.code}: {event.message}")
            if event.fatal:
                await self.push_error_frame(ErrorFrame(error=f"{event.code}: {event.message}"))
        elif isinstance(event, Done):
            logger.debug(f"{self} stream done: {event.stats}")

    async def _on_chunk(self, chunk: Chunk, now: float) -> None:
        if self._speaking is not None:  # the chunk before this one has all its audio in
            self._unspoken.spoken(self._speaking)
        self._speaking = chunk.text
        if self._clock is not None:
            self._clock.on_chunk(chunk, now)
        ctx = self._current_context()
        if ctx is None:
            return
        self._context_base_ms.setdefault(ctx, float(chunk.start_ms))
        self._untimed[chunk.seq] = chunk  # its `words` event comes next (protocol-v1)

    async def _on_words(self, words: Words) -> None:
        """The voice's time for every word of a chunk: to Pipecat, relative to the start of the
        audio context's first chunk (the moment Pipecat starts the context's word clock)."""
        if self._clock is not None:
            self._clock.on_words(words)
        chunk = self._untimed.pop(words.seq, None)
        ctx = self._current_context()
        if chunk is None or ctx is None:
            return
        base_ms = self._context_base_ms.setdefault(ctx, float(chunk.start_ms))
        await self.add_word_timestamps(
            [(w.text, (w.start_ms - base_ms) / 1000.0) for w in words.words], ctx)

    async def _on_audio(self, audio: Audio, now: float) -> None:
        if self._clock is not None:
            self._clock.on_audio(audio.seq, len(audio.pcm), now)
        ctx = self._current_context()
        if ctx is None:
            return
        chunk = self._untimed.pop(audio.seq, None)
        if chunk is not None:  # no `words` came before its audio: a server without them
            base_ms = self._context_base_ms.setdefault(ctx, float(chunk.start_ms))
            await self.add_word_timestamps(
                word_times(chunk.text, (chunk.start_ms - base_ms) / 1000.0,
                           chunk.duration_ms / 1000.0), ctx)
        pcm = audio.pcm
        if self._server_rate:
            self._context_audio_ms[ctx] = (self._context_audio_ms.get(ctx, 0.0)
                                           + len(pcm) / 2 / self._server_rate * 1000.0)
        if self._server_rate and self._server_rate != self.sample_rate:
            pcm = await self._resampler.resample(pcm, self._server_rate, self.sample_rate)
        await self.append_to_audio_context(
            ctx, TTSAudioRawFrame(pcm, self.sample_rate, 1, context_id=ctx))

    def _current_context(self) -> str | None:
        """The context this audio belongs to: the oldest one still waiting for `flushed`
        (litestream speaks turns in order), else the turn being synthesized."""
        return self._flushes[0] if self._flushes else self.get_active_audio_context_id()
