"""What goes in and out of a `session.StreamSession`, and the port it asks work through.

Inputs: a client frame or message, a synthesis result (`ChunkPlanned`, `ChunkAudio`,
`ChunkFailed`: whole-chunk synthesis is Planned + Audio(last=True); in-sentence streaming sends
several Audio pieces), or a lifecycle event. Outputs: `SendMessage`, `SendAudio`, `Close`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import numpy as np

from litestream.errors import CloseCode
from litestream.protocol import ClientMessage


class StreamState(Enum):
    """Where a stream is in its life. It only moves forward, except OPEN <- nothing."""

    OPEN = "open"          # takes text, flush, clear, config, end
    ENDING = "ending"      # `end` received: speaking what is left; only `clear` is accepted
    DRAINING = "draining"  # its last items (`done`, or a fatal error) and a Close are queued
    CLOSED = "closed"      # the Close went out, or the connection is gone: nothing more


# ---------------------------------------------------------------- inputs

@dataclass(frozen=True, slots=True)
class ClientFrame:
    """One WebSocket frame from the client, as received."""

    data: str | bytes


class TimedWord(Protocol):
    """One word of a chunk and where it is heard in the chunk's audio (the engine's
    `engine.base.Word` has this shape)."""

    @property
    def text(self) -> str: ...  # chunk_text[char_start:char_end]

    @property
    def char_start(self) -> int: ...

    @property
    def char_end(self) -> int: ...

    @property
    def start_sample(self) -> int: ...  # from the chunk's first sample, at the voice's rate

    @property
    def end_sample(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ChunkPlanned:
    """Sentence `seq`'s exact length is known (after its encode step), and its words' times."""

    seq: int
    text: str
    samples: int  # the sentence's audio length, samples at the voice's rate
    words: tuple[TimedWord, ...] = ()  # in order, inside [0, samples)


@dataclass(frozen=True, slots=True)
class ChunkAudio:
    """The next piece of sentence `seq`'s audio, in order; `last` on its final piece."""

    seq: int
    audio: np.ndarray  # float32 mono in [-1, 1]
    last: bool
    # The same audio as s16le PCM (the default wire format), made by the worker off the event
    # loop; None: the session converts `audio` itself.
    pcm_s16: bytes | None = None


@dataclass(frozen=True, slots=True)
class ChunkFailed:
    """Sentence `seq` could not be synthesized: `synthesis_failed` in its place."""

    seq: int
    message: str  # why, for the log; never sent (it may carry engine details)


@dataclass(frozen=True, slots=True)
class ReceiveTimeout:
    """No client message for `idle_timeout_s`."""


@dataclass(frozen=True, slots=True)
class SendTimeout:
    """A send stayed blocked for `slow_reader_timeout_s`: the client stopped reading."""


@dataclass(frozen=True, slots=True)
class GoingAway:
    """The server is shutting down and the drain grace is over."""


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection is gone (closed by either side, or lost)."""


SynthesisResult = ChunkPlanned | ChunkAudio | ChunkFailed
Lifecycle = ReceiveTimeout | SendTimeout | GoingAway | Disconnected
SessionInput = ClientFrame | ClientMessage | SynthesisResult | Lifecycle


# ---------------------------------------------------------------- outputs

@dataclass(frozen=True, slots=True)
class SendMessage:
    """A control message (ready, chunk, flushed, cleared, done, error), encoded."""

    kind: str  # the message's `type`
    payload: str | bytes


# Not frozen, unlike its neighbours: one is made for every piece of audio of every listener,
# and a frozen dataclass's __init__ costs 3x (0.51 against 0.15 µs here); nothing changes one
# after it is made.
@dataclass(slots=True)
class SendAudio:
    """Audio frames of sentence `seq`, in order and back to back in `payload`, each one
    message on the wire, encoded (raw PCM with json, a map with msgpack). Every frame but the
    last is `frame_size` bytes; 0: the payload is one frame.

    One item holds a piece's frames (a decode window's), not one item per frame: a frame is
    40 ms, so per-frame items cost 25 objects a second of audio for every listener, each
    made, queued, counted and taken apart again on the event loop. The writer splits them
    into messages as it writes (`frames()`, websocket.py)."""

    seq: int
    payload: bytes
    audio_ms: float  # audio in these frames
    frame_size: int = 0

    def frames(self) -> list[memoryview]:
        """The frames, one message each: views of the payload, nothing copied."""
        view, size = memoryview(self.payload), self.frame_size
        if not 0 < size < len(view):
            return [view]
        return [view[start:start + size] for start in range(0, len(view), size)]


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection; nothing follows."""

    code: CloseCode
    reason: str
    abort: bool = False  # cut the TCP connection at once: the client stopped reading


Outgoing = SendMessage | SendAudio | Close


# ---------------------------------------------------------------- the scheduler side

class SynthesisLink(Protocol):
    """What one session asks of the scheduler side; the server implements it per stream."""

    def submit(self, seq: int, text: str, *, speed: float, voice: str, now: float,
               words: bool = False) -> None:
        """Queue sentence `seq` for synthesis; its results come back as session inputs.
        `words`: the stream asked for its words' times (protocol-v1 `timestamps`)."""

    def clear(self, now: float) -> None:
        """Drop every queued sentence of this stream; results of in-flight ones are dropped."""

    def set_priority(self, priority: str, now: float) -> None: ...

    def set_pace(self, pace: str, now: float) -> None:
        """protocol-v1: Pace, for the whole stream (the session allows it before any text)."""

    def audio_taken(self, audio_s: float) -> None:
        """A download stream's client took `audio_s` of its audio from the outbox: what waits
        for the client to read, which holds a download's synthesis, shrinks."""

    def audio_queued(self, seq: int, audio_s: float, nbytes: int, now: float) -> None:
        """`audio_s` of sentence `seq` (`nbytes` of PCM) went to the outbox: the listener's
        playback clock moves (the scheduler owns it, and the stall estimate)."""

    def underrun_s(self) -> float:
        """Estimated time this stream's listener ran dry so far (for `done`)."""


class SessionObserver(Protocol):
    """What a session reports as it happens, for the operator: `metrics.Metrics` implements it
    (structurally), so the session itself never imports prometheus."""

    def first_audio(self, ttfa_s: float) -> None:
        """The stream's first audio went out, `ttfa_s` after its first speakable text."""

    def error(self, code: str) -> None:
        """An `error` message with this code went to the client."""

    def audio_sent(self, audio_s: float) -> None:
        """The stream's writer took `audio_s` of audio frames for its socket (audio a clear,
        a disconnect or a cut-off slow reader dropped from the outbox never counts)."""


RateCheck = Callable[[int, float], float]  # (text chars, now) -> seconds to wait; 0: go ahead


@dataclass(frozen=True)
class SessionLimits:
    """The per-stream limits, from Config (the one home of their defaults)."""

    max_stream_chars: int  # text one stream may send in all
    max_buffered_chars: int  # text buffered (not yet a sentence) before text_too_long
    max_chunk_chars: int  # the segmenter's longest chunk
    first_chunk_chars: int  # a longer first sentence of a run is cut at a clause (0: never)
    send_buffer_s: float  # a listener's audio waiting in the outbox before it is cut off
