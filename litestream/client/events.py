"""Events a protocol-v1 client receives (server -> client), as typed frozen dataclasses.

`client.EventDecoder` makes them from frames; `playback.PlaybackClock` consumes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ready:
    """protocol-v1 `ready`: the first message on every stream."""

    protocol: int
    session: str
    voice: str
    sample_rate: int  # Hz
    format: str  # "s16le" | "f32le"
    channels: int
    frame_ms: int


@dataclass(frozen=True)
class Chunk:
    """protocol-v1 `chunk`: the audio of this text follows."""

    seq: int
    text: str
    start_ms: int  # where it starts in this stream's audio (the server's count)
    duration_ms: int


@dataclass(frozen=True)
class Word:
    """One word of a chunk: ``chunk.text[char_start:char_end]`` is ``text``; it is heard from
    ``start_ms`` to ``end_ms`` on the stream's audio timeline (the clock of `Chunk.start_ms`)."""

    text: str
    start_ms: int
    end_ms: int
    char_start: int
    char_end: int


@dataclass(frozen=True)
class Words:
    """protocol-v1 `words` (only with ``timestamps="word"``): chunk `seq`'s words, sent after
    its `chunk` event and before its audio."""

    seq: int
    words: tuple[Word, ...]


@dataclass(frozen=True)
class Audio:
    """One audio frame of chunk `seq`: raw little-endian PCM, mono."""

    seq: int
    pcm: bytes
    format: str = "s16le"

    def samples(self) -> np.ndarray:
        """The frame as int16 (s16le) or float32 (f32le) samples; a copy, safe to modify."""
        dtype = "<i2" if self.format == "s16le" else "<f4"
        return np.frombuffer(self.pcm, dtype=dtype).astype(dtype[1:])


@dataclass(frozen=True)
class Flushed:
    seq: int  # last chunk that existed when the flush arrived; -1 if none


@dataclass(frozen=True)
class Cleared:
    seq: int  # last chunk that existed when the clear arrived; no audio of it or earlier follows


@dataclass(frozen=True)
class DoneStats:
    """The server's own account of the stream (protocol-v1 `done`)."""

    chars: int
    chunks: int
    audio_ms: int
    ttfa_ms: int | None  # None when no audio was ever sent
    underrun_ms: int


@dataclass(frozen=True)
class Done:
    stats: DoneStats


@dataclass(frozen=True)
class Error:
    code: str  # one of litestream.errors.ErrorCode's values
    message: str
    fatal: bool


Event = Ready | Chunk | Words | Audio | Flushed | Cleared | Done | Error
