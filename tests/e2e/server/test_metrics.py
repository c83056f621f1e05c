"""The counters an operator adds up, against what real clients got from a real server: streams
opened and ended, refusals and errors by reason, and the audio listeners received."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request

import openai
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from litestream.protocol import openai as openai_api
from tests.serverutil import RunningServer, read_all, run_server, until

RATE = 22050  # the bundled voice's; s16le: 2 bytes a sample
LONG = " ".join(f"This is sentence number {n} of a long answer." for n in range(12))


def metric(srv: RunningServer, name: str, **labels: str) -> float:
    value = srv.server.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def received_s(nbytes: int) -> float:
    return nbytes / 2 / RATE


async def test_counters_add_up_to_what_clients_got() -> None:
    async with run_server() as srv:
        heard_s = 0.0
        # A stream spoken to its end, with three messages the server answers with `error`.
        async with connect(srv.url) as ws:
            for frame in ("not json", '{"type": "sing"}', '{"type": "text", "text": 4}'):
                await ws.send(frame)
            await ws.send(json.dumps({"type": "text", "text": "One sentence. Another."}))
            await ws.send(json.dumps({"type": "end"}))
            done = await read_all(ws)
        heard_s += received_s(sum(map(len, done.audio.values())))
        assert len(done.of_type("error")) == 3 and done.close_code == 1000
        # A barge-in: audio queued for this listener and dropped by the clear was not sent.
        async with connect(srv.url) as ws:
            await ws.send(json.dumps({"type": "text", "text": LONG, "flush": True}))
            frames, events = 0, []
            async for message in ws:  # to the close
                if isinstance(message, bytes):
                    heard_s += received_s(len(message))
                    frames += 1
                    if frames == 5:
                        await ws.send(json.dumps({"type": "clear"}))
                        await ws.send(json.dumps({"type": "end"}))
                else:
                    events.append(json.loads(message)["type"])
        assert "cleared" in events and events[-1] == "done" and ws.close_code == 1000
        # A speech request, and one refused for its body; a handshake refused for its query.
        api = openai.AsyncOpenAI(base_url=srv.http_url + "/v1", api_key="x", max_retries=0)
        try:
            speech = await api.audio.speech.create(model="tts-1", voice="alloy",
                                                   input="Hello there.", response_format="pcm")
            with pytest.raises(openai.BadRequestError):
                await api.audio.speech.create(model="tts-1", voice="alloy", input="x",
                                              response_format="wav2")  # type: ignore[arg-type]
        finally:
            await api.close()
        heard_s += len(speech.content) / 2 / openai_api.PCM_RATE  # OpenAI's 24 kHz
        with pytest.raises(InvalidStatus):
            await connect(srv.url + "?voice=nobody")
        await until(lambda: metric(srv, "litestream_active_streams") == 0)

        assert metric(srv, "litestream_audio_sent_seconds_total") == pytest.approx(heard_s,
                                                                                 abs=0.001)
        assert metric(srv, "litestream_streams_total", close_code="normal") == 3
        assert metric(srv, "litestream_ttfa_seconds_count") == 3
        assert metric(srv, "litestream_refusals_total", reason="bad_param") == 2
        assert metric(srv, "litestream_errors_total", code="bad_message") == 3

        # A client that vanishes mid-stream: counted apart, and the gauge comes back to 0.
        async with connect(srv.url) as ws:
            await ws.send(json.dumps({"type": "text", "text": LONG, "flush": True}))
            while not isinstance(await ws.recv(), bytes):
                pass
            ws.transport.abort()
        await until(lambda: metric(srv, "litestream_active_streams") == 0)
        assert metric(srv, "litestream_streams_total", close_code="abnormal") == 1
        total = sum(metric(srv, "litestream_streams_total", close_code=code)
                    for code in ("normal", "going_away", "policy", "too_big", "internal",
                                 "try_again", "abnormal", "other"))
        assert total == 4


async def test_every_refused_speech_request_is_counted_and_logged_with_its_status(
        caplog: pytest.LogCaptureFixture) -> None:
    """A body over 64 KiB (413) and one that never finishes arriving (408) were answered
    without a count or a line; a body that is not JSON (415) was logged as a 400."""
    caplog.set_level(logging.INFO, logger="litestream.server")
    async with run_server(request_timeout_s=0.5) as srv:
        answers = []
        for body, content_type in ((b'{"input": "' + b"a" * 70_000 + b'"}', "application/json"),
                                   (b"hi", "text/plain")):
            answers.append(await asyncio.to_thread(post, srv, body, content_type))
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: 100\r\n\r\n{\"inp")
        status_line = await reader.readline()
        writer.close()
        answers.append((int(status_line.split()[1]), ""))
        assert [status for status, _ in answers] == [413, 415, 408]
        assert metric(srv, "litestream_refusals_total", reason="bad_param") == 2
        assert metric(srv, "litestream_refusals_total", reason="other") == 1
    lines = [r for r in caplog.records if r.getMessage().startswith("refused POST")]
    assert [r.getMessage().split(": ")[1] for r in lines] == [
        "413 bad_param", "415 bad_param", "408 other"]
    assert [r.__dict__["request_id"] for r in lines[:2]] == [rid for _, rid in answers[:2]]


def post(srv: RunningServer, body: bytes, content_type: str) -> tuple[int, str]:
    """(status, X-Request-Id) of one POST /v1/audio/speech."""
    request = urllib.request.Request(srv.http_url + "/v1/audio/speech", data=body,
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["X-Request-Id"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["X-Request-Id"]
