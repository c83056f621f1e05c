"""One stream's protocol-v1 rules, sans I/O: no asyncio, no sockets, no clock reads.

`StreamSession` is to a litestream stream what python-websockets' `Protocol` is to a
connection (docs/style.md: pure cores). Everything that happens to a stream comes in through one
method, `receive(item, now)`: a client frame (or an already parsed message), a synthesis result
(`ChunkPlanned`, `ChunkAudio`, `ChunkFailed`) or a lifecycle event (`ReceiveTimeout`,
`SendTimeout`, `GoingAway`, `Disconnected`). What goes back to the client comes out of one
method, `next_outgoing()` (or `take_outgoing()`, all that is queued at once): typed items
(`SendMessage`, `SendAudio`, `Close`) in wire order.
The asyncio layer (server/websocket.py, server/speech.py) only moves them; so ordering, flush marks,
barge-in, `done`, the text limits and the send buffer are tested with plain calls
(tests/unit/session/test_session.py).

The session owns:
- seq numbers: each sentence the segmenter cuts gets the next seq, from 0, never reused;
- order: audio of seq n+1 never goes out before all of seq n (protocol-v1: Server to client);
  a sentence is announced by its `chunk` event once its length is known and it is next;
- flush marks, `clear` (drop buffered text, queued sentences and every unsent frame), `done`;
- the text limits, the message-rate check, and the send buffer (`send_buffer_s` of audio);
- `start_ms` accounting: it counts audio actually sent, so a `clear` takes back what was not.

Its inputs, outputs and ports are defined in `interface.py` (the package exports them).
It asks the scheduler side for work through `SynthesisLink`, a narrow port the server
implements over the real scheduler (synthesis.StreamLink), so the scheduler's API may change
without touching the per-stream rules.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, assert_never

from litestream import protocol
from litestream.errors import CloseCode, ErrorCode, ProtocolError
from litestream.logs import clip, stream_fields
from litestream.protocol import (
    ClearMsg,
    ClientMessage,
    ConfigMsg,
    Encoding,
    EndMsg,
    FlushMsg,
    StreamSettings,
    TextMsg,
)
from litestream.session.interface import (
    ChunkAudio,
    ChunkFailed,
    ChunkPlanned,
    ClientFrame,
    Close,
    Disconnected,
    GoingAway,
    Outgoing,
    RateCheck,
    ReceiveTimeout,
    SendAudio,
    SendMessage,
    SendTimeout,
    SessionInput,
    SessionLimits,
    SessionObserver,
    StreamState,
    SynthesisLink,
    SynthesisResult,
    TimedWord,
)
from litestream.text.segmenter import Segmenter

log = logging.getLogger("litestream.session")

SLOW_READER = "slow reader"
_CLOSE_REASON_MAX_CHARS = 120  # a close frame's reason must fit in 123 bytes


# ---------------------------------------------------------------- the session

@dataclass(slots=True)
class _Sentence:
    """One submitted sentence, from submit until its last frame is queued (or it fails)."""

    seq: int
    text: str
    voice: str
    format: str  # settings at submit time: a `config` applies to text after it
    frame_ms: int
    timestamps: bool = False  # a `words` event follows its `chunk` event
    samples: int | None = None  # known after ChunkPlanned
    words: tuple[TimedWord, ...] = ()  # from ChunkPlanned, times in the chunk's samples
    announced: bool = False  # its `chunk` event is queued
    duration_ms: int = 0  # as announced
    exact_ms: float = 0.0  # its length, not rounded: what the stream's clock counts
    queued_ms: float = 0.0  # audio of it in frames queued so far
    pieces: deque[ChunkAudio] = field(default_factory=deque)  # arrived, not yet framed
    carry: bytes = b""  # PCM short of a full frame, waiting for the next piece
    last_arrived: bool = False
    failed: bool = False


class StreamSession:
    """One stream's protocol state. Not thread-safe: the event loop owns it."""

    def __init__(
        self,
        session_id: str,
        *,
        settings: StreamSettings,
        encoding: Encoding,
        sample_rates: Mapping[str, int],
        languages: Mapping[str, str] | None = None,
        whole_chunk_voices: frozenset[str] = frozenset(),
        limits: SessionLimits,
        link: SynthesisLink,
        metrics: SessionObserver,
        rate_check: RateCheck | None = None,
        log_fields: Mapping[str, str] | None = None,
    ) -> None:
        self.id = session_id
        # What every log line about this stream carries (logs.stream_fields): the session,
        # and a speech request's request_id.
        self.log_fields: dict[str, str] = {**stream_fields(session_id), **(log_fields or {})}
        self.settings = settings
        self.encoding = encoding
        self.state = StreamState.OPEN
        self._rates = sample_rates
        # Each voice's segmenter language (its sentence and clause rules); "en" where unknown.
        self._languages = languages or {}
        # Voices whose chunk audio exists only once the whole chunk is made (Kokoro).
        self._whole_chunks = whole_chunk_voices
        self._voices = frozenset(sample_rates)
        self._limits = limits
        self._link = link
        self._metrics = metrics
        self._rate_check = rate_check
        self._segmenter = self._new_segmenter(settings.voice)
        self._next_seq = 0
        self._sentences: dict[int, _Sentence] = {}
        self._pending: deque[int] = deque()  # submitted seqs not yet fully queued, in order
        self._flush_marks: deque[int] = deque()  # send `flushed` once this seq is queued
        self._outbox: deque[Outgoing] = deque()
        self._outbox_audio_ms = 0.0
        # The stream's own account (done.stats and the summary line).
        self.chars = 0  # text accepted
        self.chunks_sent = 0
        self.cursor_ms = 0.0  # start_ms of the next chunk: audio sent or promised so far
        self.first_text_at: float | None = None  # when the first sentence was submitted
        self.ttfa_ms: int | None = None
        self.close_code: CloseCode | None = None
        self.close_reason = ""
        # Client messages answered with an `error`: the first is logged at INFO, the rest at
        # DEBUG, and the summary line counts them all (a client sending garbage in a loop
        # must not write a line per message).
        self.protocol_errors = 0
        self._send(protocol.ready(session_id, settings, sample_rates[settings.voice]))

    # ------------------------------------------------------------ the two doors

    def receive(self, item: SessionInput, now: float) -> None:
        """Take one input. Client errors become `error` messages; nothing here raises for
        anything a client sends."""
        match item:
            case ClientFrame() | ConfigMsg() | TextMsg() | FlushMsg() | ClearMsg() | EndMsg():
                if self._live:
                    self._on_client(item, now)
            case ChunkPlanned() | ChunkAudio() | ChunkFailed():
                try:
                    self._on_result(item, now)
                except Exception:  # a bug must cost this stream only, never the server
                    log.exception("internal error while handling a result",
                                  extra=self.log_fields)
                    self._error(ProtocolError(ErrorCode.INTERNAL, "internal error", fatal=True),
                                now)
            case ReceiveTimeout():
                # Idle only when nothing is being spoken or sent.
                if self.state is StreamState.OPEN and not self._pending and not self._outbox:
                    self._close(CloseCode.POLICY, "idle timeout", now)
            case SendTimeout():
                # The server cuts the connection itself (its send is stuck): just record it.
                if self.state is not StreamState.CLOSED:
                    self._close(CloseCode.POLICY, SLOW_READER, now)
                    self._finish()
            case GoingAway():
                if self.state is not StreamState.CLOSED:
                    self._drop_outbox()
                    self._close(CloseCode.GOING_AWAY, "server shutting down", now)
            case Disconnected():
                self._finish()
            case _:
                assert_never(item)

    def next_outgoing(self) -> Outgoing | None:
        """The next item to put on the wire, or None when nothing is queued."""
        if not self._outbox:
            return None
        item = self._outbox.popleft()
        if isinstance(item, SendAudio):
            self._outbox_audio_ms -= item.audio_ms
            self._metrics.audio_sent(item.audio_ms / 1000.0)
            if self._download:
                # The client's reading paces a download (protocol-v1: Pace).
                self._link.audio_taken(item.audio_ms / 1000.0)
        elif isinstance(item, Close):
            self._finish()
        return item

    def take_outgoing(self) -> tuple[list[SendMessage | SendAudio], Close | None]:
        """Everything queued, in wire order: the messages and frames, and the `Close` after
        them if one is queued (nothing follows it). What calling `next_outgoing()` until None
        or a Close returns, in one call: a writer that sends a decode window's frames in one
        write takes them this way (25 frames a second of audio for every listener)."""
        outbox = self._outbox
        items: list[SendMessage | SendAudio] = []
        close: Close | None = None
        audio_ms = 0.0
        append, pop = items.append, outbox.popleft
        while outbox:
            item = pop()
            if isinstance(item, Close):
                close = item
                break
            if type(item) is SendAudio:
                audio_ms += item.audio_ms
            append(item)
        if audio_ms:
            self._outbox_audio_ms -= audio_ms
            self._metrics.audio_sent(audio_ms / 1000.0)
            if self._download:
                # The client's reading paces a download (protocol-v1: Pace).
                self._link.audio_taken(audio_ms / 1000.0)
        if close is not None:
            self._finish()
        return items, close

    # ------------------------------------------------------------ what callers may look at

    @property
    def queued_audio_ms(self) -> float:
        """Audio waiting in the outbox (bounded by `send_buffer_s`)."""
        return max(0.0, self._outbox_audio_ms)

    @property
    def aborting(self) -> bool:
        """The next item cuts the connection: the sender may be stuck, do it now."""
        return bool(self._outbox) and isinstance(self._outbox[0], Close) and self._outbox[0].abort

    @property
    def last_seq(self) -> int:
        """The newest seq handed out (-1: none yet)."""
        return self._next_seq - 1

    @property
    def _download(self) -> bool:
        return self.settings.pace == "download"

    @property
    def _live(self) -> bool:
        """Still speaking: the last item is not queued yet."""
        return self.state in (StreamState.OPEN, StreamState.ENDING)

    # ------------------------------------------------------------ client messages

    def _on_client(self, item: ClientFrame | ClientMessage, now: float) -> None:
        try:
            if isinstance(item, ClientFrame):
                item = protocol.parse(protocol.decode(item.data, self.encoding), self._voices)
            self._on_message(item, now)
        except ProtocolError as exc:
            self.protocol_errors += 1
            level = logging.INFO if self.protocol_errors == 1 else logging.DEBUG
            if log.isEnabledFor(level):
                log.log(level, "protocol error %s: %s%s", exc.code, clip(exc.message),
                        " (later ones at DEBUG, counted in the summary)" if level == logging.INFO
                        else "", extra=self.log_fields)
            self._error(exc, now)
        except Exception:  # a bug must cost this stream only, never the server
            log.exception("internal error while handling a message", extra=self.log_fields)
            self._error(ProtocolError(ErrorCode.INTERNAL, "internal error", fatal=True), now)

    def _on_message(self, message: ClientMessage, now: float) -> None:
        if self.state is StreamState.ENDING and not isinstance(message, ClearMsg):
            raise ProtocolError(ErrorCode.BAD_MESSAGE,
                                "the stream has ended; only clear is accepted after end")
        if isinstance(message, TextMsg):
            self._check_text_limits(message.text)
        # `clear` and `end` are never rate limited: dropping a barge-in or an end would leave
        # the client waiting for `cleared` or `done` forever.
        if self._rate_check is not None and not isinstance(message, ClearMsg | EndMsg):
            chars = len(message.text) if isinstance(message, TextMsg) else 0
            wait_s = self._rate_check(chars, now)
            if wait_s > 0:
                # Refused, and said so: none of this message was accepted. The wait is rounded
                # up to a tenth: a client told "retry in 0.0 s" retried at once and was refused.
                tenths = math.ceil(round(wait_s * 10, 6)) / 10
                raise ProtocolError(ErrorCode.RATE_LIMITED,
                                    f"over the message or text rate; retry in {tenths:.1f} s")
        match message:
            case ConfigMsg(changes):
                if "pace" in changes and changes["pace"] != self.settings.pace and self.chars:
                    raise ProtocolError(ErrorCode.INVALID_PARAM,
                                        "pace applies to the whole stream: send it before the"
                                        " first text (or as the query parameter)")
                if "voice" in changes:
                    self._change_voice(str(changes["voice"]), now)
                self.settings = protocol.apply_config(self.settings, message)
                if "priority" in changes:
                    self._link.set_priority(self.settings.priority, now)
                if "pace" in changes:
                    self._link.set_pace(self.settings.pace, now)
            case TextMsg(text, flush):
                self._accept_text(text, now)
                if flush:
                    self._flush(now)
            case FlushMsg():
                self._flush(now)
            case ClearMsg():
                self._clear(now)
            case EndMsg():
                self.state = StreamState.ENDING
                self._submit(self._segmenter.flush(), now)
                self._maybe_done(now)
            case _:
                assert_never(message)

    def _check_text_limits(self, text: str) -> None:
        limits = self._limits
        if self.chars + len(text) > limits.max_stream_chars:
            raise ProtocolError(ErrorCode.TEXT_TOO_LONG,
                                f"stream text over {limits.max_stream_chars} characters",
                                fatal=True)
        if self._segmenter.buffered_chars + len(text) > limits.max_buffered_chars:
            # Refused, and said so: the client knows this text was not accepted.
            raise ProtocolError(ErrorCode.TEXT_TOO_LONG,
                                f"buffered text over {limits.max_buffered_chars} characters;"
                                " send flush or smaller pieces")

    def _new_segmenter(self, voice: str) -> Segmenter:
        """The voice's language picks the sentence and clause rules."""
        return Segmenter(max_chars=self._limits.max_chunk_chars,
                         first_max_chars=self._limits.first_chunk_chars or None,
                         language=self._languages.get(voice, "en"),
                         whole_chunks=voice in self._whole_chunks)

    def _change_voice(self, voice: str, now: float) -> None:
        """`config` with a voice: `ready` fixed the stream's sample rate, so a voice of another
        rate is refused (nothing of the message applies); text buffered before a change of
        language (or between a voice that streams inside a chunk and one that does not) is
        spoken by the old voice, then the new voice's rules take over."""
        rate = self._rates[self.settings.voice]
        if self._rates.get(voice, rate) != rate:
            raise ProtocolError(
                ErrorCode.INVALID_VOICE,
                f"voice {voice!r} speaks at {self._rates[voice]} Hz, this stream at {rate} Hz;"
                " open a new stream for it")
        if (self._languages.get(voice, "en") != self._languages.get(self.settings.voice, "en")
                or (voice in self._whole_chunks) != (self.settings.voice in self._whole_chunks)):
            self._submit(self._segmenter.flush(), now)
            self._segmenter = self._new_segmenter(voice)

    def _accept_text(self, text: str, now: float) -> None:
        self.chars += len(text)
        self._submit(self._segmenter.feed(text), now)

    def _submit(self, texts: list[str], now: float) -> None:
        settings = self.settings
        for text in texts:
            if self.first_text_at is None:
                self.first_text_at = now
            seq = self._next_seq
            self._next_seq += 1
            timestamps = settings.timestamps == "word"
            self._sentences[seq] = _Sentence(seq, text, settings.voice, settings.format,
                                             settings.frame_ms, timestamps=timestamps)
            self._pending.append(seq)
            self._link.submit(seq, text, speed=settings.speed, voice=settings.voice, now=now,
                              words=timestamps)

    def _flush(self, now: float) -> None:
        self._submit(self._segmenter.flush(), now)
        self._flush_marks.append(self.last_seq)
        self._pump(now)

    def _clear(self, now: float) -> None:
        """Barge-in: drop buffered text, queued sentences and every frame not yet sent."""
        self._segmenter.clear()
        self._link.clear(now)
        for seq in self._pending:
            self._retract(self._sentences[seq])
        self._sentences.clear()
        self._pending.clear()
        self._flush_marks.clear()
        # Drop every frame not yet sent and the chunk events announcing them; keep control
        # messages such as an `error` queued before the clear. start_ms counts audio sent.
        kept: deque[Outgoing] = deque()
        for item in self._outbox:
            if isinstance(item, SendAudio):
                self.cursor_ms -= item.audio_ms
            elif isinstance(item, SendMessage) and item.kind == "chunk":
                self.chunks_sent -= 1
            elif isinstance(item, SendMessage) and item.kind == "words":
                pass  # its chunk's, dropped with it
            else:
                kept.append(item)
        self._outbox = kept
        self._outbox_audio_ms = 0.0
        self._send(protocol.cleared(self.last_seq))
        self._maybe_done(now)  # a clear after `end` leaves nothing to speak

    def _retract(self, sentence: _Sentence) -> None:
        """Take back the announced audio of a sentence that will not all be queued."""
        if sentence.announced:
            self.cursor_ms -= sentence.exact_ms - sentence.queued_ms

    # ------------------------------------------------------------ synthesis results

    def _on_result(self, result: SynthesisResult, now: float) -> None:
        sentence = self._sentences.get(result.seq)
        if sentence is None or not self._live:
            return  # cleared, or the stream is finishing: its audio is not wanted
        match result:
            case ChunkPlanned(samples=samples, words=words):
                sentence.samples = samples
                sentence.words = words
            case ChunkAudio(last=last):
                if sentence.last_arrived:
                    raise ValueError(f"audio for seq {result.seq} after its last piece")
                sentence.pieces.append(result)
                sentence.last_arrived = last
            case ChunkFailed(message=message):
                # The scheduler side logs the failure with its cause; this is the stream's view.
                log.debug("chunk failed: %s", message,
                          extra={**self.log_fields, "seq": result.seq})
                sentence.failed = True
            case _:
                assert_never(result)
        self._pump(now)

    def _pump(self, now: float) -> None:
        """Move what is ready to the outbox in seq order (protocol-v1: frames in order)."""
        while self._pending and self._live:
            sentence = self._sentences[self._pending[0]]
            if sentence.failed:
                self._retract(sentence)
                self._done_with(sentence)
                self._error(ProtocolError(ErrorCode.SYNTHESIS_FAILED,
                                          f"chunk {sentence.seq} could not be synthesized"), now)
                continue
            if sentence.samples is None and sentence.last_arrived:
                # All its audio came without a plan: its length is what arrived.
                sentence.samples = sum(len(piece.audio) for piece in sentence.pieces)
            if not sentence.announced:
                if sentence.samples is None:
                    break
                self._announce(sentence)
            while sentence.pieces and self._live:
                self._queue_piece(sentence, sentence.pieces.popleft(), now)
            if not sentence.last_arrived or not self._live:
                break  # more to come, or the send buffer overflowed and the stream ended
            self._done_with(sentence)
        self._release_flush_marks()
        self._maybe_done(now)

    def _done_with(self, sentence: _Sentence) -> None:
        self._pending.popleft()
        del self._sentences[sentence.seq]
        self._release_flush_marks()

    def _release_flush_marks(self) -> None:
        """`flushed` as soon as every frame of the text before its flush is queued."""
        while self._flush_marks and (not self._pending or self._flush_marks[0] < self._pending[0]):
            self._send(protocol.flushed(self._flush_marks.popleft()))

    def _announce(self, sentence: _Sentence) -> None:
        assert sentence.samples is not None
        rate = self._rates[sentence.voice]
        # The stream's clock counts exact audio and each chunk's times are rounded from it:
        # duration_ms is the next chunk's start_ms less this one's (within 1 ms of its own
        # length), so chunks tile the timeline and start_ms stays where the chunk's audio
        # starts. (Adding each chunk's rounded length drifted up to 0.5 ms a chunk: 20 ms
        # after 150 chunks of one cached sentence.)
        sentence.exact_ms = sentence.samples * 1000 / rate
        sentence.announced = True
        start_ms = round(self.cursor_ms)
        sentence.duration_ms = round(self.cursor_ms + sentence.exact_ms) - start_ms
        self._send(protocol.chunk(sentence.seq, sentence.text, start_ms, sentence.duration_ms))
        if sentence.timestamps:
            # On the stream's timeline: the chunk's start_ms plus each word's offset, rounded
            # as duration_ms is, so every word lies inside its chunk.
            end_ms = start_ms + sentence.duration_ms
            self._send(protocol.words(sentence.seq, [
                protocol.word(w.text, min(start_ms + protocol.samples_to_ms(w.start_sample, rate),
                                          end_ms),
                              min(start_ms + protocol.samples_to_ms(w.end_sample, rate), end_ms),
                              w.char_start, w.char_end)
                for w in sentence.words]))
        self.cursor_ms += sentence.exact_ms
        self.chunks_sent += 1

    def _queue_piece(self, sentence: _Sentence, result: ChunkAudio, now: float) -> None:
        """Frame one piece of audio: whole frames of at most frame_ms, the tail of a piece
        waits for the next one (the sentence's last frame may be short)."""
        audio = result.audio
        if self.ttfa_ms is None and self.first_text_at is not None and len(audio):
            ttfa_s = now - self.first_text_at
            self.ttfa_ms = round(ttfa_s * 1000)
            self._metrics.first_audio(ttfa_s)
        rate = self._rates[sentence.voice]
        if result.pcm_s16 is not None and sentence.format == "s16le":
            piece = result.pcm_s16
        else:
            piece = protocol.to_pcm(audio, sentence.format)
        pcm = sentence.carry + piece
        size = protocol.frame_bytes(rate, sentence.frame_ms, sentence.format)
        last = sentence.last_arrived and not sentence.pieces
        whole = len(pcm) if last else len(pcm) - len(pcm) % size
        sentence.carry = pcm[whole:]
        if whole:
            # The piece's whole frames as one item (SendAudio: the writer splits them into
            # messages); json audio is the PCM itself (protocol.encode_audio).
            audio_ms = whole * 1000.0 / (rate * protocol.BYTES_PER_SAMPLE[sentence.format])
            frames = pcm if whole == len(pcm) else pcm[:whole]
            if self.encoding is Encoding.JSON:
                item = SendAudio(sentence.seq, frames, audio_ms, size)
            else:
                messages = [protocol.encode_audio(sentence.seq, frame, self.encoding)
                            for frame in protocol.split_frames(frames, size)]
                item = SendAudio(sentence.seq, b"".join(messages), audio_ms, len(messages[0]))
            self._outbox.append(item)
            self._outbox_audio_ms += audio_ms
            sentence.queued_ms += audio_ms
        self._link.audio_queued(sentence.seq, len(audio) / rate, len(piece), now)
        if not self._download and self._outbox_audio_ms > self._limits.send_buffer_s * 1000.0:
            # Config.send_buffer_s: a listener that reads slower than it plays is cut off
            # before the server holds more of its audio (the scheduler's lookahead cap usually
            # stops synthesis long before this; cached audio enters at the same pace). A
            # download is never cut for this: what its client has not read holds its
            # synthesis instead (download_buffer_s), and a client that stops reading
            # altogether is cut by the send timeout.
            log.warning("%.1f s of audio waiting to be sent; cutting off",
                        self._outbox_audio_ms / 1000.0, extra=self.log_fields)
            self._drop_outbox()
            self._close(CloseCode.POLICY, SLOW_READER, now, abort=True)

    # ------------------------------------------------------------ ending

    def _maybe_done(self, now: float) -> None:
        if self.state is StreamState.ENDING and not self._pending and not self._flush_marks:
            self._send(protocol.done(
                chars=self.chars, chunks=self.chunks_sent, audio_ms=round(self.cursor_ms),
                ttfa_ms=self.ttfa_ms, underrun_ms=round(self._link.underrun_s() * 1000)))
            self._close(CloseCode.NORMAL, "done", now)

    def _error(self, error: ProtocolError, now: float) -> None:
        self._metrics.error(error.code)
        self._send(protocol.error(error.code, error.message, error.fatal))
        if error.fatal:
            self._close(error.close_code, error.message, now, summary=str(error.code))

    def _close(self, code: CloseCode, reason: str, now: float, *, summary: str | None = None,
               abort: bool = False) -> None:
        """Queue the stream's last item: a Close after what is already queued. `abort`: cut
        the connection without a close handshake (it could not get through a full socket)."""
        self._outbox.append(Close(code, reason[:_CLOSE_REASON_MAX_CHARS], abort))
        self.close_code = code
        self.close_reason = reason if summary is None else summary
        self.state = StreamState.DRAINING
        if self._pending:
            self._link.clear(now)  # nothing more of this stream will be spoken
        self._forget_chunks()

    def _drop_outbox(self) -> None:
        self._outbox.clear()
        self._outbox_audio_ms = 0.0

    def _forget_chunks(self) -> None:
        """Nothing more of this stream is spoken: drop its chunks and flush marks."""
        self._sentences.clear()
        self._pending.clear()
        self._flush_marks.clear()

    def _finish(self) -> None:
        self.state = StreamState.CLOSED
        self._drop_outbox()
        self._forget_chunks()

    def _send(self, message: dict[str, Any]) -> None:
        self._outbox.append(SendMessage(str(message["type"]), protocol.encode(message,
                                                                               self.encoding)))
