"""Logging for the "litestream" logger tree: plain or JSON lines, the session on every line.

Every line about one stream carries its `session` as a field (`stream_fields`; a speech
request's lines its `request_id` too), never only inside the message: an operator filters a
JSON log pipeline (Loki, jq) on the field, and the plain format shows it as `[session]`.

Redaction: API keys and client text never appear in logs. Code logs key labels
(security.key_label) and counts, never the values; as a second line of defence both formatters
replace any `extra` field named like a secret or like text (see REDACTED_FIELDS) with
redact(value), which keeps only the length.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any, TextIO

ROOT_LOGGER = "litestream"

# `extra` fields whose values are never written, only their length.
REDACTED_FIELDS = frozenset(
    {"text", "key", "api_key", "token", "authorization", "password", "secret"}
)

# Attributes every LogRecord has; anything else on a record came from `extra`.
_RECORD_ATTRS = frozenset(
    logging.LogRecord("x", logging.INFO, __file__, 0, "", None, None).__dict__
) | {"message", "asctime", "taskName"}

# Libraries whose warnings go through litestream's handler too (setup_logging).
LIBRARY_LOGGERS = ("aiohttp", "asyncio")

# Marks the handler setup_logging() installed, so calling it twice replaces, not stacks.
_HANDLER_MARK = "_litestream_handler"

_REASON_MAX_CHARS = 64
# A message that may echo what a client sent (a protocol error's) is cut to this in a log line.
CLIPPED_CHARS = 160


def redact(value: object) -> str:
    """What a log line shows instead of a secret or client text: only its size."""
    if value is None:
        return "<none>"
    if isinstance(value, str | bytes):
        return f"<redacted {len(value)} chars>" if isinstance(value, str) else (
            f"<redacted {len(value)} bytes>"
        )
    return "<redacted>"


def clip(message: str, max_chars: int = CLIPPED_CHARS) -> str:
    """`message` cut to `max_chars` for a log line, saying how long it was: a protocol error
    echoes the client's value (an unknown message type of 60 KB), and one message must not
    write that much into the logs."""
    if len(message) <= max_chars:
        return message
    return f"{message[:max_chars]}... ({len(message)} chars)"


def stream_fields(session: str, request_id: str | None = None) -> dict[str, str]:
    """The fields of every log line about one stream: its session id, and for a speech
    request (`POST /v1/audio/speech`) its request id (the `X-Request-Id` it answered with)."""
    fields = {"session": session}
    if request_id is not None:
        fields["request_id"] = request_id
    return fields


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in record.__dict__.items():
        if name in _RECORD_ATTRS or name.startswith("_"):
            continue
        out[name] = redact(value) if name.lower() in REDACTED_FIELDS else value
    return out


class PlainFormatter(logging.Formatter):
    """`2024-05-01T12:00:00.123Z INFO litestream.server [s-1a2b] message k=v ...`"""

    def format(self, record: logging.LogRecord) -> str:
        ts = _timestamp(record)
        extras = _extras(record)
        session = extras.pop("session", None)
        parts = [ts, record.levelname, record.name]
        if session is not None:
            parts.append(f"[{session}]")
        parts.append(record.getMessage())
        parts.extend(f"{k}={v}" for k, v in sorted(extras.items()))
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then every `extra` field."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in _extras(record).items():
            obj.setdefault(name, value)  # an extra never overwrites the four fixed fields
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            obj["stack"] = self.formatStack(record.stack_info)
        # default=str: an odd extra (a Path, an enum) must not turn a log call into a crash.
        return json.dumps(obj, default=str, ensure_ascii=False, separators=(",", ":"))


def _timestamp(record: logging.LogRecord) -> str:
    dt = datetime.fromtimestamp(record.created, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def setup_logging(level: str, json_output: bool, stream: TextIO | None = None) -> logging.Logger:
    """Configure the "litestream" logger tree; safe to call again (replaces its handler).

    The libraries the server runs on (LIBRARY_LOGGERS) write their warnings and errors through
    the same handler: without one, Python's last-resort handler printed them as bare text
    (a traceback over many lines) into a log that --log-json promised was one JSON object
    a line. Records still propagate to the root logger, which has no handler in a server
    process (so nothing prints twice) and is where pytest's caplog listens.
    """
    logger = logging.getLogger(ROOT_LOGGER)
    logger.setLevel(level.upper())
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if json_output else PlainFormatter())
    setattr(handler, _HANDLER_MARK, True)
    for name in (ROOT_LOGGER, *LIBRARY_LOGGERS):
        target = logging.getLogger(name)
        for old in list(target.handlers):
            if getattr(old, _HANDLER_MARK, False):
                target.removeHandler(old)
        target.addHandler(handler)
        if name != ROOT_LOGGER and target.level == logging.NOTSET:
            target.setLevel(logging.WARNING)  # their warnings, not their debug chatter
    return logger


class SessionAdapter(logging.LoggerAdapter[logging.Logger]):
    """Puts the stream's fields (`stream_fields`: session, a request's request_id) on every
    line; per-call `extra` is merged, not dropped."""

    def __init__(self, logger: logging.Logger, session: str,
                 request_id: str | None = None) -> None:
        super().__init__(logger, stream_fields(session, request_id))

    @property
    def session(self) -> str:
        return str((self.extra or {})["session"])

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra: Mapping[str, Any] = kwargs.get("extra") or {}
        kwargs["extra"] = {**extra, **(self.extra or {})}
        return msg, kwargs


def stream_summary(
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    *,
    session: str,
    request_id: str | None = None,
    chars: int,
    audio_ms: int,
    ttfa_ms: int | None,
    stalls: int,
    underrun_ms: int,
    close_code: int,
    reason: str,
    protocol_errors: int = 0,
    dropped_chunks: int = 0,
) -> None:
    """The ONE line logged per finished stream, at INFO: counts only, never text."""
    # `reason` is a short code from the server ("end", "clear", "client_gone", ...); cap it
    # so a message echoed by mistake cannot carry a paragraph of client text into the logs.
    reason = reason[:_REASON_MAX_CHARS]
    fields: dict[str, object] = {
        "event": "stream_summary",
        **stream_fields(session, request_id),
        "chars": int(chars),
        "audio_ms": int(audio_ms),
        "ttfa_ms": None if ttfa_ms is None else int(ttfa_ms),
        "stalls": int(stalls),
        "underrun_ms": int(underrun_ms),
        "close_code": int(close_code),
        "reason": reason,
        # Client messages answered with an `error` (only the first was logged, at INFO).
        "protocol_errors": int(protocol_errors),
        # Chunks queued for synthesis and never spoken (the client left, a clear, a close).
        "dropped_chunks": int(dropped_chunks),
    }
    base = logger.logger if isinstance(logger, logging.LoggerAdapter) else logger
    # The message stays short: both formatters print every field after it (plain: k=v).
    base.info("stream done", extra=fields)
