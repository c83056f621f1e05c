"""litestream/logs.py: formatters, the session adapter, the summary line, redaction."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from litestream.logs import (
    LIBRARY_LOGGERS,
    JsonFormatter,
    PlainFormatter,
    SessionAdapter,
    clip,
    redact,
    setup_logging,
    stream_fields,
    stream_summary,
)

SECRET_TEXT = "the quick brown fox says hunter2"
SECRET_KEY = "sk-live-0123456789abcdef"


@pytest.fixture
def restore_litestream_logger() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in ("litestream", *LIBRARY_LOGGERS)]
    saved = [(list(logger.handlers), logger.level) for logger in loggers]
    yield
    for logger, (handlers, level) in zip(loggers, saved, strict=True):
        logger.handlers[:] = handlers
        logger.setLevel(level)


def capture(json_output: bool, level: str = "INFO") -> io.StringIO:
    buf = io.StringIO()
    setup_logging(level, json_output, stream=buf)
    return buf


def lines(buf: io.StringIO) -> list[str]:
    return [line for line in buf.getvalue().splitlines() if line]


@pytest.mark.usefixtures("restore_litestream_logger")
def test_json_lines_parse_and_carry_session_and_extras() -> None:
    buf = capture(json_output=True)
    log = SessionAdapter(logging.getLogger("litestream.server"), "s-abc123")
    log.info("chunk %d sent", 3, extra={"audio_ms": 1200, "chars": 40})
    log.debug("not shown at INFO")
    out = lines(buf)
    assert len(out) == 1
    obj = json.loads(out[0])
    assert obj["level"] == "INFO"
    assert obj["logger"] == "litestream.server"
    assert obj["msg"] == "chunk 3 sent"
    assert obj["session"] == "s-abc123"
    assert obj["audio_ms"] == 1200 and obj["chars"] == 40
    assert obj["ts"].endswith("Z")


@pytest.mark.usefixtures("restore_litestream_logger")
def test_json_exception_is_one_line() -> None:
    buf = capture(json_output=True)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("litestream.x").exception("failed")
    out = lines(buf)
    assert len(out) == 1
    assert "RuntimeError: boom" in json.loads(out[0])["exc"]


@pytest.mark.usefixtures("restore_litestream_logger")
def test_plain_format_has_time_level_logger_session() -> None:
    buf = capture(json_output=False)
    SessionAdapter(logging.getLogger("litestream.server"), "s-1").warning("slow reader")
    (line,) = lines(buf)
    parts = line.split(" ")
    assert parts[0].endswith("Z") and "T" in parts[0]
    assert parts[1:4] == ["WARNING", "litestream.server", "[s-1]"]
    assert line.endswith("slow reader")


@pytest.mark.usefixtures("restore_litestream_logger")
def test_setup_twice_does_not_duplicate() -> None:
    capture(json_output=False)
    buf = capture(json_output=True)
    logging.getLogger("litestream.y").info("once")
    assert len(lines(buf)) == 1


@pytest.mark.usefixtures("restore_litestream_logger")
@pytest.mark.parametrize("json_output", [True, False])
def test_summary_is_one_line_of_counts(json_output: bool) -> None:
    buf = capture(json_output=json_output)
    log = SessionAdapter(logging.getLogger("litestream.server"), "s-42")
    stream_summary(
        log, session="s-42", chars=len(SECRET_TEXT), audio_ms=2100, ttfa_ms=180, stalls=1,
        underrun_ms=40, close_code=1000, reason="end",
    )
    out = lines(buf)
    assert len(out) == 1
    assert SECRET_TEXT not in out[0] and "hunter2" not in out[0]
    if json_output:
        obj = json.loads(out[0])
        assert obj["level"] == "INFO"
        assert obj["event"] == "stream_summary"
        assert obj["session"] == "s-42"
        assert obj["chars"] == len(SECRET_TEXT)
        assert obj["audio_ms"] == 2100 and obj["ttfa_ms"] == 180
        assert obj["stalls"] == 1 and obj["underrun_ms"] == 40
        assert obj["close_code"] == 1000 and obj["reason"] == "end"
    else:
        assert "[s-42]" in out[0] and "chars=32" in out[0] and "close_code=1000" in out[0]


@pytest.mark.usefixtures("restore_litestream_logger")
def test_summary_without_audio() -> None:
    buf = capture(json_output=True)
    stream_summary(
        logging.getLogger("litestream.server"), session="s-0", chars=0, audio_ms=0, ttfa_ms=None,
        stalls=0, underrun_ms=0, close_code=1001, reason="x" * 500,
    )
    obj = json.loads(lines(buf)[0])
    assert obj["ttfa_ms"] is None
    assert len(obj["reason"]) == 64


@pytest.mark.usefixtures("restore_litestream_logger")
@pytest.mark.parametrize("json_output", [True, False])
def test_secret_and_text_extras_are_redacted(json_output: bool) -> None:
    buf = capture(json_output=json_output, level="DEBUG")
    log = SessionAdapter(logging.getLogger("litestream.server"), "s-9")
    log.info("text in", extra={"text": SECRET_TEXT, "key": SECRET_KEY, "token": SECRET_KEY})
    (line,) = lines(buf)
    assert SECRET_TEXT not in line and SECRET_KEY not in line
    assert f"<redacted {len(SECRET_TEXT)} chars>" in line


def test_redact() -> None:
    assert redact(SECRET_KEY) == f"<redacted {len(SECRET_KEY)} chars>"
    assert redact(b"abc") == "<redacted 3 bytes>"
    assert redact(None) == "<none>"
    assert SECRET_KEY not in redact(SECRET_KEY)


def test_formatters_usable_directly() -> None:
    record = logging.LogRecord("litestream.t", logging.INFO, __file__, 1, "hi %s", ("x",), None)
    record.session = "s-7"
    assert json.loads(JsonFormatter().format(record))["session"] == "s-7"
    assert "[s-7] hi x" in PlainFormatter().format(record)


@pytest.mark.usefixtures("restore_litestream_logger")
def test_records_still_reach_caplog(caplog: pytest.LogCaptureFixture) -> None:
    capture(json_output=True)
    with caplog.at_level(logging.INFO, logger="litestream"):
        SessionAdapter(logging.getLogger("litestream.server"), "s-5").info("hello")
    assert any(r.getMessage() == "hello" and r.__dict__["session"] == "s-5" for r in caplog.records)


@pytest.mark.usefixtures("restore_litestream_logger")
@pytest.mark.parametrize("json_output", [True, False])
def test_a_speech_requests_lines_carry_its_request_id(json_output: bool) -> None:
    buf = capture(json_output=json_output)
    log = SessionAdapter(logging.getLogger("litestream.speech"), "s-3", "req_abc")
    log.warning("speech client stopped reading; closing")
    stream_summary(log, session="s-3", request_id="req_abc", chars=5, audio_ms=1, ttfa_ms=1,
                   stalls=0, underrun_ms=0, close_code=1008, reason="slow reader",
                   protocol_errors=2)
    out = lines(buf)
    assert len(out) == 2
    if json_output:
        objs = [json.loads(line) for line in out]
        assert [(o["session"], o["request_id"]) for o in objs] == [("s-3", "req_abc")] * 2
        assert objs[1]["protocol_errors"] == 2
    else:
        assert all("[s-3]" in line and "request_id=req_abc" in line for line in out)
        assert "protocol_errors=2" in out[1]


def test_stream_fields() -> None:
    assert stream_fields("s") == {"session": "s"}
    assert stream_fields("s", "r") == {"session": "s", "request_id": "r"}


def test_clip_bounds_a_message_and_says_how_long_it_was() -> None:
    assert clip("short") == "short"
    clipped = clip("x" * 50_000)
    assert len(clipped) < 200 and clipped.endswith("(50000 chars)")


@pytest.mark.usefixtures("restore_litestream_logger")
def test_a_librarys_error_is_a_json_line_too() -> None:
    """aiohttp's and asyncio's errors went to Python's last-resort handler: bare text and a
    traceback over many lines in a log of JSON lines."""
    capture(json_output=False)
    buf = capture(json_output=True)  # called twice: one handler each, not two
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request")
    logging.getLogger("asyncio").info("not shown: a library's INFO")
    (line,) = lines(buf)
    obj = json.loads(line)
    assert obj["logger"] == "aiohttp.server" and "ValueError: boom" in obj["exc"]
