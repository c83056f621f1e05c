"""The sentence cache in a real server: a hit skips synthesis and enters the stream in order,
byte for byte what synthesis gave; another speed never hits; clear and disconnect behave as
for synthesized chunks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from tests.serverutil import RunningServer, read_all, run_server, speak

module_loop = pytest.mark.asyncio(loop_scope="module")

STOCK = "Sure, one moment."


def metric(srv: RunningServer, name: str) -> float:
    body, _ = srv.server.metrics.render()
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise KeyError(name)


def hits(srv: RunningServer) -> float:
    return metric(srv, "litestream_cache_hits_total")


def synthesized_s(srv: RunningServer) -> float:
    return metric(srv, "litestream_audio_seconds_total")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def srv() -> AsyncIterator[RunningServer]:
    # The segmenter cuts whole sentences, so a stock phrase is the same key wherever it stands.
    async with run_server() as running:
        yield running


@module_loop
async def test_a_hit_enters_the_stream_in_order_byte_for_byte(srv: RunningServer) -> None:
    primed = await speak(srv.url, STOCK)
    reference = bytes(primed.audio[0])
    before_hits, before_s = hits(srv), synthesized_s(srv)
    text = f"This sentence is new to the cache. {STOCK} And so is this last one."
    t = await speak(srv.url, text)
    chunks = t.of_type("chunk")
    assert [c["text"] for c in chunks] == [
        "This sentence is new to the cache.", STOCK, "And so is this last one."]
    assert hits(srv) == before_hits + 1
    # Only the two new sentences were synthesized: the cached one cost no compute.
    new_audio_s = (len(t.audio[0]) + len(t.audio[2])) / 2 / 22050
    assert synthesized_s(srv) - before_s == pytest.approx(new_audio_s, abs=0.01)
    # In order: every frame of seq n before any of seq n+1, chunk events before their audio.
    audio_seqs = [seq for kind, seq in t.order if kind == "audio"]
    assert audio_seqs == sorted(audio_seqs)
    assert set(audio_seqs) == {0, 1, 2}
    # On time in the stream's clock: start_ms runs on, as for synthesized chunks.
    assert chunks[1]["start_ms"] == chunks[0]["start_ms"] + chunks[0]["duration_ms"]
    assert bytes(t.audio[1]) == reference
    assert t.events[-1]["type"] == "done"


@module_loop
async def test_another_speed_never_gets_the_cached_audio(srv: RunningServer) -> None:
    await speak(srv.url, STOCK)  # cached at speed 1 (if it was not already)
    before = hits(srv)
    faster = await speak(srv.url, STOCK, speed="1.5")
    assert hits(srv) == before
    normal = await speak(srv.url, STOCK)
    assert hits(srv) == before + 1
    assert len(faster.audio[0]) < len(normal.audio[0])


@module_loop
async def test_clear_drops_a_hit_like_any_chunk(srv: RunningServer) -> None:
    await speak(srv.url, STOCK)
    long_text = STOCK + " " + " ".join(f"Then sentence {i} follows." for i in range(10))
    async with connect(srv.url) as ws:
        await ws.send(json.dumps({"type": "text", "text": long_text}))
        await ws.send(json.dumps({"type": "clear"}))
        await ws.send(json.dumps({"type": "text", "text": "After the clear."}))
        await ws.send(json.dumps({"type": "end"}))
        t = await read_all(ws)
    cleared = t.of_type("cleared")
    assert len(cleared) == 1
    cut = cleared[0]["seq"]
    after = t.order[t.order.index(("event", cleared[0])) + 1:]
    # Nothing of the cleared text (the hit included) is sent after `cleared`.
    assert all(seq > cut for kind, seq in after if kind == "audio")
    assert [m["text"] for kind, m in after if kind == "event" and m["type"] == "chunk"] == [
        "After the clear."]
    assert t.events[-1]["type"] == "done"


@module_loop
async def test_disconnect_with_a_hit_pending_leaves_nothing_behind(srv: RunningServer) -> None:
    await speak(srv.url, STOCK)
    for _ in range(5):
        async with connect(srv.url) as ws:
            await ws.send(json.dumps({"type": "text", "text": STOCK + " More words here."}))
        # Gone at once: the hit's delivery finds no stream, its jobs are dropped.
    for _ in range(100):
        if not srv.server.streams and srv.server.scheduler.queued_sentences() == 0:
            break
        await asyncio.sleep(0.05)
    assert not srv.server.streams
    assert srv.server.scheduler.queued_sentences() == 0
    assert (await speak(srv.url, STOCK)).events[-1]["type"] == "done"
