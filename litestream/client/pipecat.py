"""A Pipecat TTS service backed by a litestream server (protocol v1): `LitestreamTTSService`.

One protocol-v1 stream per conversation: the service opens it when the pipeline starts and
keeps it for every turn (reconnecting only if the server closes it, e.g. after its idle
timeout). Within a turn:

- the LLM's text frames go to the server as they come (`text`), token by token by default:
  litestream's segmenter, not Pipecat's sentence aggregator, decides where chunks are cut, so
  the first chunk can be short and first audio early. Tokens that come less than
  `text_interval_s` (25 ms) after the last `text` message wait that long and go as one: the
  server limits messages per key or client address (`--messages-per-s`, 200 by default), and
  a refused `text` is never spoken. A token after a pause goes at once;
- the end of the LLM's response sends `flush`; the server's `flushed` ends the audio context;
- audio frames (s16le at the voice's rate) are pushed as they arrive, resampled to the
  pipeline's output rate when it differs;
- a stream lost mid-turn (its server killed, or its drain out of grace: a close other than
  1000) is replaced by a new one (Pipecat's reconnect, or the next turn's text), which is sent
  what the lost one had not spoken, with its flushes, then the tokens still waiting for their
  `text` message: the turns in flight are spoken to their end (the chunk that was playing,
  again whole) and their audio contexts end (`litestream.client.unspoken`). A turn that ends
  before the reconnect has a new stream keeps its end for that stream; if the next turn comes
  first, the rest of that turn is not said (at the next turn's start it would be out of place);
- Pipecat's interruption (barge-in) sends `clear`; audio still in flight from before the clear
  is dropped until the server's `cleared`;
- what was heard: the stream asks for word timestamps (`timestamps=word`), and each chunk's
  `words` event, the voice's own time for every word, goes to Pipecat's word-timestamp
  mechanism (`add_word_timestamps`): Pipecat stamps each word's `TTSTextFrame` with the time
  its audio starts playing, the output transport releases it then, and an interruption drops
  the frames of words not yet begun, so the LLM context keeps exactly the words heard (a
  reply whose audio arrives while an earlier one still plays has its words moved later by
  what the listener had still to play: `_listener_lead_s`). A
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
import itertools
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
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
from litestream.client.playback import PlaybackClock, join_text, unspaced_script
from litestream.client.stream import HandshakeRefused, connect
from litestream.client.unspoken import Unspoken

TEXT_INTERVAL_S = 0.025  # at most 40 `text` messages a second per conversation


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


def joined_words(text: str, spans: Sequence[tuple[int, int]]) -> list[bool]:
    """For each word of a chunk (its ``(char_start, char_end)`` in ``text``), whether it joins
    its neighbours with no space between them: Pipecat's ``includes_inter_frame_spaces``.

    Pipecat writes the words it was given into the LLM's context, with a space between two
    unless both say they carry their own spacing. Japanese has no spaces: "はい。東京では" went
    into the context as "はい。 東京 で は", the assistant's own turns as an LLM reads them. A
    word joins when no whitespace stands between it and the word before or after it (the
    chunk's first word: when the chunk starts in an unspaced script); English words, spaced,
    keep Pipecat's spaces. Pipecat's flag is one per word, not per gap, so two English words
    between Japanese ones ("とHello worldと") lose their space; three or more keep theirs."""
    adjacent = [bool(text) and unspaced_script(text[0]) if i == 0
                else not any(ch.isspace() for ch in text[spans[i - 1][1]:start])
                for i, (start, _) in enumerate(spans)]
    return [adjacent[i] or (i + 1 < len(spans) and adjacent[i + 1]) for i in range(len(spans))]


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
        text_interval_s: at most one `text` message per this many seconds: tokens closer
            together are joined (0: a message per token, which a fast LLM can push over the
            server's message rate).
    """

    def __init__(self, *, url: str, voice: str | None = None, api_key: str | None = None,
                 speed: float | None = None, sample_rate: int | None = None,
                 text_aggregation_mode: TextAggregationMode = TextAggregationMode.TOKEN,
                 text_interval_s: float = TEXT_INTERVAL_S, **kwargs: Any) -> None:
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
        self._text_interval_s = text_interval_s
        self._pending: list[str] = []         # tokens waiting for the next `text` message
        self._pending_context: str | None = None  # the turn they belong to
        self._pending_sender: asyncio.Task[None] | None = None  # sends them when it is due
        self._text_sent_at = -math.inf        # monotonic: the last `text` message went
        self._sending = asyncio.Lock()        # messages go out in the order they were made
        # The text given to run_tts since the listener's timeline began (the stream's start or
        # the last `clear`): what of it no chunk carries yet, the server still held.
        self._said: list[str] = []
        self._stack: contextlib.AsyncExitStack | None = None
        self._stream: _Stream | None = None
        self._receive_task: Any = None
        self._server_rate = 0
        self._flushes: deque[str] = deque()   # audio contexts waiting for `flushed`, in order
        self._clears_pending = 0              # `clear` sent, `cleared` not yet received
        self._context_base_ms: dict[str, float] = {}  # stream start_ms of a context's audio
        # s added to a context's word times: audio of earlier contexts the listener had still
        # to play when this one's began arriving (set at its first audio frame)
        self._word_lead_s: dict[str, float] = {}
        # Words (text, s, joined: `joined_words`) before the context's first audio.
        self._early_words: dict[str, list[tuple[str, float, bool]]] = {}
        self._context_audio_ms: dict[str, float] = {}  # audio pushed into a context so far
        self._unspoken = Unspoken()           # sent, not yet spoken: sent again if the stream
        self._speaking: str | None = None     # is lost; the chunk whose audio is arriving
        self._unsent_end: str | None = None   # a turn ended with no stream: its flush, kept
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
        if self._pending_sender is not None:
            await self.cancel_task(self._pending_sender)
            self._pending_sender = None
        self._unspoken.clear()  # the pipeline stops: nothing is to be spoken any more
        self._unsent_end = None
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
                stream: _Stream = await stack.enter_async_context(connect(
                    self._url, voice=voice, token=self._api_key, speed=self._speed,
                    format="s16le", timestamps="word"))
            except Exception as exc:  # a refusal (HandshakeRefused) or the network
                await stack.aclose()
                if isinstance(exc, HandshakeRefused) and exc.retry_after_s:
                    self._retry_at = time.monotonic() + exc.retry_after_s
                # The exception carries a refusal's HTTP status: Pipecat files a 400, 401 or
                # 403 as permanent (no retry can fix a wrong key) and stops giving work.
                await self.push_error_frame(ErrorFrame(error=f"{self} cannot connect: {exc}",
                                                       exception=exc))
                await self._call_event_handler("on_connection_error", str(exc))
                return
            # Held while the stream is set and the lost one's text is sent again: tokens
            # waiting (_send_pending) go on it after that text, in the order they were said.
            async with self._sending:
                self._stack, self._stream = stack, stream
                self._flushes.clear()
                self._clears_pending = 0
                self._untimed.clear()
                self._speaking = None
                self.conversation_streams += 1
                # A new timeline: what goes on this stream, the lost one's unspoken text first.
                self._said = [s.text for s in self._unspoken.segments()] + self._pending
                await self._resume_unspoken(stream)
            await self._call_event_handler("on_connected")

    async def _resume_unspoken(self, stream: _Stream) -> None:
        """The stream before this one was lost mid-turn (its server died, or its drain ran
        out of grace): send what it had not spoken, and its flushes, again on this one, so
        the turns in flight are spoken to their end (the chunk that was playing is spoken
        again whole) instead of stopping mid-answer and never ending their audio context.
        Tokens that were waiting for their `text` message (`_pending`) were never sent: they
        are not in `_unspoken`, and go after this as they would have."""
        segments = self._unspoken.segments()
        if not segments:
            return
        logger.warning(f"{self} stream lost mid-turn: speaking its last "
                       f"{self._unspoken.chars()} characters again on a new stream")
        # The new stream's audio starts at 0: a context resumed here goes on after the audio
        # it already pushed, which is where its next words' times count from.
        for ctx in self._context_base_ms:
            self._context_base_ms[ctx] = -self._context_audio_ms.get(ctx, 0.0)
        with contextlib.suppress(Exception):  # lost again: the next stream tries again
            for segment in segments:
                if segment.flush is not None:
                    if not self.audio_context_available(segment.flush):
                        # It went quiet while the new stream was found (Pipecat ends a
                        # context after a few seconds without audio): open it again.
                        await self.create_audio_context(segment.flush)
                    self._flushes.append(segment.flush)
                if segment.text:
                    self._text_sent_at = time.monotonic()
                    await stream.send_text(segment.text, flush=segment.flush is not None)
                elif segment.flush is not None:
                    await stream.flush()
            self._unsent_end = None  # sent now, on this stream

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
        if self._unspoken or self._pending:
            # Pipecat's WebsocketTTSService closes every audio context before it reconnects,
            # since its providers cannot resume a context on a new connection. This one does
            # (_resume_unspoken, then the tokens still waiting): the contexts stay open for
            # the audio still to come, and the turn keeps its context id.
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
        if context_id != self._pending_context:
            # A new turn. The turn before it, if its end came with no stream to send it on
            # and no stream replaced the lost one since (or it never ended), is not said:
            # its tokens still waiting, and what it sent that was not spoken. Said at the start
            # of this turn they would be out of place. (Checked before the connect, which
            # sends the lost stream's unspoken text again: earlier turns, ended on it, keep
            # theirs.)
            self._pending.clear()
            self._unspoken.drop_turn(self._unsent_end)
            self._unsent_end = None
            self._pending_context = context_id
        if self._stream is None and context_id != self._unspoken_context:
            await self._connect()  # once per turn: not a handshake for every token
        if self._stream is None:
            if context_id != self._unspoken_context:
                self._unspoken_context = context_id
                yield ErrorFrame(error=f"{self} not connected: this turn is not spoken")
            return
        self._said.append(text)
        try:
            await self._send_text(text)
            await self.start_tts_usage_metrics(text)
        except Exception as exc:
            yield ErrorFrame(error=f"{self} send failed: {exc}")
            return
        yield None  # audio arrives through the receive task

    async def _send_text(self, text: str) -> None:
        """`text` now, or, within `text_interval_s` of the last `text` message, with the
        tokens after it in one message when the interval is over."""
        waits = bool(self._pending) or (
            time.monotonic() - self._text_sent_at < self._text_interval_s)
        self._pending.append(text)
        if not waits:
            await self._send_pending()
        elif self._pending_sender is None:
            self._pending_sender = self.create_task(self._send_pending_when_due())

    async def _send_pending_when_due(self) -> None:
        try:
            await asyncio.sleep(self._text_sent_at + self._text_interval_s - time.monotonic())
            self._pending_sender = None  # tokens from now on wait for the next message
            await self._send_pending()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self.push_error_frame(ErrorFrame(error=f"{self} send failed: {exc}"))
        finally:
            if self._pending_sender is asyncio.current_task():
                self._pending_sender = None

    async def _send_pending(self, flush_id: str | None = None) -> None:
        """The waiting tokens as one `text` message, with the `flush` that ends the turn of
        audio context `flush_id` if given. With no stream they wait: the turn's next token or
        its end opens one, and they go on it after what the lost stream had not spoken."""
        async with self._sending:
            if self._stream is None or not (self._pending or flush_id):
                return
            text = "".join(self._pending)
            self._pending.clear()
            # Noted before the send: what a lost stream may not have spoken is sent again.
            if text:
                self._unspoken.sent_text(text)
                self._text_sent_at = time.monotonic()
            if flush_id is not None:
                self._flushes.append(flush_id)
                self._unspoken.sent_flush(flush_id)
            if text:  # the last tokens and the flush as one message
                await self._stream.send_text(text, flush=flush_id is not None)
            else:
                await self._stream.flush()

    async def flush_audio(self, context_id: str | None = None) -> None:
        """The LLM's response ended: speak what is buffered; `flushed` ends the context."""
        flush_id = context_id or self.get_active_audio_context_id()
        if flush_id is None:
            return
        if self._stream is None:
            if self._pending or self._unspoken:
                # The stream was lost mid-turn and none has taken its place yet. The turn's
                # rest (its tokens waiting too) and its end are kept for the stream that
                # replaces it (Pipecat's reconnect), which speaks the turn to its end. If the
                # next turn comes first, run_tts drops them (_unsent_end).
                text = "".join(self._pending)
                self._pending.clear()
                if text:
                    self._unspoken.sent_text(text)
                self._unspoken.sent_flush(flush_id)
                self._unsent_end = flush_id
            return
        await self._send_pending(flush_id)

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
        self._pending.clear()  # tokens of the turn cut short, not yet sent: never sent
        # Nor is what was sent and not spoken, on this stream or one that replaces it.
        self._unspoken.clear()
        self._unsent_end = None
        self._speaking = None
        if self._stream is not None and self._clears_pending == 0:
            self._clears_pending += 1
            self._flushes.clear()  # the server drops pending flush marks on clear
            self._said.clear()  # the next timeline starts at the `cleared`
            async with self._sending:
                with contextlib.suppress(Exception):
                    await self._stream.clear()

    async def on_audio_context_interrupted(self, context_id: str) -> None:
        self._context_base_ms.pop(context_id, None)
        self._context_audio_ms.pop(context_id, None)
        self._word_lead_s.pop(context_id, None)
        self._early_words.pop(context_id, None)
        # A context cut before it ended never reaches _record_context_audio_outcome.
        self._silent_contexts.discard(context_id)
        await super().on_audio_context_interrupted(context_id)

    async def _report_heard(self) -> None:
        """Tell `on_interrupted_heard` handlers what the listener heard of the turn cut short:
        (service, heard, unheard): the turn's text up to the end of the last word whose start
        was heard, and the rest: what was synthesized, then the text the server still held.

        The listener is the PlaybackClock: it plays in real time from the first frame, as
        Pipecat's output transport does; a word counts as heard once its start has played, the
        rule Pipecat releases word frames by."""
        clock = self._clock
        if clock is None:
            return
        split = clock.heard_text(time.monotonic(), from_seq=self._first_live_seq)
        # Then what the server still held, in no chunk yet (the sentence being written).
        held = clock.unchunked("".join(self._said))
        unheard = join_text((split.unheard, held))
        await self._call_event_handler("on_interrupted_heard", split.heard, unheard)

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
                self._word_lead_s.pop(ctx, None)
                self._early_words.pop(ctx, None)
                if (self._context_base_ms.pop(ctx, None) is None
                        and self.audio_context_available(ctx)):
                    # No chunk: the text had nothing to say. Noted only for a context that
                    # will still end (one Pipecat ended already was counted then).
                    self._silent_contexts.add(ctx)
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
        joined = joined_words(chunk.text, [(w.char_start, w.char_end) for w in words.words])
        await self._add_words(ctx, [(w.text, (w.start_ms - base_ms) / 1000.0, join)
                                    for w, join in zip(words.words, joined, strict=True)])

    async def _add_words(self, ctx: str, times: list[tuple[str, float, bool]]) -> None:
        """Words of `ctx`, timed from its first audio, to Pipecat, once that audio has come
        and its lead is known (a chunk's `words` come before its audio). Words that join their
        neighbours (`joined_words`) go in calls of their own, flagged so."""
        lead_s = self._word_lead_s.get(ctx)
        if lead_s is None:
            self._early_words.setdefault(ctx, []).extend(times)
            return
        for join, run in itertools.groupby(times, key=lambda timed: timed[2]):
            await self.add_word_timestamps([(word, at + lead_s) for word, at, _ in run], ctx,
                                           includes_inter_frame_spaces=join)

    def _listener_lead_s(self, now: float) -> float:
        """How much later than Pipecat's word clock assumes the listener hears the first sample
        of a context whose first audio arrives now: after the audio of earlier contexts it has
        still to play (a reply queued behind another, e.g. around a tool call). Pipecat starts
        a context's word clock when its first audio is pushed, or at the previous context's
        last word's start if that is later (never at that context's end), so without this
        lead the words of the second reply were released, and kept in the LLM context at a
        barge-in, up to that last word and its trailing silence (~0.4 s) early."""
        clock = self._clock
        if clock is None or clock.first_audio_at is None:
            return 0.0
        queued_s = clock.buffered_ms(now) / 1000.0
        # Pipecat's own wait (its WordTimestampTracker's baseline rule, pipecat 1.14).
        tracker_wait_ns = self._word_timestamp_tracker.last_pts - self.get_clock().get_time()
        return max(0.0, queued_s - max(0, tracker_wait_ns) / 1e9)

    async def _on_audio(self, audio: Audio, now: float) -> None:
        ctx = self._current_context()
        if ctx is not None and ctx not in self._word_lead_s:
            self._word_lead_s[ctx] = self._listener_lead_s(now)  # before this frame counts
            await self._add_words(ctx, self._early_words.pop(ctx, []))
        if self._clock is not None:
            self._clock.on_audio(audio.seq, len(audio.pcm), now)
        if ctx is None:
            return
        chunk = self._untimed.pop(audio.seq, None)
        if chunk is not None:  # no `words` came before its audio: a server without them
            base_ms = self._context_base_ms.setdefault(ctx, float(chunk.start_ms))
            await self._add_words(ctx, [
                (word, at, unspaced_script(word[0])) for word, at in word_times(
                    chunk.text, (chunk.start_ms - base_ms) / 1000.0, chunk.duration_ms / 1000.0)])
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
