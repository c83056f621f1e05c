"""OpenAI speech request model: plain calls, no server."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from litestream.protocol import openai as oa
from litestream.security import (
    STATUS_FOR_REASON,
    RefusalReason,
    refuse,
    refuse_unauthorized,
)
from litestream.server.routes import api_error, api_refusal

VOICES = ("en_US-joe-medium", "af_nova", "am_michael")
DEFAULT = "en_US-joe-medium"


def parse(**fields: Any) -> oa.SpeechRequest:
    body = json.dumps({"model": "tts-1", "input": "Hello there.", **fields}).encode()
    return oa.parse_speech_request(body, voices=VOICES, default_voice=DEFAULT,
                                   content_type="application/json")


def error_of(**fields: Any) -> oa.ApiError:
    with pytest.raises(oa.ApiError) as info:
        parse(**fields)
    return info.value


def test_defaults_follow_openai() -> None:
    request = parse()
    assert request.response_format == "mp3"
    assert request.stream_format == "audio"
    assert request.speed == 1.0
    assert request.voice == DEFAULT
    assert request.content_type == "audio/mpeg"


def test_any_model_is_accepted_and_may_be_missing() -> None:
    assert parse(model="gpt-4o-mini-tts").model == "gpt-4o-mini-tts"
    assert parse(model="no-such-model").model == "no-such-model"
    body = json.dumps({"input": "Hi."}).encode()
    assert oa.parse_speech_request(body, voices=VOICES, default_voice=DEFAULT).input == "Hi."


def test_input_limit_is_4096_characters() -> None:
    assert len(parse(input="a" * 4096).input) == 4096
    error = error_of(input="a" * 4097)
    assert error.status == 400
    assert error.param == "input"
    assert error.code == "string_above_max_length"
    doc = json.loads(error.body())
    assert set(doc["error"]) == {"message", "type", "param", "code"}
    assert doc["error"]["type"] == "invalid_request_error"
    assert "4096" in doc["error"]["message"]


@pytest.mark.parametrize("value", [None, "", "   ", 12, ["a"]])
def test_bad_input_is_refused_with_the_param(value: Any) -> None:
    body = {"model": "tts-1"} if value is None else {"model": "tts-1", "input": value}
    with pytest.raises(oa.ApiError) as info:
        oa.parse_speech_request(json.dumps(body).encode(), voices=VOICES, default_voice=DEFAULT)
    assert info.value.status == 400
    assert info.value.param == "input"


@pytest.mark.parametrize("escaped", ["Hello \\ud800 world.", "\\udfff", "Fine. Then \\ud83d"])
def test_input_with_a_lone_surrogate_is_refused_before_synthesis(escaped: str) -> None:
    """JSON can carry a lone UTF-16 surrogate, which no voice can phonemize: a 400 naming
    `input`, not a sentence that fails in synthesis (a 500 the official client retries)."""
    body = b'{"model": "tts-1", "input": "' + escaped.encode() + b'"}'
    with pytest.raises(oa.ApiError) as info:
        oa.parse_speech_request(body, voices=VOICES, default_voice=DEFAULT)
    assert info.value.status == 400
    assert info.value.param == "input"
    assert info.value.code == "invalid_value"
    # A pair of surrogates is one character, and fine.
    pair = b'{"model": "tts-1", "input": "Smile \\ud83d\\ude00."}'
    parsed = oa.parse_speech_request(pair, voices=VOICES, default_voice=DEFAULT)
    assert parsed.input == "Smile \U0001f600."


def test_pace_is_download_unless_asked() -> None:
    assert parse().pace == "download"
    assert parse(pace="listener").pace == "listener"
    body = json.dumps({"input": "Hi."}).encode()
    asked = oa.parse_speech_request(body, voices=VOICES, default_voice=DEFAULT,
                                    query_pace="listener")
    assert asked.pace == "listener"  # ?pace=listener
    both = json.dumps({"input": "Hi.", "pace": "download"}).encode()
    assert oa.parse_speech_request(both, voices=VOICES, default_voice=DEFAULT,
                                   query_pace="listener").pace == "download"  # the body's wins


@pytest.mark.parametrize("body_pace,query_pace", [("fast", None), (None, "slow"), (3, None)])
def test_a_bad_pace_is_invalid_param(body_pace: Any, query_pace: str | None) -> None:
    fields = {"input": "Hi."} if body_pace is None else {"input": "Hi.", "pace": body_pace}
    with pytest.raises(oa.ApiError) as info:
        oa.parse_speech_request(json.dumps(fields).encode(), voices=VOICES,
                                default_voice=DEFAULT, query_pace=query_pace)
    assert (info.value.status, info.value.param, info.value.code) == (400, "pace",
                                                                       "invalid_param")


def test_pcm_is_24_khz_as_openais_and_other_formats_keep_the_voices_rate() -> None:
    """Drop-in clients (Pipecat's OpenAI service, the SDK's examples) play pcm at 24 kHz."""
    assert parse(response_format="pcm").sample_rate == oa.PCM_RATE == 24_000
    for fmt in ("mp3", "aac", "flac", "wav", "opus"):
        assert parse(response_format=fmt).sample_rate is None


@pytest.mark.parametrize("fmt", ["pcm", "wav", "mp3", "aac", "flac"])
def test_a_sample_rate_may_be_asked_for(fmt: str) -> None:
    assert parse(response_format=fmt, sample_rate=16000).sample_rate == 16000
    assert parse(response_format=fmt, sample_rate=22050).sample_rate == 22050


@pytest.mark.parametrize("fields", [
    {"sample_rate": 22000}, {"sample_rate": "24000"}, {"sample_rate": 24000.0},
    {"sample_rate": True}, {"sample_rate": 10 ** 30},
    {"sample_rate": 24000, "response_format": "opus"},
])
def test_a_bad_sample_rate_is_400_naming_it(fields: dict[str, Any]) -> None:
    error = error_of(**fields)
    assert (error.status, error.param) == (400, "sample_rate")
    assert error.code in {"invalid_value", "invalid_type"}


def test_opus_may_name_its_own_rate() -> None:
    assert parse(response_format="opus", sample_rate=48000).sample_rate == 48000


def test_voice_ids_openai_names_and_voice_objects() -> None:
    assert parse(voice="am_michael").voice == "am_michael"
    assert parse(voice="nova").voice == "af_nova"            # first candidate installed
    assert parse(voice="echo").voice == "am_michael"         # second candidate installed
    assert parse(voice="fable").voice == DEFAULT             # none installed: the default
    assert parse(voice="Alloy").voice in VOICES              # OpenAI names are case-blind
    assert parse(voice={"id": "af_nova"}).voice == "af_nova"
    assert parse(voice="nova").requested_voice == "nova"


MIXED = ("en_US-joe-medium", "jf_alpha", "jf_nezumi", "jm_kumo")
MIXED_LANGUAGES = {"en_US-joe-medium": "en_US", "jf_alpha": "ja", "jf_nezumi": "ja",
                   "jm_kumo": "ja"}


def parse_mixed(text: str, voice: str, default: str = DEFAULT) -> oa.SpeechRequest:
    body = json.dumps({"input": text, "voice": voice}).encode()
    return oa.parse_speech_request(body, voices=MIXED, default_voice=default,
                                   languages=MIXED_LANGUAGES)


@pytest.mark.parametrize("name,text,default,speaks", [
    ("alloy", "今日はいい天気ですね。", DEFAULT, "jf_alpha"),
    ("nova", "今日はいい天気ですね。", DEFAULT, "jf_nezumi"),
    ("onyx", "今日はいい天気ですね。", DEFAULT, "jm_kumo"),
    ("sage", "今日はいい天気ですね。", DEFAULT, "jf_alpha"),   # its first choice not installed
    ("alloy", "Hello there.", DEFAULT, DEFAULT),
    ("alloy", "Hello there.", "jf_alpha", DEFAULT),  # a Japanese default: English text
    ("alloy", "12345", "jf_alpha", "jf_alpha"),       # no script: the default's language
    ("jf_alpha", "Hello there.", DEFAULT, "jf_alpha"),  # a voice id is taken as it is
])
def test_an_openai_name_speaks_the_inputs_language(name: str, text: str, default: str,
                                                   speaks: str) -> None:
    assert parse_mixed(text, name, default).voice == speaks


def test_a_language_no_installed_voice_speaks_falls_back_to_the_default() -> None:
    only_english = {"en_US-joe-medium": "en_US"}
    body = json.dumps({"input": "今日はいい天気ですね。", "voice": "alloy"}).encode()
    request = oa.parse_speech_request(body, voices=("en_US-joe-medium",), default_voice=DEFAULT,
                                      languages=only_english)
    assert request.voice == DEFAULT


def test_every_openai_voice_name_maps_to_an_installed_voice() -> None:
    for name in ("alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage",
                 "shimmer", "verse"):
        assert parse(voice=name).voice in VOICES


def test_unknown_voice_is_400_naming_voice() -> None:
    error = error_of(voice="zorro")
    assert (error.status, error.param, error.code) == (400, "voice", "invalid_value")
    assert "zorro" in error.message


@pytest.mark.parametrize("fmt", oa.RESPONSE_FORMATS)
def test_every_response_format(fmt: str) -> None:
    request = parse(response_format=fmt)
    assert request.response_format == fmt
    assert request.content_type == oa.CONTENT_TYPES[fmt]


def test_bad_response_format() -> None:
    error = error_of(response_format="ogg")
    assert (error.status, error.param) == (400, "response_format")


def test_speed_inside_openai_range_is_clamped_to_litestreams() -> None:
    assert parse(speed=0.25).speed == 0.5
    assert parse(speed=4.0).speed == 2.0
    assert parse(speed=1.5).speed == 1.5
    assert parse(speed=4.0).requested_speed == 4.0


@pytest.mark.parametrize("speed", [0.2, 4.5, -1, "fast", True, float("nan"), 10**400])
def test_speed_outside_openai_range_or_not_a_number_is_400(speed: Any) -> None:
    if isinstance(speed, float) and speed != speed:
        body = b'{"input": "Hi.", "speed": NaN}'  # json.dumps would write NaN too
        with pytest.raises(oa.ApiError) as info:
            oa.parse_speech_request(body, voices=VOICES, default_voice=DEFAULT)
        error = info.value
    else:
        error = error_of(speed=speed)
    assert (error.status, error.param) == (400, "speed")


def test_stream_format_sse_and_audio() -> None:
    assert parse(stream_format="sse").content_type == "text/event-stream"
    assert parse(stream_format="audio").stream_format == "audio"
    assert (error_of(stream_format="ws").param) == "stream_format"


def test_instructions_are_accepted_and_kept_aside() -> None:
    request = parse(instructions="Speak like a pirate.")
    assert request.instructions == "Speak like a pirate."
    assert request.input == "Hello there."
    assert error_of(instructions=5).param == "instructions"


def test_body_must_be_a_json_object() -> None:
    for body in (b"not json", b"[1, 2]", b'"text"'):
        with pytest.raises(oa.ApiError) as info:
            oa.parse_speech_request(body, voices=VOICES, default_voice=DEFAULT)
        assert info.value.status == 400
    with pytest.raises(oa.ApiError) as info:
        oa.parse_speech_request(b"{}", voices=VOICES, default_voice=DEFAULT,
                                content_type="text/plain")
    assert info.value.status == 415
    with pytest.raises(oa.ApiError) as info:
        oa.parse_speech_request(b" " * (oa.MAX_BODY_BYTES + 1), voices=VOICES,
                                default_voice=DEFAULT)
    assert info.value.status == 413


def test_capacity_refusal_is_503_in_openai_shape_with_retry_after() -> None:
    error = api_refusal(refuse(RefusalReason.CAPACITY, "no capacity", retry_after_s=2.3))
    assert error.status == 503
    headers = dict(api_error(error).headers)
    assert headers["Retry-After"] == "3"          # whole seconds, rounded up
    assert headers["retry-after-ms"] == "2300"
    doc = json.loads(error.body())["error"]
    assert doc["type"] == "server_error"
    assert doc["code"] == "overloaded"
    assert doc["param"] is None


@pytest.mark.parametrize("reason", list(RefusalReason))
def test_every_refusal_reason_has_an_openai_shape(reason: RefusalReason) -> None:
    error = api_refusal(refuse(reason, "no", retry_after_s=1.0))
    assert error.status == STATUS_FOR_REASON[reason]
    doc = json.loads(error.body())["error"]
    assert doc["type"] in ("invalid_request_error", "requests", "server_error")
    assert doc["code"]


def test_unauthorized_refusal_carries_a_challenge() -> None:
    error = api_refusal(refuse_unauthorized())
    assert error.status == 401
    assert json.loads(error.body())["error"]["code"] == "invalid_api_key"
    assert dict(api_error(error).headers)["WWW-Authenticate"].startswith("Bearer")
    assert "Retry-After" not in dict(api_error(error).headers)


def test_response_headers_name_rate_voice_and_speed() -> None:
    headers = dict(oa.response_headers(parse(response_format="pcm", speed=3.0), 22050))
    assert headers["Content-Type"] == "audio/pcm"
    assert headers["X-Sample-Rate"] == "22050"
    assert headers["X-Litestream-Speed"] == "2"


def _sse_payload(event: bytes) -> dict[str, Any]:
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    return json.loads(event[len(b"data: "):-2])


def test_sse_events_have_openais_shape() -> None:
    delta = _sse_payload(oa.sse_delta(b"\x00\x01\xff"))
    assert delta == {"type": "speech.audio.delta", "audio": base64.b64encode(b"\x00\x01\xff")
                     .decode()}
    done = _sse_payload(oa.sse_done(12))
    assert done["type"] == "speech.audio.done"
    assert done["usage"] == {"input_tokens": 12, "output_tokens": 0, "total_tokens": 12}


def test_models_document() -> None:
    doc = oa.models_document()
    assert doc["object"] == "list"
    ids = [m["id"] for m in doc["data"]]
    assert "tts-1" in ids and "gpt-4o-mini-tts" in ids
    assert all(m["object"] == "model" for m in doc["data"])


def test_voices_document_lists_installed_voices_and_openai_names() -> None:
    entries = [oa.VoiceEntry(v, "en", 22050) for v in VOICES]
    doc = oa.voices_document(entries, DEFAULT)
    by_id = {v["id"]: v for v in doc["data"]}
    assert doc["voices"] == doc["data"]
    assert by_id[DEFAULT]["default"] is True
    assert by_id["nova"]["alias_of"] == "af_nova"
    assert by_id["fable"]["alias_of"] == DEFAULT
    assert set(oa.OPENAI_VOICES) <= set(by_id)


def test_a_request_keeps_a_sane_request_id_and_gets_a_new_one_otherwise() -> None:
    # A proxy's id (nginx's $request_id, a UUID, OpenAI's own shape) follows the request.
    for sent in ("3f1c0e9a2b7d4c6e8f0a1b2c3d4e5f60", "0b6e5f4a-1c2d-4e3f-8a9b-0c1d2e3f4a5b",
                 "req_abc123"):
        assert oa.request_id(sent) == sent
    # Missing, empty, too long, or able to break a log line or a header: a new one.
    for sent in (None, "", "x" * 129, "a b", "id\nforged=1", "ü"):
        made = oa.request_id(sent)
        assert made.startswith("req_") and len(made) == 36 and made != sent
    assert oa.request_id(None) != oa.request_id(None)
