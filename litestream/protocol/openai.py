"""OpenAI's `POST /v1/audio/speech`, sans I/O: request bytes in, a validated request out.

The transport (the server) reads the body and writes the response; this module decides what a
request means and how each error looks, so it is tested with plain calls. Each decision the
OpenAI API leaves to the implementation is made here once and listed in docs/openai.md:

- `model`: any value is accepted (and may be left out); litestream has its own voices.
- `input`: 1..4,096 characters (OpenAI's limit), else 400 `string_above_max_length`; a lone
  UTF-16 surrogate (which JSON can escape, but is not Unicode text) is 400 `invalid_value`.
- `voice`: a litestream voice id, or an OpenAI voice name mapped by `OPENAI_VOICE_MAP` to the
  first of its candidates that is installed, else to the server's default voice. A voice
  object `{"id": ...}` is read as its id.
- `response_format`: wav, pcm, mp3, opus, aac, flac (default mp3, as OpenAI's).
- `speed`: OpenAI's range 0.25..4.0 is accepted; outside it is 400. Inside it, the value is
  clamped to litestream's 0.5..2.0 (so a drop-in client that offers 0.25..4 still gets audio);
  the response's `X-Litestream-Speed` header says what was applied.
- `stream_format`: `audio` (the encoded file, sent as it is made) or `sse` (`speech.audio.delta`
  events with base64 audio of the chosen format, then `speech.audio.done`).
- `instructions`: accepted and ignored (a Piper or Kokoro voice cannot be steered by a prompt).
- `pcm` is 24 kHz, as OpenAI documents it and as drop-in clients (Pipecat's OpenAI service, the
  SDK's examples) play it, whatever the voice's own rate: the audio is resampled to it.
- `sample_rate` (litestream's, an extra body field): the rate of the body's audio, one of
  `SAMPLE_RATES`, for any format but `opus` (always 48 kHz; 400 unless 48000). Left out: 24 kHz
  for `pcm`, the voice's own rate for the others (their files state it).
- `pace` (litestream's, an extra body field or the query parameter `?pace=`; the body's wins):
  protocol-v1's Pace, `download` by default (the file is synthesized as fast as capacity allows
  and the client's reading paces it) or `listener` (paced to real-time playback, like a
  WebSocket stream). Another value is 400 `invalid_param`.
- Errors use OpenAI's shape `{"error": {"message", "type", "param", "code"}}`; handshake-style
  refusals (401, 403, 429, 503) come from `litestream.security` and keep their status and
  Retry-After (plus `retry-after-ms`, which the official client reads first); the server's
  `routes.py` writes their headers, the same way for both endpoints.
"""

from __future__ import annotations

import base64
import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from litestream.protocol.v1 import PACES, SPEED_MAX, SPEED_MIN, lone_surrogate, shown_number
from litestream.text.languages import base_language, script_language

SPEECH_PATH = "/v1/audio/speech"
MODELS_PATH = "/v1/models"
VOICES_PATH = "/v1/audio/voices"

# Every speech response carries its request id, as OpenAI's API does (the `openai` client
# reads it as `response.request_id`), and every log line of the request carries it too.
REQUEST_ID_HEADER = "X-Request-Id"
# One a proxy (nginx's $request_id) or the client set is kept, so one id follows the request
# through every hop; anything else (too long, odd characters) is replaced by a new one.
_REQUEST_ID = re.compile(r"[A-Za-z0-9_.:@/+=-]{1,128}")

MAX_INPUT_CHARS = 4096  # OpenAI's documented limit
MAX_BODY_BYTES = 64 * 1024  # 4,096 characters of 4-byte UTF-8 plus fields, with room
OPENAI_SPEED_MIN, OPENAI_SPEED_MAX = 0.25, 4.0
RESPONSE_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
PCM_RATE = 24_000  # OpenAI's documented rate of `pcm`, which drop-in clients assume
OPUS_RATE = 48_000  # Ogg Opus is decoded at 48 kHz; its encoder is fed at that rate
# Rates a request may ask for: those MP3 and AAC can carry (FLAC, WAV and PCM carry any).
SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
STREAM_FORMATS = ("audio", "sse")
DEFAULT_PACE = "download"  # protocol-v1: Pace; a speech request is a file unless asked
DEFAULT_RESPONSE_FORMAT = "mp3"

# Content types. opus is Ogg Opus (RFC 7845), aac is ADTS, pcm is raw s16le mono at the rate
# in the X-Sample-Rate header.
CONTENT_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
SSE_CONTENT_TYPE = "text/event-stream"

# The models a client may ask for. Any model name is accepted; these are listed so that clients
# which pick a model from GET /v1/models find the names they know.
MODEL_IDS = ("litestream", "tts-1", "tts-1-hd", "gpt-4o-mini-tts")

# OpenAI voice name -> litestream voice ids to try, in order; the first installed one speaks.
# The Kokoro ids are Kokoro's own voice names (af_* American female, am_* American male, bf_*/bm_*
# British), chosen for the nearest character of each OpenAI voice; Kokoro ships voices named
# after five of them. With none installed, the name speaks with the server's default voice.
OPENAI_VOICE_MAP: dict[str, tuple[str, ...]] = {
    "alloy": ("af_alloy", "af_heart"),
    "ash": ("am_adam", "am_michael"),
    "ballad": ("bm_lewis", "bm_george"),
    "coral": ("af_bella", "af_heart"),
    "echo": ("am_echo", "am_michael"),
    "fable": ("bm_fable", "bm_george"),
    "onyx": ("am_onyx", "am_michael"),
    "nova": ("af_nova", "af_heart"),
    "sage": ("af_sarah", "af_heart"),
    "shimmer": ("af_sky", "af_nicole"),
    "verse": ("am_liam", "am_michael"),
    "marin": ("af_kore", "af_heart"),
    "cedar": ("am_fenrir", "am_michael"),
}
OPENAI_VOICES = tuple(OPENAI_VOICE_MAP)

# OpenAI's voices speak any language; a litestream voice speaks one. So a name resolves in the
# language of the input (text/languages.script_language; the default voice's where the script
# says none): these tables give its candidates in each language, by the voice's character
# (the Kokoro Japanese voices: jf_* female, jm_kumo male). With none of them installed, the
# default voice if it speaks that language, else the first installed voice that does.
OPENAI_VOICES_BY_LANGUAGE: dict[str, dict[str, tuple[str, ...]]] = {
    "en": OPENAI_VOICE_MAP,
    "ja": {
        "alloy": ("jf_alpha",), "ash": ("jm_kumo",), "ballad": ("jm_kumo",),
        "coral": ("jf_gongitsune", "jf_alpha"), "echo": ("jm_kumo",), "fable": ("jm_kumo",),
        "onyx": ("jm_kumo",), "nova": ("jf_nezumi", "jf_alpha"),
        "sage": ("jf_tebukuro", "jf_alpha"), "shimmer": ("jf_alpha",), "verse": ("jm_kumo",),
        "marin": ("jf_gongitsune", "jf_alpha"), "cedar": ("jm_kumo",),
    },
}


# ---------------------------------------------------------------- errors

@dataclass(frozen=True)
class ApiError(Exception):
    """An error answer in OpenAI's shape. Raised by parsing; the transport writes it."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    retry_after_s: float | None = None  # 429 and 503: Retry-After

    def body(self) -> bytes:
        error = {"message": self.message, "type": self.type, "param": self.param,
                 "code": self.code}
        return json.dumps({"error": error}, separators=(",", ":")).encode("utf-8")


def _bad(param: str | None, message: str, code: str | None = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def method_not_allowed(method: str, path: str) -> ApiError:
    return ApiError(405, f"{method} is not allowed on {path}", code="method_not_allowed")


def server_error(message: str = "internal error") -> ApiError:
    return ApiError(500, message, type="server_error", code="internal")


# ---------------------------------------------------------------- the request

@dataclass(frozen=True)
class SpeechRequest:
    """A validated `POST /v1/audio/speech`: what litestream will speak, and how to send it."""

    input: str
    voice: str                # the litestream voice id that speaks
    response_format: str      # one of RESPONSE_FORMATS
    speed: float              # applied speed, within litestream's SPEED_MIN..SPEED_MAX
    stream_format: str        # "audio" | "sse"
    model: str                # as sent (ignored)
    requested_voice: str      # as sent: a voice id or an OpenAI name
    requested_speed: float    # as sent, within OpenAI's range
    instructions: str | None  # as sent (ignored)
    pace: str = DEFAULT_PACE  # protocol-v1: Pace (litestream's own field)
    sample_rate: int | None = None  # the body's rate when not the voice's own (litestream's)

    @property
    def content_type(self) -> str:
        return SSE_CONTENT_TYPE if self.stream_format == "sse" else CONTENT_TYPES[
            self.response_format]


def resolve_voice(name: str, installed: Sequence[str], default: str, *,
                  languages: Mapping[str, str] | None = None,
                  language: str | None = None) -> str | None:
    """A litestream voice id for `name`: itself when installed; for an OpenAI name, the
    installed voice that speaks it in `language` (the input's; the default voice's when None)
    by `OPENAI_VOICES_BY_LANGUAGE`, `languages` giving each installed voice's language; else
    None. Without `languages`, the English candidates or the default voice."""
    if name in installed:
        return name
    key = name.lower()
    if key not in OPENAI_VOICE_MAP:
        return None
    if languages is None:  # every voice taken as English: its candidates, else the default
        language = None
    known: Mapping[str, str] = languages or {}

    def speaks(voice: str) -> str:
        return base_language(known.get(voice, "en"))

    want = language or speaks(default)
    for candidate in OPENAI_VOICES_BY_LANGUAGE.get(want, {}).get(key, ()):
        if candidate in installed and speaks(candidate) == want:
            return candidate
    if speaks(default) == want:
        return default
    return next((v for v in sorted(installed) if speaks(v) == want), default)


def voice_mapping(installed: Sequence[str], default: str,
                  languages: Mapping[str, str] | None = None,
                  language: str | None = None) -> dict[str, str]:
    """Each OpenAI voice name -> the installed voice that speaks it on this server (for text
    in `language`: the default voice's when None)."""
    return {name: resolve_voice(name, installed, default, languages=languages, language=language)
            or default for name in OPENAI_VOICES}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_speech_request(body: bytes, *, voices: Sequence[str], default_voice: str,
                         content_type: str | None = None,
                         query_pace: str | None = None,
                         languages: Mapping[str, str] | None = None) -> SpeechRequest:
    """Validate a request body (and the `pace` query parameter, when given). Raises ApiError
    (400, 413 or 415) with the field at fault."""
    if content_type is not None and "json" not in content_type.lower():
        raise ApiError(415, f"the body must be JSON (application/json), got {content_type!r}",
                       code="unsupported_media_type")
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, f"request body over {MAX_BODY_BYTES} bytes", code="body_too_large")
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise _bad(None, f"the body is not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(doc, dict):
        raise _bad(None, "the body must be a JSON object", "invalid_json")

    text = doc.get("input")
    if text is None:
        raise _bad("input", "you must provide 'input'", "missing_required_parameter")
    if not isinstance(text, str):
        raise _bad("input", "'input' must be a string", "invalid_type")
    if len(text) > MAX_INPUT_CHARS:
        raise _bad("input", f"'input' is {len(text)} characters; the limit is "
                            f"{MAX_INPUT_CHARS}", "string_above_max_length")
    if not text.strip():
        raise _bad("input", "'input' is empty", "string_below_min_length")
    surrogate_at = lone_surrogate(text)
    if surrogate_at is not None:  # a client error must not reach synthesis as a 500
        raise _bad("input", f"'input' is not valid Unicode: a lone surrogate at character "
                            f"{surrogate_at}")

    model = doc.get("model", "litestream")
    if not isinstance(model, str):
        raise _bad("model", "'model' must be a string", "invalid_type")

    raw_voice = doc.get("voice", default_voice)
    if isinstance(raw_voice, Mapping):
        raw_voice = raw_voice.get("id")
    if not isinstance(raw_voice, str) or not raw_voice:
        raise _bad("voice", "'voice' must be a voice name or {\"id\": name}", "invalid_type")
    voice = resolve_voice(raw_voice, voices, default_voice, languages=languages,
                          language=script_language(text))
    if voice is None:
        raise _bad("voice", f"unknown voice {raw_voice!r}; available: "
                            f"{', '.join(sorted({*voices, *OPENAI_VOICES}))}")

    fmt = doc.get("response_format", DEFAULT_RESPONSE_FORMAT)
    if fmt not in RESPONSE_FORMATS:
        raise _bad("response_format", f"'response_format' must be one of "
                                      f"{', '.join(RESPONSE_FORMATS)}, got {fmt!r}")

    requested_speed = doc.get("speed", 1.0)
    if requested_speed is None:
        requested_speed = 1.0
    # math.isfinite only for a float: an integer too big for one (JSON allows it) would make
    # it raise; the range check below refuses that integer.
    if not _is_number(requested_speed) or (isinstance(requested_speed, float)
                                            and not math.isfinite(requested_speed)):
        raise _bad("speed", "'speed' must be a number", "invalid_type")
    if not OPENAI_SPEED_MIN <= requested_speed <= OPENAI_SPEED_MAX:
        raise _bad("speed", f"'speed' must be {OPENAI_SPEED_MIN}..{OPENAI_SPEED_MAX}, got "
                            f"{shown_number(requested_speed)}")
    speed = min(SPEED_MAX, max(SPEED_MIN, float(requested_speed)))

    stream_format = doc.get("stream_format", "audio")
    if stream_format is None:
        stream_format = "audio"
    if stream_format not in STREAM_FORMATS:
        raise _bad("stream_format", f"'stream_format' must be audio or sse, got "
                                    f"{stream_format!r}")

    instructions = doc.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise _bad("instructions", "'instructions' must be a string", "invalid_type")

    pace = doc.get("pace")
    if pace is None:
        pace = DEFAULT_PACE if query_pace is None else query_pace
    if pace not in PACES:
        raise _bad("pace", f"'pace' must be one of {', '.join(PACES)}, got {pace!r}",
                   "invalid_param")

    return SpeechRequest(
        input=text, voice=voice, response_format=fmt, speed=speed,
        stream_format=stream_format, model=model, requested_voice=raw_voice,
        requested_speed=float(requested_speed), instructions=instructions, pace=pace,
        sample_rate=_sample_rate(doc.get("sample_rate"), fmt),
    )


def _sample_rate(asked: Any, fmt: str) -> int | None:
    """The rate the body's audio is sent at, when it is not the voice's own (None)."""
    if asked is None:
        return PCM_RATE if fmt == "pcm" else None
    if not isinstance(asked, int) or isinstance(asked, bool):
        raise _bad("sample_rate", "'sample_rate' must be an integer (Hz)", "invalid_type")
    if asked not in SAMPLE_RATES:
        raise _bad("sample_rate", f"'sample_rate' must be one of "
                                  f"{', '.join(map(str, SAMPLE_RATES))}, got {shown_number(asked)}")
    if fmt == "opus" and asked != OPUS_RATE:
        raise _bad("sample_rate", f"'opus' is always {OPUS_RATE} Hz, got {asked}")
    return asked


def request_id(sent: str | None) -> str:
    """The id of one speech request: the `X-Request-Id` it came with when that is a sane
    token (letters, digits and `_.:@/+=-`, at most 128), else a new `req_<32 hex>`."""
    if sent is not None and _REQUEST_ID.fullmatch(sent):
        return sent
    return f"req_{uuid.uuid4().hex}"


def response_headers(request: SpeechRequest, sample_rate: int) -> list[tuple[str, str]]:
    """Headers of a speech response (the body is chunked: its length is not known yet).
    `sample_rate`: the rate of the audio in the body (server/encoders.output_rate)."""
    return [
        ("Content-Type", request.content_type),
        ("Cache-Control", "no-store"),
        # pcm has no header of its own: the rate travels here (and for every format, so a
        # client never has to parse a container to learn it).
        ("X-Sample-Rate", str(sample_rate)),
        ("X-Litestream-Voice", request.voice),
        ("X-Litestream-Speed", f"{request.speed:g}"),
    ]


# ---------------------------------------------------------------- server-sent events

def sse_delta(audio: bytes) -> bytes:
    """One `speech.audio.delta` event: base64 of the next bytes of the encoded audio."""
    event = {"type": "speech.audio.delta", "audio": base64.b64encode(audio).decode("ascii")}
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


def sse_done(input_chars: int) -> bytes:
    """The final `speech.audio.done` event. litestream has no tokens; usage counts characters
    as input tokens so clients that read usage find numbers, and 0 output tokens."""
    usage = {"input_tokens": input_chars, "output_tokens": 0, "total_tokens": input_chars}
    event = {"type": "speech.audio.done", "usage": usage}
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"


# ---------------------------------------------------------------- GET documents

def models_document() -> dict[str, Any]:
    """GET /v1/models: OpenAI's list shape."""
    return {"object": "list", "data": [model_document(m) for m in MODEL_IDS]}


def model_document(model_id: str) -> dict[str, Any]:
    """GET /v1/models/{id}: any id is served (any model is accepted)."""
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "litestream"}


@dataclass(frozen=True)
class VoiceEntry:
    """What the voices document says of one installed voice."""

    id: str
    language: str
    sample_rate: int


def voices_document(installed: Iterable[VoiceEntry], default: str) -> dict[str, Any]:
    """GET /v1/audio/voices: installed voices, then the OpenAI names with the voice each maps
    to (`alias_of`: for text in the default voice's language; `alias_of_by_language`: for text
    in each installed language). Clients of OpenAI-compatible servers read either `data` or
    `voices`; both are here."""
    entries = list(installed)
    ids = [v.id for v in entries]
    languages = {v.id: v.language for v in entries}
    spoken = sorted({base_language(v.language) for v in entries})
    by_language = {lang: voice_mapping(ids, default, languages, lang) for lang in spoken}
    voices: list[dict[str, Any]] = [
        {"id": v.id, "name": v.id, "object": "audio.voice", "language": v.language,
         "sample_rate": v.sample_rate, "default": v.id == default}
        for v in entries
    ]
    for name, target in voice_mapping(ids, default, languages).items():
        voices.append({"id": name, "name": name, "object": "audio.voice", "alias_of": target,
                       "alias_of_by_language": {lang: by_language[lang][name]
                                                for lang in spoken}})
    return {"object": "list", "default": default, "data": voices, "voices": voices}
