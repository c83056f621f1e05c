"""Word timestamps on the wire, from a real server with the bundled voice: `timestamps=word` by
query or `config`, a `words` event after each `chunk` and before its audio, times on the
stream's clock (also after `clear` and for a cached sentence), both encodings, the Python
client's `Words` events, and nothing new for a client that did not ask."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgpack
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect

from litestream.client import BadRequest, Chunk, Words
from litestream.client import connect as client_connect
from litestream.engine import words as words_mod
from litestream.synthesis import workers
from tests.serverutil import RunningServer, Transcript, read_all, run_server, speak

module_loop = pytest.mark.asyncio(loop_scope="module")

TEXT = "Dr. Smith paid $1,234 on 3/4/2021. Sure, one moment! Visit example.com, ok?"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def srv() -> AsyncIterator[RunningServer]:
    async with run_server() as running:
        yield running


def check_words(t: Transcript) -> list[dict[str, Any]]:
    """Each chunk's `words` right after its `chunk` and before its audio; every word inside its
    chunk, in order, its text the span of the chunk's text."""
    chunks = t.of_type("chunk")
    spoken = t.of_type("words")
    assert [w["seq"] for w in spoken] == [c["seq"] for c in chunks]
    for position, (kind, item) in enumerate(t.order):
        if kind == "event" and item["type"] == "chunk":
            after = t.order[position + 1]
            assert after[0] == "event" and after[1]["type"] == "words"
            assert after[1]["seq"] == item["seq"]
    for chunk, words in zip(chunks, spoken, strict=True):
        assert words["words"], chunk
        end = chunk["start_ms"]
        for word in words["words"]:
            assert set(word) == {"text", "start_ms", "end_ms", "char_start", "char_end"}
            assert word["text"] == chunk["text"][word["char_start"]:word["char_end"]]
            assert end <= word["start_ms"] <= word["end_ms"]
            end = word["end_ms"]
        assert end <= chunk["start_ms"] + chunk["duration_ms"]
    return spoken


@module_loop
@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_words_follow_each_chunk_in_both_encodings(srv: RunningServer,
                                                         encoding: str) -> None:
    pack: Any = msgpack.packb if encoding == "msgpack" else json.dumps
    async with connect(f"{srv.url}?timestamps=word&encoding={encoding}") as ws:
        await ws.send(pack({"type": "text", "text": TEXT}))
        await ws.send(pack({"type": "end"}))
        t = await read_all(ws, msgpack_enc=encoding == "msgpack")
    spoken = check_words(t)
    assert [w["text"] for w in spoken[0]["words"]] == [
        "Dr", "Smith", "paid", "$1,234", "on", "3/4/2021"]
    # Later chunks' words are on the stream's clock, not the chunk's.
    second = t.of_type("chunk")[1]
    assert spoken[1]["words"][0]["start_ms"] >= second["start_ms"] > 0
    assert t.events[-1]["type"] == "done"


@module_loop
async def test_a_client_that_did_not_ask_sees_nothing_new(srv: RunningServer) -> None:
    t = await speak(srv.url, TEXT)
    assert t.of_type("words") == []
    assert {e["type"] for e in t.events} == {"ready", "chunk", "done"}
    assert all(set(c) == {"type", "seq", "text", "start_ms", "duration_ms"}
               for c in t.of_type("chunk"))


@module_loop
async def test_config_turns_words_on_for_later_text_and_clear_keeps_the_clock(
        srv: RunningServer) -> None:
    async with connect(srv.url) as ws:
        await ws.send(json.dumps({"type": "text", "text": "Before any config.", "flush": True}))
        before = await read_all(ws, stop_after="flushed")
        assert before.of_type("words") == []
        await ws.send(json.dumps({"type": "config", "timestamps": "word"}))
        await ws.send(json.dumps({"type": "text", "text": "Now with words. " * 6}))
        await ws.send(json.dumps({"type": "clear"}))
        cleared = await read_all(ws, stop_after="cleared")
        await ws.send(json.dumps({"type": "text", "text": "After the clear, words again."}))
        await ws.send(json.dumps({"type": "end"}))
        after = await read_all(ws)
    # Whatever of the cleared text went out came with its words.
    heard = Transcript(events=cleared.events, order=cleared.order)
    assert len(heard.of_type("words")) == len(heard.of_type("chunk"))
    check_words(after)
    (chunk,) = after.of_type("chunk")
    sent_ms = sum(len(pcm) for pcm in (before.audio | cleared.audio).values()) / 2 / 22.05
    # start_ms counts the audio sent before the clear, and the words ride on it.
    assert abs(chunk["start_ms"] - sent_ms) <= 2
    assert after.of_type("words")[0]["words"][0]["start_ms"] >= chunk["start_ms"]


@module_loop
async def test_a_cached_sentence_carries_its_words(srv: RunningServer) -> None:
    stock = "Thanks for waiting, the 2 files are ready."
    first = check_words(await speak(srv.url, stock, timestamps="word"))
    again = await speak(srv.url, "A new opening line.  Thanks for waiting,  the 2 files are ready.",
                        timestamps="word")
    cached = check_words(again)[1]
    chunk = again.of_type("chunk")[1]
    shifted = [(w["text"], w["start_ms"] - chunk["start_ms"], w["end_ms"] - chunk["start_ms"])
               for w in cached["words"]]
    assert shifted == [(w["text"], w["start_ms"], w["end_ms"]) for w in first[0]["words"]]
    assert srv.server.synthesis.cache is not None
    assert srv.server.synthesis.cache.hits >= 1


async def test_without_a_cache_words_are_timed_only_for_a_stream_that_asks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Timing a sentence's words costs the inference threads Python time (each word
    phonemized alone, then aligned): with no cache to keep the sentence for a later stream,
    it is done only for a stream that asked. Both streams hear the same audio."""
    timed: list[str] = []

    def counting(phonemes: Any, latent: Any) -> Any:
        timed.append("x")
        return words_mod.timed(phonemes, latent)

    monkeypatch.setattr(workers, "timed", counting)
    text = "Dr. Smith paid $1,234 today. Sure, one moment!"
    async with run_server(cache_bytes=0) as srv:
        cache = srv.server.synthesis.cache
        assert cache is None or not cache.enabled
        plain = await speak(srv.url, text)
        assert plain.of_type("chunk") and not plain.of_type("words")
        assert timed == []
        asked = await speak(srv.url, text, timestamps="word")
        check_words(asked)
        assert len(timed) == len(asked.of_type("chunk"))
    assert plain.audio == asked.audio


@module_loop
async def test_the_python_client_yields_words_events(srv: RunningServer) -> None:
    seen: list[Any] = []
    async with client_connect(srv.url, timestamps="word", encoding="msgpack") as stream:
        await stream.send_text("Hello there, how are you? Fine.")
        await stream.end()
        async for event in stream:
            seen.append(event)
    chunks = [e for e in seen if isinstance(e, Chunk)]
    words = [e for e in seen if isinstance(e, Words)]
    assert [w.seq for w in words] == [c.seq for c in chunks]
    assert [w.text for w in words[0].words] == ["Hello", "there", "how", "are", "you"]
    index = seen.index(words[0])
    assert seen[index - 1] == chunks[0]


@module_loop
async def test_the_voice_catalogue_says_how_words_are_timed(srv: RunningServer) -> None:
    async with aiohttp.ClientSession() as http, http.get(srv.http_url + "/v1/voices") as resp:
        body = await resp.json()
    assert {v["id"]: v["timestamps"] for v in body["voices"]} == {"en_US-joe-medium": "exact"}
    with pytest.raises(BadRequest, match="timestamps"):
        async with client_connect(srv.url, timestamps="phoneme"):
            pass
