"""POST /v1/audio/speech and friends, called with the official `openai` package, against a real
server (the bundled voice, deterministic): whole files and streamed bodies in every format,
decoded and length-checked; SSE; errors; the same keys, origins, quotas and admission as a
WebSocket stream; the sentence cache."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import socket
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import av
import httpx2
import openai
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect

from litestream.protocol import openai as openai_api
from litestream.server.encoders import EMPTY_STREAM_S
from litestream.session import StreamState
from tests.fakes import MARKERS, Fault, FaultPlan, FaultyVoice
from tests.serverutil import RunningServer, run_server, shared_voices, until

module_loop = pytest.mark.asyncio(loop_scope="module")

TEXT = "Sure, one moment. I am checking the opening hours for you."
RATE = 22050  # the bundled voice's: mp3, aac, flac and wav keep it
PCM_RATE = openai_api.PCM_RATE  # OpenAI's 24 kHz, the voice's audio resampled
# Encoder delay and padding of the lossy codecs, seconds (see tests/unit/server/test_encoders.py).
PADDING_S = {"mp3": 0.11, "aac": 0.1, "opus": 0.03, "flac": 0.0, "wav": 0.0, "pcm": 0.0}


def client(srv: RunningServer, **kwargs: Any) -> openai.AsyncOpenAI:
    kwargs.setdefault("api_key", "unused")
    kwargs.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(base_url=srv.http_url + "/v1", **kwargs)


def decode(data: bytes, fmt: str) -> tuple[int, int]:
    """(sample rate, samples) of an encoded response."""
    if fmt == "pcm":
        return PCM_RATE, len(data) // 2
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return stream.codec_context.sample_rate, samples


def metric(srv: RunningServer, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    body, _ = srv.server.metrics.render()
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise KeyError(name)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def srv() -> AsyncIterator[RunningServer]:
    async with run_server() as running:
        yield running


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def pcm_samples(srv: RunningServer) -> int:
    """The reference: TEXT as raw PCM, in samples."""
    response = await client(srv).audio.speech.create(model="tts-1", voice="alloy", input=TEXT,
                                                     response_format="pcm")
    assert response.response.headers["x-sample-rate"] == str(PCM_RATE)
    assert response.response.headers["content-type"] == "audio/pcm"
    data = response.content
    assert len(data) % 2 == 0
    return len(data) // 2


@module_loop
@pytest.mark.parametrize("fmt", openai_api.RESPONSE_FORMATS)
async def test_whole_file_in_each_format(srv: RunningServer, pcm_samples: int, fmt: str) -> None:
    response = await client(srv).audio.speech.create(
        model="gpt-4o-mini-tts", voice="nova", input=TEXT, response_format=fmt,  # type: ignore[arg-type]
        instructions="Speak cheerfully.")  # accepted and ignored
    assert response.response.headers["content-type"] == openai_api.CONTENT_TYPES[fmt]
    rate, samples = decode(response.content, fmt)
    assert rate == {"opus": 48000, "pcm": PCM_RATE}.get(fmt, RATE)
    assert response.response.headers["x-sample-rate"] == str(rate)
    seconds, expected = samples / rate, pcm_samples / PCM_RATE
    assert expected - 0.001 <= seconds <= expected + PADDING_S[fmt]
    assert expected > 2.0  # the text is spoken, not an empty file


@module_loop
@pytest.mark.parametrize("fmt", openai_api.RESPONSE_FORMATS)
async def test_streaming_response_in_each_format(srv: RunningServer, pcm_samples: int,
                                                 fmt: str) -> None:
    parts: list[bytes] = []
    async with client(srv).audio.speech.with_streaming_response.create(
            model="tts-1", voice="en_US-joe-medium", input=TEXT,
            response_format=fmt) as response:  # type: ignore[arg-type]
        assert response.headers.get("transfer-encoding") == "chunked"
        async for part in response.iter_bytes():
            parts.append(part)
    rate, samples = decode(b"".join(parts), fmt)
    expected = pcm_samples / PCM_RATE
    assert expected - 0.001 <= samples / rate <= expected + PADDING_S[fmt]


@module_loop
@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
async def test_input_with_nothing_to_speak_is_still_a_file(srv: RunningServer, fmt: str) -> None:
    """Only punctuation: no audio, yet a 200 must carry a file of its format (mp3, opus and
    aac bodies were 0 bytes), a blip of silence at most."""
    response = await client(srv).audio.speech.create(
        model="tts-1", voice="alloy", input="...", response_format=fmt)  # type: ignore[arg-type]
    rate, samples = decode(response.content, fmt)
    assert samples / rate <= EMPTY_STREAM_S + PADDING_S[fmt]


@module_loop
async def test_first_bytes_arrive_while_the_rest_is_still_being_synthesized(
        srv: RunningServer) -> None:
    long_text = " ".join(f"This is sentence number {i} of a long answer." for i in range(12))
    async with client(srv).audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input=long_text, response_format="pcm") as response:
        parts = response.iter_bytes()
        first = await parts.__anext__()
        assert first
        # The request is still a stream in flight, with sentences left to synthesize.
        assert len(srv.server.speech) == 1
        in_flight = next(iter(srv.server.speech.values()))
        assert in_flight.session is not None and in_flight.session.cursor_ms < 30_000
        rest = [part async for part in parts]
    total_s = (len(first) + sum(map(len, rest))) / 2 / PCM_RATE
    assert total_s > 20.0


@module_loop
async def test_sse_deltas_then_done(srv: RunningServer, pcm_samples: int) -> None:
    events: list[dict[str, Any]] = []
    async with client(srv).audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="alloy", input=TEXT, response_format="pcm",
            stream_format="sse") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: "):]))
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    assert events[-1]["type"] == "speech.audio.done"
    assert events[-1]["usage"]["input_tokens"] == len(TEXT)
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert len(audio) // 2 == pcm_samples


@module_loop
@pytest.mark.parametrize("fmt,asked", [("pcm", RATE), ("pcm", 16000), ("wav", 16000),
                                       ("mp3", 24000)])
async def test_a_sample_rate_asked_for_is_what_the_body_holds(
        srv: RunningServer, pcm_samples: int, fmt: str, asked: int) -> None:
    """`sample_rate` (litestream's extra field): the same speech, at the rate asked; the
    voice's own rate gives its samples untouched."""
    response = await client(srv).audio.speech.create(
        model="tts-1", voice="alloy", input=TEXT, response_format=fmt,  # type: ignore[arg-type]
        extra_body={"sample_rate": asked})
    assert response.response.headers["x-sample-rate"] == str(asked)
    data = response.content
    if fmt == "pcm":
        rate, samples = asked, len(data) // 2
    else:
        rate, samples = decode(data, fmt)
    assert rate == asked
    expected = pcm_samples / PCM_RATE
    assert expected - 0.002 <= samples / rate <= expected + PADDING_S[fmt] + 0.002


@module_loop
async def test_same_request_twice_is_served_from_the_cache_byte_for_byte(
        srv: RunningServer) -> None:
    text = "Thanks for waiting. Your table is ready."
    hits = metric(srv, "litestream_cache_hits_total")
    first = (await client(srv).audio.speech.create(model="tts-1", voice="alloy", input=text,
                                                   response_format="pcm")).content
    assert metric(srv, "litestream_cache_hits_total") == hits  # new text: synthesized
    second = (await client(srv).audio.speech.create(model="tts-1", voice="alloy", input=text,
                                                    response_format="pcm")).content
    assert metric(srv, "litestream_cache_hits_total") > hits
    assert second == first
    # Another speed is another key: synthesized, never the cached audio.
    hits = metric(srv, "litestream_cache_hits_total")
    faster = (await client(srv).audio.speech.create(model="tts-1", voice="alloy", input=text,
                                                    response_format="pcm", speed=1.5)).content
    assert metric(srv, "litestream_cache_hits_total") == hits
    assert len(faster) < len(first)


@module_loop
async def test_models_and_voices_documents(srv: RunningServer) -> None:
    models = await client(srv).models.list()
    ids = [m.id for m in models.data]
    assert "tts-1" in ids and "litestream" in ids
    assert (await client(srv).models.retrieve("tts-1-hd")).id == "tts-1-hd"
    url = srv.http_url + openai_api.VOICES_PATH
    doc = json.loads(await asyncio.to_thread(lambda: urllib.request.urlopen(url).read()))
    names = {v["id"] for v in doc["data"]}
    assert "en_US-joe-medium" in names and "alloy" in names
    assert doc["voices"] == doc["data"]


@module_loop
async def test_bad_requests_get_openai_shaped_400s(srv: RunningServer) -> None:
    api = client(srv)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"input": "x" * 4097}, "input"),
        ({"input": TEXT, "voice": "zorro"}, "voice"),
        ({"input": TEXT, "speed": 5.0}, "speed"),
        ({"input": TEXT, "response_format": "ogg"}, "response_format"),
        ({"input": TEXT, "extra_body": {"sample_rate": 22000}}, "sample_rate"),
    ]
    for fields, param in cases:
        body: dict[str, Any] = {"model": "tts-1", "voice": "alloy", **fields}
        with pytest.raises(openai.BadRequestError) as info:
            await api.audio.speech.create(**body)
        assert info.value.status_code == 400
        error = info.value.body
        assert isinstance(error, dict)
        assert error["param"] == param
        assert set(error) >= {"message", "type", "code"}
    # The server went on serving.
    assert (await api.audio.speech.create(model="tts-1", voice="alloy", input="Fine.",
                                          response_format="pcm")).content


async def test_keys_and_origins_apply_to_speech_as_to_streams() -> None:
    async with run_server(api_keys=("s3cret",), allowed_origins=("https://app.example",)) as srv:
        with pytest.raises(openai.AuthenticationError) as info:
            await client(srv, api_key="wrong").audio.speech.create(
                model="tts-1", voice="alloy", input=TEXT)
        assert info.value.status_code == 401
        with pytest.raises(openai.PermissionDeniedError):
            await client(srv, api_key="s3cret",
                         default_headers={"Origin": "https://evil.example"}).audio.speech.create(
                model="tts-1", voice="alloy", input=TEXT)
        ok = await client(srv, api_key="s3cret").audio.speech.create(
            model="tts-1", voice="alloy", input="Hello.", response_format="pcm")
        assert len(ok.content) > 0
        assert metric(srv, "litestream_refusals_total", reason="unauthorized") == 1
        assert metric(srv, "litestream_refusals_total", reason="origin") == 1


async def test_full_server_gives_503_with_retry_after_and_the_client_retries() -> None:
    async with run_server(max_streams=1) as srv:
        async with connect(srv.url) as ws:  # the one stream this server takes
            await ws.recv()
            with pytest.raises(openai.InternalServerError) as info:
                await client(srv).audio.speech.create(model="tts-1", voice="alloy", input=TEXT)
            assert info.value.status_code == 503
            headers = info.value.response.headers
            assert int(headers["retry-after"]) >= 1
            assert info.value.body["type"] == "server_error"  # type: ignore[index]
            # With retries on, the official client waits Retry-After and tries again: the
            # slot frees meanwhile, and the retry is served.
            retrying = asyncio.create_task(client(srv, max_retries=3).audio.speech.create(
                model="tts-1", voice="alloy", input="Hello again.", response_format="pcm"))
            while metric(srv, "litestream_refusals_total", reason="max_streams") < 2:
                await asyncio.sleep(0.05)
        response = await asyncio.wait_for(retrying, 30)
        assert len(response.content) > 0
        assert metric(srv, "litestream_refusals_total", reason="max_streams") >= 2


async def test_a_client_that_leaves_mid_body_frees_its_stream() -> None:
    async with run_server() as srv:
        long_text = " ".join(f"Sentence {i} of something nobody will hear." for i in range(30))
        async with client(srv).audio.speech.with_streaming_response.create(
                model="tts-1", voice="alloy", input=long_text, response_format="pcm") as resp:
            async for _ in resp.iter_bytes():
                break  # read one piece, then leave
        for _ in range(200):
            if not srv.server.speech:
                break
            await asyncio.sleep(0.05)
        assert not srv.server.speech
        assert metric(srv, "litestream_active_streams") == 0
        assert metric(srv, "litestream_streams_total", close_code="abnormal") == 1


async def test_a_response_read_slowly_still_ends_whole() -> None:
    """A slow link, as for WebSocket streams (test_websocket.py): the client holds its reads
    (a few KB of buffers) until the session has queued its last audio and its end while the
    response writer is behind on its socket; then it reads. The response must end (chunked
    body terminated, connection closed) with every sample in it. (The writer had the same
    lost wake-up as the WebSocket one; this test did not catch it on the old code: aiohttp
    waits on the socket only every 64 KiB written, so whether the end was queued during such
    a wait is timing; it holds the behaviour, the WebSocket tests hold the regression.)"""
    # One long sentence: no `chunk` event between its pieces, so the writer's batches end
    # where the outbox is empty.
    text = ("The quick brown fox jumps over the lazy dog while a stitch in time saves nine "
            "and every morning the baker opens his shop at six for the people of the town")
    async with run_server(slow_reader_timeout_s=60.0) as srv:
        reference = await client(srv).audio.speech.create(
            model="tts-1", voice="alloy", input=text, response_format="pcm")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", srv.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        body = json.dumps({"model": "tts-1", "voice": "alloy", "input": text,
                           "response_format": "pcm"}).encode()
        # All but the body's last byte: the server's side of the connection is found and its
        # send buffer shrunk before the request can start.
        writer.write(f"POST {openai_api.SPEECH_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                     "Connection: close\r\n\r\n".encode() + body[:-1])
        here = sock.getsockname()
        assert srv.server._runner is not None
        handlers = srv.server._runner.server.connections
        await until(lambda: any(h.transport is not None
                                and h.transport.get_extra_info("peername") == here
                                for h in handlers))
        [handler] = [h for h in handlers if h.transport is not None
                     and h.transport.get_extra_info("peername") == here]
        assert handler.transport is not None
        handler.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        writer.write(body[-1:])
        await until(lambda: len(srv.server.speech) == 1)
        stream = next(iter(srv.server.speech.values()))
        session = stream.session
        assert session is not None
        await until(lambda: session.state is StreamState.DRAINING)
        assert stream.request.protocol.writing_paused  # the writer waits on its socket
        # with the stream's end still queued behind it (the writer has not taken the Close:
        # taking it closes the session). The body's audio may all be in the batch it writes.
        assert session.state is StreamState.DRAINING
        try:
            async with asyncio.timeout(30):
                raw = await reader.read()  # to the end: the server closes after the body
        except TimeoutError:
            pytest.fail("the response never ended: what was queued while the writer waited "
                        "on its socket was never sent")
        finally:
            writer.close()
    head, _, chunked = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    pcm = b""
    while True:  # the chunked body, to its terminating 0-size chunk
        size_line, _, chunked = chunked.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        pcm, chunked = pcm + chunked[:size], chunked[size + 2:]
    assert len(pcm) == len(reference.content)  # every sample: the same length as read fast


async def test_a_sentence_that_fails_before_any_audio_is_an_error_status() -> None:
    """The first sentence fails: the request ends with a 500 in OpenAI's shape, never a 200
    whose file lacks a sentence (the next sentence's audio waits behind the failed one, so the
    error comes before any byte)."""
    plan = FaultPlan()
    voices = {k: FaultyVoice(v, plan) for k, v in shared_voices().items()}
    async with run_server(voices=voices) as srv:  # type: ignore[arg-type]
        with pytest.raises(openai.InternalServerError) as info:
            await client(srv).audio.speech.create(
                model="tts-1", voice="alloy", response_format="pcm",
                input=f"{MARKERS[Fault.RAISE]} breaks here. The last sentence is fine.")
        assert info.value.status_code == 500
        assert info.value.body["code"] == "synthesis_failed"  # type: ignore[index]
        assert plan.injected[Fault.RAISE] == 1
        await until(lambda: not srv.server.speech)
        assert metric(srv, "litestream_active_streams") == 0


async def test_a_sentence_that_fails_after_the_first_bytes_cuts_the_body() -> None:
    """A sentence fails once audio is on its way: the connection is cut, so the client sees an
    incomplete body rather than a whole-looking file missing a sentence (docs/openai.md,
    Response). The failing sentence's run is held until the first bytes are read."""
    plan = FaultPlan()
    voices = {k: FaultyVoice(v, plan) for k, v in shared_voices().items()}
    async with run_server(voices=voices) as srv:  # type: ignore[arg-type]
        received: list[bytes] = []
        with pytest.raises(httpx2.RemoteProtocolError):
            async with client(srv).audio.speech.with_streaming_response.create(
                    model="tts-1", voice="alloy", response_format="pcm",
                    input=f"The first sentence is fine. {MARKERS[Fault.WEDGE]} fails here. "
                          "The last sentence is fine too.") as response:
                assert response.status_code == 200
                async for part in response.iter_bytes():
                    received.append(part)
                    plan.release()  # audio is out: now the held sentence fails
        assert received  # the first sentence's audio came, then the cut
        await until(lambda: not srv.server.speech)
        assert metric(srv, "litestream_active_streams") == 0
        assert metric(srv, "litestream_streams_total", close_code="internal") == 1


async def test_input_over_the_text_rate_is_a_429_the_client_retries_after() -> None:
    """An input over the key's text rate is refused like a request over its rate at
    admission: 429 in OpenAI's shape (type `requests`, code `rate_limit_exceeded`) with
    Retry-After and retry-after-ms, which the official client waits before its retry."""
    text = "This sentence is here to use up a good part of the text rate for this client. " * 2
    async with run_server(chars_per_s=100.0) as srv:  # a burst of 200 characters
        assert (await client(srv).audio.speech.create(
            model="tts-1", voice="alloy", input=text, response_format="pcm")).content
        with pytest.raises(openai.RateLimitError) as info:
            await client(srv).audio.speech.create(model="tts-1", voice="alloy", input=text,
                                                  response_format="pcm")
        assert info.value.status_code == 429
        assert info.value.body["type"] == "requests"  # type: ignore[index]
        assert info.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
        headers = info.value.response.headers
        # The wait for the characters missing: at most the whole input's, at 100 a second.
        wait_ms = int(headers["retry-after-ms"])
        assert 0 < wait_ms <= len(text) * 10
        assert int(headers["retry-after"]) == max(1, math.ceil(wait_ms / 1000))
        retried = await client(srv, max_retries=2).audio.speech.create(
            model="tts-1", voice="alloy", input=text, response_format="pcm")
        assert retried.content
