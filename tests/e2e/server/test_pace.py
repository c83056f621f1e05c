"""protocol-v1's Pace in a real server, and cached audio in step (issue 18).

The same long text twice, over WebSocket (a listener) and over HTTP (a download, with the
official `openai` client): the second time every sentence is a cache hit, and it arrives in
full, byte for byte what the first time gave. The server's send buffer is set below the text's
audio, so a cache hit that entered its stream at once (not at the stream's pace) would cut the
client off. `pace` as a query parameter, a `config` field and an OpenAI body field; bad values
are `invalid_param`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import openai
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from litestream.protocol import openai as openai_api
from litestream.scheduler import Pace
from tests.serverutil import RunningServer, read_all, run_server, speak

module_loop = pytest.mark.asyncio(loop_scope="module")

# Three sentences, about 13 s of audio: over the send buffer below.
LONG_TEXT = (
    "The lighthouse keeper climbed the winding stairs every evening before the sun went down. "
    "He polished the great lens, trimmed the wick, and wrote the weather into his logbook. "
    "Ships far out at sea counted on that steady light to bring them safely home."
)
SEND_BUFFER_S = 6.0  # over max_lookahead_s and the longest window (3 s), under the text


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def srv() -> AsyncIterator[RunningServer]:
    # A listener is synthesized at most 1 s ahead of its player here (short test), and cut
    # off past 6 s of audio waiting to be sent.
    async with run_server(lookahead_s=0.5, max_lookahead_s=1.0,
                          send_buffer_s=SEND_BUFFER_S) as running:
        yield running


def client(srv: RunningServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=srv.http_url + "/v1", api_key="unused")


def audio_s(pcm: bytes, rate: int = 22050) -> float:
    """Seconds of s16le mono: the voice's rate on a stream, OpenAI's 24 kHz for `pcm`."""
    return len(pcm) / 2 / rate


@module_loop
async def test_the_same_long_text_twice_over_websocket(srv: RunningServer) -> None:
    first = await speak(srv.url, LONG_TEXT)
    assert first.events[-1]["type"] == "done" and first.close_code == 1000
    total = sum(audio_s(bytes(pcm)) for pcm in first.audio.values())
    assert total > SEND_BUFFER_S + 2.0  # whole, its audio would not fit the send buffer
    second = await speak(srv.url, LONG_TEXT)  # every sentence a cache hit
    assert second.events[-1]["type"] == "done" and second.close_code == 1000
    assert [c["text"] for c in second.of_type("chunk")] == [
        c["text"] for c in first.of_type("chunk")]
    assert {seq: bytes(pcm) for seq, pcm in second.audio.items()} == {
        seq: bytes(pcm) for seq, pcm in first.audio.items()}
    assert second.of_type("done")[0]["stats"]["audio_ms"] == first.of_type(
        "done")[0]["stats"]["audio_ms"]


@module_loop
async def test_the_same_long_text_twice_over_http(srv: RunningServer) -> None:
    text = LONG_TEXT.replace("evening", "morning")  # not yet in the cache
    async with client(srv) as api:
        first = await api.audio.speech.create(model="tts-1", voice="alloy", input=text,
                                              response_format="pcm")
        second = await api.audio.speech.create(model="tts-1", voice="alloy", input=text,
                                               response_format="pcm")
    assert audio_s(first.content, openai_api.PCM_RATE) > SEND_BUFFER_S + 2.0
    assert second.content == first.content


@module_loop
async def test_pace_from_the_query_and_from_config(srv: RunningServer) -> None:
    text = "A download may be asked for over a WebSocket too. It is read as fast as it comes."
    by_query = await speak(srv.url, text, pace="download")
    assert by_query.events[-1]["type"] == "done"
    async with connect(srv.url) as ws:
        await ws.send(json.dumps({"type": "config", "pace": "download"}))
        await ws.send(json.dumps({"type": "text", "text": text}))
        sid = next(iter(srv.server.streams))
        for _ in range(200):  # the server reads the two messages in its own time
            if srv.server.scheduler.queued_sentences(sid):
                break
            await asyncio.sleep(0.01)
        assert srv.server.scheduler._streams[sid].pace is Pace.DOWNLOAD
        await ws.send(json.dumps({"type": "end"}))
        by_config = await read_all(ws)
    assert by_config.events[-1]["type"] == "done"
    # Either way the whole text is spoken (the second time from the cache, in step).
    for t in (by_query, by_config):
        assert sum(c["duration_ms"] for c in t.of_type("chunk")) == pytest.approx(
            sum(audio_s(bytes(p)) * 1000 for p in t.audio.values()), abs=2 * len(t.audio))


@module_loop
async def test_bad_pace_values_are_invalid_param(srv: RunningServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(srv.url + "?pace=fast"):
            pass
    response = refused.value.response
    assert response.status_code == 400
    body = json.loads(response.body or b"{}")
    assert body["error"]["code"] == "invalid_param" and body["error"]["param"] == "pace"
    async with connect(srv.url) as ws:
        await ws.send(json.dumps({"type": "config", "pace": "fast"}))
        error = (await read_all(ws, stop_after="error")).of_type("error")[0]
        assert (error["code"], error["fatal"]) == ("invalid_param", False)
        await ws.send(json.dumps({"type": "text", "text": "Still here."}))  # it goes on
        await ws.send(json.dumps({"type": "end"}))
        assert (await read_all(ws)).events[-1]["type"] == "done"
    async with client(srv) as api:
        for extra_body, extra_query in (({"pace": "fast"}, None), (None, {"pace": "slow"})):
            with pytest.raises(openai.BadRequestError) as bad:
                await api.audio.speech.create(model="tts-1", voice="alloy", input="Hi.",
                                              extra_body=extra_body, extra_query=extra_query)
            assert bad.value.status_code == 400
            assert isinstance(bad.value.body, dict)
            assert (bad.value.body["param"], bad.value.body["code"]) == ("pace",
                                                                         "invalid_param")
