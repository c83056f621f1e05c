"""protocol-v1 wire format, sans I/O: bytes or str in, typed messages out, and back.

This module owns every detail of the wire: field names, types, ranges, both encodings and
the audio frame layout. The server moves data between the socket and these functions; the
tests call them directly. Decisions the spec leaves open are listed in docs/protocol.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import msgpack
import numpy as np

from litestream.errors import ErrorCode, ProtocolError

# protocol-v1's values, defined here once; Config validates its defaults against them.
PROTOCOL_VERSION = 1
STREAM_PATH = "/v1/stream"  # protocol-v1: Endpoint
SPEED_MIN, SPEED_MAX = 0.5, 2.0
FRAME_MS_MIN, FRAME_MS_MAX = 10, 1000
BYTES_PER_SAMPLE = {"s16le": 2, "f32le": 4}  # the audio formats and their sample sizes
PCM_FORMATS = tuple(BYTES_PER_SAMPLE)
# protocol-v1: config. The scheduler's `Priority` has the same values (a test holds them equal);
# the wire format keeps its own strings so that it never imports the scheduler.
PRIORITIES = ("high", "normal", "low")
TIMESTAMPS = ("none", "word")  # protocol-v1: config `timestamps`; "word" adds `words` events
# protocol-v1: Pace. `listener` (played as it arrives) or `download` (read as fast as it comes);
# the scheduler's `Pace` has the same values (a test holds them equal).
PACES = ("listener", "download")


class Encoding(StrEnum):
    JSON = "json"
    MSGPACK = "msgpack"


@dataclass(frozen=True)
class StreamSettings:
    """What a `config` message (or the handshake's query) sets; applies to text after it.

    The server's defaults for voice, format and frame_ms come from Config (their one home)."""

    voice: str
    format: str
    frame_ms: int
    speed: float = 1.0  # protocol-v1: the voice's own pace
    priority: str = "normal"
    timestamps: str = "none"  # "word": a `words` event follows each `chunk` event
    pace: str = "listener"  # protocol-v1: Pace; for the whole stream, set before its first text


# ---------------------------------------------------------------- client messages

@dataclass(frozen=True)
class ConfigMsg:
    changes: Mapping[str, Any]  # only the fields the client sent, validated


@dataclass(frozen=True)
class TextMsg:
    text: str
    flush: bool = False


@dataclass(frozen=True)
class FlushMsg:
    pass


@dataclass(frozen=True)
class ClearMsg:
    pass


@dataclass(frozen=True)
class EndMsg:
    pass


ClientMessage = ConfigMsg | TextMsg | FlushMsg | ClearMsg | EndMsg


def _bad(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_MESSAGE, message)


def _invalid(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.INVALID_PARAM, message)


def validate_setting(name: str, value: Any, voices: frozenset[str]) -> Any:
    """Check one config field's type and range; return it normalized.

    Wrong type -> bad_message; right type, out of range -> invalid_param; unknown voice ->
    invalid_voice (protocol-v1: Error codes).
    """
    if name == "voice":
        if not isinstance(value, str):
            raise _bad("field 'voice' must be a string")
        if value not in voices:
            raise ProtocolError(
                ErrorCode.INVALID_VOICE,
                f"unknown voice {shown(value)}; available: {', '.join(sorted(voices))}",
            )
        return value
    if name == "speed":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad("field 'speed' must be a number")
        # Compared, never converted first: NaN fails the comparison, and an integer too big
        # for a float (JSON allows one) compares exactly where float() would overflow.
        if not SPEED_MIN <= value <= SPEED_MAX:
            raise _invalid(f"speed must be {SPEED_MIN}..{SPEED_MAX}, got {shown_number(value)}")
        return float(value)
    if name == "format":
        if not isinstance(value, str):
            raise _bad("field 'format' must be a string")
        if value not in PCM_FORMATS:
            raise _invalid(f"format must be one of {', '.join(PCM_FORMATS)}, got {shown(value)}")
        return value
    if name == "frame_ms":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad("field 'frame_ms' must be a number")
        # The range first: it refuses NaN and the infinities (JSON's NaN, Infinity, 1e400),
        # which int() cannot take.
        if not FRAME_MS_MIN <= value <= FRAME_MS_MAX or value != int(value):
            raise _invalid(f"frame_ms must be an integer {FRAME_MS_MIN}..{FRAME_MS_MAX}")
        return int(value)
    if name == "priority":
        if not isinstance(value, str):
            raise _bad("field 'priority' must be a string")
        if value not in PRIORITIES:
            raise _invalid(f"priority must be one of {', '.join(PRIORITIES)}, got {shown(value)}")
        return value
    if name == "timestamps":
        if not isinstance(value, str):
            raise _bad("field 'timestamps' must be a string")
        if value not in TIMESTAMPS:
            raise _invalid(f"timestamps must be one of {', '.join(TIMESTAMPS)}, got {shown(value)}")
        return value
    if name == "pace":
        if not isinstance(value, str):
            raise _bad("field 'pace' must be a string")
        if value not in PACES:
            raise _invalid(f"pace must be one of {', '.join(PACES)}, got {shown(value)}")
        return value
    raise _bad(f"unknown config field {shown(name)}")


def shown(value: object) -> str:
    """A client's value in an error message, as Python writes it, cut short: an error echoes
    at most this much of what a client sent (a 60 KB message type was echoed, and logged,
    whole)."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}... ({len(text)} chars)"


SHOWN_CHARS = 60


def shown_number(value: float) -> str:
    """A number for an error message: a huge integer (JSON allows one) is not written out in
    full."""
    text = str(value)
    return text if len(text) <= 20 else f"{text[:10]}... ({len(text)} digits)"


def lone_surrogate(text: str) -> int | None:
    """Where ``text`` holds a lone UTF-16 surrogate, else None. JSON can escape one ("\\ud800"),
    but it is not Unicode text: no voice can speak it (the phonemizer takes UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


CONFIG_FIELDS = ("voice", "speed", "format", "frame_ms", "priority", "timestamps", "pace")


def decode(frame: str | bytes, encoding: Encoding) -> dict[str, Any]:
    """One WebSocket frame -> the message object, or bad_message."""
    if encoding is Encoding.JSON:
        if isinstance(frame, bytes):
            raise _bad("binary frames are not accepted with encoding=json; send JSON text")
        try:
            obj = json.loads(frame)
        except (ValueError, RecursionError) as exc:
            raise _bad(f"not valid JSON: {exc}") from None
    else:
        if isinstance(frame, str):
            raise _bad("text frames are not accepted with encoding=msgpack; send a msgpack map")
        try:
            obj = msgpack.unpackb(frame, raw=False, strict_map_key=True)
        except Exception as exc:  # msgpack raises several unrelated types
            raise _bad(f"not valid msgpack: {type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise _bad("a message must be an object with a 'type' field")
    return obj


def parse(obj: Mapping[str, Any], voices: frozenset[str]) -> ClientMessage:
    """A decoded message object -> a typed client message.

    Unknown extra fields are ignored (forward compatibility; docs/protocol.md).
    """
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise _bad("field 'type' is missing or not a string")
    if kind == "text":
        text = obj.get("text")
        if not isinstance(text, str):
            raise _bad("field 'text' must be a string")
        if lone_surrogate(text) is not None:
            raise _bad("field 'text' is not valid Unicode (lone surrogate)")
        flush = obj.get("flush", False)
        if not isinstance(flush, bool):
            raise _bad("field 'flush' must be a boolean")
        return TextMsg(text=text, flush=flush)
    if kind == "config":
        changes = {
            name: validate_setting(name, obj[name], voices)
            for name in CONFIG_FIELDS
            if name in obj and obj[name] is not None
        }
        return ConfigMsg(changes=changes)
    if kind == "flush":
        return FlushMsg()
    if kind == "clear":
        return ClearMsg()
    if kind == "end":
        return EndMsg()
    raise _bad(f"unknown message type {shown(kind)}")


def apply_config(settings: StreamSettings, msg: ConfigMsg) -> StreamSettings:
    return replace(settings, **dict(msg.changes))


# ---------------------------------------------------------------- handshake query

@dataclass(frozen=True)
class HandshakeParams:
    settings: StreamSettings
    encoding: Encoding
    # `token` (an API key in the query, for browsers) is not here: the server reads the key
    # from the header or the query itself (security.extract_key), before these are parsed.


class QueryError(Exception):
    """A bad query parameter at the handshake: answered with HTTP 400 naming it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


def parse_query(query: Mapping[str, str], defaults: StreamSettings,
                voices: frozenset[str]) -> HandshakeParams:
    """protocol-v1: Endpoint. Parameter names not in the spec are ignored."""
    changes: dict[str, Any] = {}
    for name in CONFIG_FIELDS:
        if name not in query:
            continue
        raw = query[name]
        value: Any = raw
        try:
            if name == "speed" or name == "frame_ms":
                value = float(raw)
        except ValueError:
            raise QueryError(name, f"query parameter {shown(name)}: {shown(raw)} is not a "
                                   "number") from None
        try:
            changes[name] = validate_setting(name, value, voices)
        except ProtocolError as exc:
            raise QueryError(name, f"query parameter {shown(name)}: {exc.message}") from None
    enc_raw = query.get("encoding", "json")
    try:
        encoding = Encoding(enc_raw)
    except ValueError:
        raise QueryError("encoding", f"query parameter 'encoding' must be json or msgpack, "
                                     f"got {shown(enc_raw)}") from None
    return HandshakeParams(settings=replace(defaults, **changes), encoding=encoding)


# ---------------------------------------------------------------- server messages

def ready(session: str, settings: StreamSettings, sample_rate: int) -> dict[str, Any]:
    return {
        "type": "ready", "protocol": PROTOCOL_VERSION, "session": session,
        "voice": settings.voice, "sample_rate": sample_rate, "format": settings.format,
        "channels": 1, "frame_ms": settings.frame_ms,
    }


def chunk(seq: int, text: str, start_ms: int, duration_ms: int) -> dict[str, Any]:
    return {"type": "chunk", "seq": seq, "text": text, "start_ms": start_ms,
            "duration_ms": duration_ms}


def words(seq: int, spoken: list[dict[str, Any]]) -> dict[str, Any]:
    """protocol-v1 `words`: each item ``{"text", "start_ms", "end_ms", "char_start",
    "char_end"}``, times on the stream's audio timeline (the clock of `start_ms`)."""
    return {"type": "words", "seq": seq, "words": spoken}


def word(text: str, start_ms: int, end_ms: int, char_start: int, char_end: int
         ) -> dict[str, Any]:
    return {"text": text, "start_ms": start_ms, "end_ms": end_ms, "char_start": char_start,
            "char_end": char_end}


def flushed(seq: int) -> dict[str, Any]:
    return {"type": "flushed", "seq": seq}


def cleared(seq: int) -> dict[str, Any]:
    return {"type": "cleared", "seq": seq}


def done(chars: int, chunks: int, audio_ms: int, ttfa_ms: int | None,
         underrun_ms: int) -> dict[str, Any]:
    return {"type": "done", "stats": {"chars": chars, "chunks": chunks, "audio_ms": audio_ms,
                                      "ttfa_ms": ttfa_ms, "underrun_ms": underrun_ms}}


def error(code: ErrorCode, message: str, fatal: bool) -> dict[str, Any]:
    return {"type": "error", "code": str(code), "message": message, "fatal": fatal}


def encode(message: Mapping[str, Any], encoding: Encoding) -> str | bytes:
    if encoding is Encoding.JSON:
        return json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    return msgpack.packb(message, use_bin_type=True)


def encode_audio(seq: int, pcm: bytes, encoding: Encoding) -> bytes:
    """protocol-v1: json audio is raw PCM in a binary frame; msgpack wraps it in a map."""
    if encoding is Encoding.JSON:
        return pcm
    return msgpack.packb({"type": "audio", "seq": seq, "pcm": pcm}, use_bin_type=True)


# ---------------------------------------------------------------- audio

def to_s16(audio: np.ndarray) -> np.ndarray:
    """Float mono in [-1, 1] -> int16 samples: the one conversion, for the wire and WAV files."""
    samples: np.ndarray = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    return samples


def to_pcm(audio: np.ndarray, fmt: str) -> bytes:
    """Float32 mono in [-1, 1] -> little-endian PCM bytes of the stream's format."""
    if fmt == "s16le":
        return to_s16(audio).tobytes()
    return np.asarray(audio, dtype="<f4").tobytes()


def frame_bytes(sample_rate: int, frame_ms: int, fmt: str) -> int:
    """Bytes in one full frame: whole samples, at most frame_ms of audio."""
    samples = max(1, sample_rate * frame_ms // 1000)
    return samples * BYTES_PER_SAMPLE[fmt]


def split_frames(pcm: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(pcm), size):
        yield pcm[start:start + size]


def samples_to_ms(samples: int, sample_rate: int) -> int:
    return round(samples * 1000 / sample_rate)
