"""What an operator's log pipeline gets from a real server: every line about a stream carries
its session as a field (a speech request's its request id too, the one its response names),
a client sending garbage is one INFO line, and the benchmark's parser reads the step lines."""

from __future__ import annotations

import asyncio
import json
import logging

import openai
import pytest
from websockets.asyncio.client import connect

from litestream.logs import PlainFormatter
from litestream.protocol import openai as openai_api
from loadtest.lib.pace import step_lines
from tests.serverutil import read_all, run_server, until

# The loggers whose every line is about one stream.
STREAM_LOGGERS = ("litestream.session", "litestream.synthesis", "litestream.speech")


def fields(record: logging.LogRecord) -> dict[str, object]:
    return record.__dict__


async def test_every_line_of_a_stream_carries_its_session_and_garbage_is_one_line(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="litestream")
    async with run_server() as srv, connect(srv.url) as ws:
        session = json.loads(await ws.recv())["session"]
        for i in range(20):
            await ws.send("not json {" if i % 2 else json.dumps({"type": "sing" * 9000}))
        await ws.send(json.dumps({"type": "text", "text": "One line. Two lines."}))
        await ws.send(json.dumps({"type": "end"}))
        transcript = await read_all(ws)
    assert [e["code"] for e in transcript.of_type("error")] == ["bad_message"] * 20
    ours = [r for r in caplog.records if fields(r).get("session") == session]
    assert all("session=" not in r.getMessage() for r in caplog.records)
    assert all("session" in fields(r) for r in caplog.records if r.name in STREAM_LOGGERS)
    # Garbage: one INFO line (clipped), the rest at DEBUG; the summary counts all of it.
    errors = [r for r in ours if "protocol error" in r.getMessage()]
    assert [r.levelno for r in errors] == [logging.INFO] + [logging.DEBUG] * 19
    assert len(errors[0].getMessage()) < 300
    info = [r for r in ours if r.levelno >= logging.INFO]
    assert len(info) == 2  # the first protocol error and the summary
    (summary,) = [r for r in ours if fields(r).get("event") == "stream_summary"]
    assert fields(summary)["protocol_errors"] == 20 and fields(summary)["close_code"] == 1000
    # The step lines, as the server writes them, are what the benchmark parses.
    log = "\n".join(PlainFormatter().format(r) for r in caplog.records)
    steps = [s for s in step_lines(log) if s.session == session]
    assert {s.kind for s in steps} == {"encode", "decode"}
    assert sum(s.kind == "encode" for s in steps) == 2  # two sentences


async def test_a_speech_request_is_found_by_the_request_id_its_response_names(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="litestream")
    async with run_server() as srv:
        api = openai.AsyncOpenAI(base_url=srv.http_url + "/v1", api_key="x", max_retries=0)
        try:
            made = await api.audio.speech.with_raw_response.create(
                model="tts-1", voice="alloy", input="Hello there.", response_format="pcm")
            kept = await api.audio.speech.with_raw_response.create(
                model="tts-1", voice="alloy", input="Hello again.", response_format="pcm",
                extra_headers={openai_api.REQUEST_ID_HEADER: "trace-7f3a"})
            with pytest.raises(openai.BadRequestError) as bad:
                await api.audio.speech.create(model="tts-1", voice="alloy", input="x",
                                              response_format="wav2")  # type: ignore[arg-type]
        finally:
            await api.close()
    request_id = made.headers["x-request-id"]
    assert request_id.startswith("req_") and made.request_id == request_id
    assert kept.headers["x-request-id"] == "trace-7f3a"
    for rid in (request_id, "trace-7f3a"):
        lines = [r for r in caplog.records if fields(r).get("request_id") == rid]
        assert [r.getMessage().split(":")[0] for r in lines] == ["speech", "stream done"]
        session = fields(lines[0])["session"]
        assert fields(lines[1])["session"] == session
        # Its synthesis lines are found by the session the request's lines name.
        assert any(r.name == "litestream.synthesis" and fields(r).get("session") == session
                   for r in caplog.records)
    # A refused request: its answer and its one log line name the same id.
    refused_id = bad.value.response.headers["x-request-id"]
    (refusal,) = [r for r in caplog.records if fields(r).get("request_id") == refused_id]
    assert "refused POST /v1/audio/speech" in refusal.getMessage()


LONG = " ".join(f"This is sentence number {n} of a long answer." for n in range(12))


async def test_the_summary_says_why_a_stream_the_server_did_not_close_ended(
        caplog: pytest.LogCaptureFixture) -> None:
    """`reason` is a bounded code a pipeline can group by ("dropped 11 queued chunks" was not),
    and the chunks never spoken are a field of their own."""
    caplog.set_level(logging.INFO, logger="litestream")
    sessions: dict[str, str] = {}
    async with run_server(max_message_bytes=4096) as srv:
        for how in ("close", "vanish", "too_big"):
            async with connect(srv.url) as ws:
                sessions[how] = json.loads(await ws.recv())["session"]
                if how == "too_big":
                    await ws.send(json.dumps({"type": "text", "text": "a" * 5000}))
                    await ws.wait_closed()
                    continue
                await ws.send(json.dumps({"type": "text", "text": LONG, "flush": True}))
                while not isinstance(await ws.recv(), bytes):
                    pass
                if how == "vanish":
                    ws.transport.abort()
                    continue
            # (leaving the block sent a close frame)
        await until(lambda: not srv.server.streams)
    summaries = {fields(r)["session"]: fields(r) for r in caplog.records
                 if fields(r).get("event") == "stream_summary"}
    got = {how: (summaries[sid]["reason"], summaries[sid]["close_code"])
           for how, sid in sessions.items()}
    assert got == {"close": ("client_closed", 1000), "vanish": ("client_gone", 1006),
                   "too_big": ("message_too_big", 1009)}
    dropped = summaries[sessions["close"]]["dropped_chunks"]
    assert isinstance(dropped, int) and dropped > 0


async def test_a_malformed_http_request_is_one_info_line(
        caplog: pytest.LogCaptureFixture) -> None:
    """aiohttp logged each request it could not parse at ERROR with its parser's traceback,
    and outside litestream's handler (bare text in a --log-json log)."""
    caplog.set_level(logging.DEBUG)
    async with run_server() as srv:
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
            assert (await reader.readline()).split()[1] == b"400"
            writer.close()
    lines = [r for r in caplog.records if "request" in r.getMessage().lower()
             and r.name.startswith(("aiohttp", "litestream.http"))]
    assert [(r.name, r.levelno) for r in lines] == [("litestream.http", logging.INFO)] * 3
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in lines)
    assert lines[0].getMessage() == (
        "bad HTTP request from 127.0.0.1: 400 Invalid character in Content-Length:")
