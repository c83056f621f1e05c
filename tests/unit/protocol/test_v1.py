"""protocol-v1 wire format, tested with plain calls (no server, no event loop)."""

from __future__ import annotations

import json

import msgpack
import numpy as np
import pytest

from litestream import protocol
from litestream.errors import ErrorCode, ProtocolError
from litestream.protocol import Encoding, StreamSettings
from litestream.scheduler import Pace, Priority

VOICES = frozenset({"en_US-joe-medium"})
DEFAULTS = StreamSettings(voice="en_US-joe-medium", format="s16le", frame_ms=40)


def test_the_wire_priorities_are_the_schedulers() -> None:
    # The wire format keeps its own strings (it never imports the scheduler); they must agree.
    assert tuple(p.value for p in Priority) == protocol.PRIORITIES
    assert StreamSettings(voice="v", format="s16le", frame_ms=40).priority == Priority.NORMAL


def test_the_wire_paces_are_the_schedulers() -> None:
    assert tuple(p.value for p in Pace) == protocol.PACES
    assert StreamSettings(voice="v", format="s16le", frame_ms=40).pace == Pace.LISTENER


def test_pace_in_config() -> None:
    assert parse_json('{"type":"config","pace":"download"}') == protocol.ConfigMsg(
        {"pace": "download"})
    assert error_of('{"type":"config","pace":"fast"}').code is ErrorCode.INVALID_PARAM
    assert error_of('{"type":"config","pace":1}').code is ErrorCode.BAD_MESSAGE


def parse_json(text: str) -> protocol.ClientMessage:
    return protocol.parse(protocol.decode(text, Encoding.JSON), VOICES)


def error_of(text: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_json(text)
    return info.value


def test_text_message_with_and_without_flush() -> None:
    assert parse_json('{"type":"text","text":"Hi."}') == protocol.TextMsg("Hi.", False)
    assert parse_json('{"type":"text","text":"Hi.","flush":true}') == protocol.TextMsg("Hi.", True)


@pytest.mark.parametrize("kind,cls", [("flush", protocol.FlushMsg), ("clear", protocol.ClearMsg),
                                      ("end", protocol.EndMsg)])
def test_bare_messages(kind: str, cls: type) -> None:
    assert isinstance(parse_json(json.dumps({"type": kind})), cls)


@pytest.mark.parametrize("frame", [
    "not json", "[1, 2]", '"text"', "{}", '{"type": 3}', '{"type":"shout"}',
    '{"type":"text"}', '{"type":"text","text":5}', '{"type":"text","text":"a","flush":"yes"}',
    '{"type":"config","speed":"fast"}', '{"type":"config","frame_ms":true}',
    '{"type":"text","text":"a \\ud800 b"}',  # a lone surrogate (found by loadtest.faults)
])
def test_bad_messages_are_bad_message_and_not_fatal(frame: str) -> None:
    err = error_of(frame)
    assert err.code is ErrorCode.BAD_MESSAGE
    assert not err.fatal


@pytest.mark.parametrize("frame", [
    '{"type":"config","speed":3.0}', '{"type":"config","speed":0.1}',
    '{"type":"config","format":"mp3"}', '{"type":"config","frame_ms":5}',
    '{"type":"config","frame_ms":20.5}', '{"type":"config","priority":"urgent"}',
])
def test_out_of_range_config_is_invalid_param(frame: str) -> None:
    assert error_of(frame).code is ErrorCode.INVALID_PARAM


@pytest.mark.parametrize("frame", [
    # Python's json reads NaN, Infinity and 1e400 (inf) as floats, and a 400-digit integer as
    # an int no float holds: each is a number out of range, not an internal error (before,
    # int(nan) and float(10**400) raised, and the stream closed with 1011).
    '{"type":"config","frame_ms":NaN}', '{"type":"config","frame_ms":Infinity}',
    '{"type":"config","frame_ms":-Infinity}', '{"type":"config","frame_ms":1e400}',
    '{"type":"config","frame_ms":1' + "0" * 400 + "}",
    '{"type":"config","speed":NaN}', '{"type":"config","speed":1e400}',
    '{"type":"config","speed":1' + "0" * 400 + "}",
])
def test_non_finite_or_huge_numbers_are_invalid_param(frame: str) -> None:
    err = error_of(frame)
    assert err.code is ErrorCode.INVALID_PARAM and not err.fatal
    assert len(err.message) < 80  # a huge number is not written out in full


def test_unknown_voice_is_invalid_voice() -> None:
    assert error_of('{"type":"config","voice":"nobody"}').code is ErrorCode.INVALID_VOICE


def test_config_applies_only_sent_fields() -> None:
    msg = parse_json('{"type":"config","speed":1.5,"priority":"high","extra":1}')
    assert isinstance(msg, protocol.ConfigMsg)
    settings = protocol.apply_config(DEFAULTS, msg)
    assert settings == StreamSettings(voice="en_US-joe-medium", format="s16le", frame_ms=40,
                                      speed=1.5, priority="high")


def test_encodings_refuse_the_other_frame_kind() -> None:
    with pytest.raises(ProtocolError):
        protocol.decode(b"\x81\xa4type\xa3end", Encoding.JSON)
    with pytest.raises(ProtocolError):
        protocol.decode('{"type":"end"}', Encoding.MSGPACK)
    with pytest.raises(ProtocolError):
        protocol.decode(b"\xc1", Encoding.MSGPACK)


def test_msgpack_round_trip() -> None:
    frame = msgpack.packb({"type": "text", "text": "Hello."})
    msg = protocol.parse(protocol.decode(frame, Encoding.MSGPACK), VOICES)
    assert msg == protocol.TextMsg("Hello.")
    out = protocol.encode(protocol.flushed(3), Encoding.MSGPACK)
    assert msgpack.unpackb(out) == {"type": "flushed", "seq": 3}
    audio = msgpack.unpackb(protocol.encode_audio(2, b"\x01\x02", Encoding.MSGPACK))
    assert audio == {"type": "audio", "seq": 2, "pcm": b"\x01\x02"}
    assert protocol.encode_audio(2, b"\x01\x02", Encoding.JSON) == b"\x01\x02"


def test_query_parsing() -> None:
    params = protocol.parse_query({"speed": "1.25", "format": "f32le", "frame_ms": "20",
                                   "encoding": "msgpack", "token": "k", "utm": "x"},
                                  DEFAULTS, VOICES)
    assert params.settings.speed == 1.25
    assert params.settings.format == "f32le"
    assert params.settings.frame_ms == 20
    assert params.encoding is Encoding.MSGPACK  # token (the server reads it) and utm: no 400
    assert params.settings.pace == "listener"
    assert protocol.parse_query({"pace": "download"}, DEFAULTS, VOICES).settings.pace == (
        "download")


@pytest.mark.parametrize("query,param", [
    ({"voice": "nobody"}, "voice"), ({"speed": "fast"}, "speed"), ({"speed": "9"}, "speed"),
    ({"format": "wav"}, "format"), ({"encoding": "xml"}, "encoding"),
    ({"frame_ms": "0"}, "frame_ms"), ({"priority": "now"}, "priority"),
    ({"pace": "fast"}, "pace"),
    # Not numbers int() can take: a 400 naming the parameter, not a 500.
    ({"frame_ms": "inf"}, "frame_ms"), ({"frame_ms": "nan"}, "frame_ms"),
    ({"frame_ms": "1e400"}, "frame_ms"), ({"speed": "nan"}, "speed"),
])
def test_bad_query_names_the_parameter(query: dict[str, str], param: str) -> None:
    with pytest.raises(protocol.QueryError) as info:
        protocol.parse_query(query, DEFAULTS, VOICES)
    assert info.value.param == param
    assert param in info.value.message


def test_server_messages_have_spec_fields() -> None:
    ready = protocol.ready("abc", DEFAULTS, 22050)
    assert ready == {"type": "ready", "protocol": 1, "session": "abc", "voice": "en_US-joe-medium",
                     "sample_rate": 22050, "format": "s16le", "channels": 1, "frame_ms": 40}
    done = protocol.done(chars=10, chunks=2, audio_ms=900, ttfa_ms=120, underrun_ms=0)
    assert set(done["stats"]) == {"chars", "chunks", "audio_ms", "ttfa_ms", "underrun_ms"}
    err = protocol.error(ErrorCode.TEXT_TOO_LONG, "too long", False)
    assert err == {"type": "error", "code": "text_too_long", "message": "too long",
                   "fatal": False}


def test_pcm_formats_and_frames() -> None:
    audio = np.array([0.0, 0.5, -1.0, 2.0], dtype=np.float32)
    s16 = np.frombuffer(protocol.to_pcm(audio, "s16le"), dtype="<i2")
    assert s16.tolist() == [0, 16383, -32767, 32767]
    f32 = np.frombuffer(protocol.to_pcm(audio, "f32le"), dtype="<f4")
    assert f32.tolist() == audio.tolist()
    size = protocol.frame_bytes(22050, 40, "s16le")
    assert size == 882 * 2
    frames = list(protocol.split_frames(b"x" * (size * 2 + 10), size))
    assert [len(f) for f in frames] == [size, size, 10]
    assert protocol.samples_to_ms(22050, 22050) == 1000


def test_an_error_echoes_at_most_a_little_of_what_the_client_sent() -> None:
    """A 60 KB message type (or voice, or format) is named in the error cut short: the error
    goes back to the client and into the server's log."""
    for obj in ({"type": "x" * 60_000}, {"type": "config", "format": "y" * 60_000},
                {"type": "config", "voice": "z" * 60_000}):
        with pytest.raises(ProtocolError) as caught:
            protocol.parse(obj, frozenset({"v"}))
        assert len(caught.value.message) < 200
        assert "60002 chars" in caught.value.message
