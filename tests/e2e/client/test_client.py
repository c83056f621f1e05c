"""litestream.client: pure parts with plain numbers, then the real thing against a real server."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import numpy as np
import pytest
import pytest_asyncio

from litestream.client import (
    Audio,
    BadRequest,
    Chunk,
    Cleared,
    Done,
    Error,
    EventDecoder,
    Flushed,
    PlaybackClock,
    Ready,
    Unauthorized,
    Unavailable,
    build_url,
    connect,
    synthesize,
)
from tests import REPO
from tests.serverutil import RunningServer, run_server

# One event loop for the module, so one server (seconds to start: a session per worker) serves
# every test that needs no special config.
module_loop = pytest.mark.asyncio(loop_scope="module")

SR = 1000  # 1 kHz s16le: 2 bytes per ms, so frame sizes read as durations
MS = 2  # bytes per ms at SR


def chunk(seq: int, duration_ms: int, text: str = "") -> Chunk:
    return Chunk(seq=seq, text=text or f"chunk {seq}.", start_ms=0, duration_ms=duration_ms)


# ---------------------------------------------------------------- PlaybackClock


def test_clock_no_stall_when_audio_arrives_ahead() -> None:
    clock = PlaybackClock(SR)
    clock.on_chunk(chunk(0, 500), now=0.0)
    assert clock.on_audio(0, 500 * MS, now=0.0) == 0.0
    clock.on_chunk(chunk(1, 500), now=0.3)
    assert clock.on_audio(1, 500 * MS, now=0.3) == 0.0
    assert clock.stall_count == 0
    assert clock.first_audio_at == 0.0
    assert clock.played_ms(0.7) == pytest.approx(700)
    assert clock.buffered_ms(0.7) == pytest.approx(300)
    assert clock.ends_at(0.7) == pytest.approx(1.0)
    assert clock.chunks[1].lateness_ms == 0.0


def test_clock_detects_stall_and_chunk_lateness() -> None:
    clock = PlaybackClock(SR)
    clock.on_chunk(chunk(0, 200), now=1.0)
    clock.on_audio(0, 200 * MS, now=1.0)  # plays 1.0 .. 1.2
    clock.on_chunk(chunk(1, 300), now=1.45)
    assert clock.on_audio(1, 300 * MS, now=1.45) == pytest.approx(250)  # dry 1.2 .. 1.45
    assert clock.stall_count == 1
    assert clock.stall_ms == pytest.approx(250)
    assert clock.stalls[0].at_s == pytest.approx(1.2)
    assert clock.stalls[0].seq == 1
    assert clock.chunks[1].lateness_ms == pytest.approx(250)
    # playback resumes at 1.45: the 300 ms of chunk 1 end at 1.75
    assert clock.ends_at(1.45) == pytest.approx(1.75)


def test_clock_ignores_sub_threshold_gaps_and_waits_for_first_audio() -> None:
    clock = PlaybackClock(SR, min_stall_ms=5.0)
    clock.on_chunk(chunk(0, 100), now=0.0)
    clock.on_audio(0, 100 * MS, now=3.0)  # waiting for the first audio is not a stall
    clock.on_audio(0, 100 * MS, now=3.103)  # 3 ms late: under the threshold
    assert clock.stall_count == 0
    assert clock.first_audio_at == 3.0


def test_clock_fully_and_partly_played() -> None:
    clock = PlaybackClock(SR)
    for seq, ms in enumerate((100, 200, 300)):
        clock.on_chunk(chunk(seq, ms), now=0.0)
        clock.on_audio(seq, ms * MS, now=0.0)
    assert [c.seq for c in clock.fully_played(0.05)] == []
    assert [c.seq for c in clock.fully_played(0.1)] == [0]
    assert [c.seq for c in clock.fully_played(0.35)] == [0, 1]
    ((part, fraction),) = clock.partly_played(0.35)
    assert part.seq == 2 and fraction == pytest.approx(50 / 300)
    assert [c.seq for c in clock.unplayed(0.05)] == [1, 2]
    assert [c.seq for c in clock.fully_played(10.0)] == [0, 1, 2]


def test_clock_chunk_not_whole_until_all_its_audio_arrived() -> None:
    clock = PlaybackClock(SR)
    clock.on_chunk(chunk(0, 400), now=0.0)
    clock.on_audio(0, 100 * MS, now=0.0)  # only the first 100 ms of 400
    assert clock.fully_played(5.0) == []
    ((_part, fraction),) = clock.partly_played(5.0)
    assert fraction == pytest.approx(0.25)


def test_clock_clear_freezes_history_and_drops_stale_audio() -> None:
    clock = PlaybackClock(SR)
    clock.on_chunk(chunk(0, 100), now=0.0)
    clock.on_audio(0, 100 * MS, now=0.0)
    clock.on_chunk(chunk(1, 400), now=0.0)
    clock.on_audio(1, 200 * MS, now=0.0)
    clock.clear(now=0.2)  # heard chunk 0 and 100 of chunk 1's 400 ms
    clock.on_audio(1, 200 * MS, now=0.25)  # in flight before the server saw the clear: dropped
    clock.on_chunk(chunk(2, 300), now=0.26)  # announced before `cleared`: never played
    clock.on_audio(2, 300 * MS, now=0.26)
    clock.on_cleared(2)
    assert clock.played_ms(1.0) == pytest.approx(200)
    assert [c.seq for c in clock.fully_played(1.0)] == [0]
    ((part, fraction),) = clock.partly_played(1.0)
    assert part.seq == 1 and fraction == pytest.approx(0.25)
    assert [c.seq for c in clock.unplayed(1.0)] == [2]
    # New text after the clear plays afresh; the silence before it is not a stall.
    clock.on_chunk(chunk(3, 100), now=2.0)
    clock.on_audio(3, 100 * MS, now=2.0)
    assert clock.stall_count == 0
    assert [c.seq for c in clock.fully_played(2.2)] == [0, 3]
    assert [c.seq for c, _ in clock.partly_played(2.2)] == [1]


def test_clock_rejects_time_going_backwards() -> None:
    clock = PlaybackClock(SR)
    clock.on_audio(0, 10, now=5.0)
    with pytest.raises(ValueError):
        clock.on_audio(0, 10, now=4.0)


# ---------------------------------------------------------------- EventDecoder, URLs


def test_decoder_json_binary_frames_belong_to_latest_chunk() -> None:
    dec = EventDecoder("json")
    ready = dec.feed('{"type":"ready","protocol":1,"session":"s","voice":"v",'
                     '"sample_rate":22050,"format":"f32le","channels":1,"frame_ms":40}')
    assert isinstance(ready, Ready) and ready.format == "f32le"
    assert dec.feed('{"type":"chunk","seq":3,"text":"Hi.","start_ms":0,"duration_ms":5}') == \
        Chunk(3, "Hi.", 0, 5)
    audio = dec.feed(np.array([0.5, -0.25], dtype="<f4").tobytes())
    assert isinstance(audio, Audio) and audio.seq == 3
    assert audio.samples().dtype == np.float32
    assert audio.samples().tolist() == [0.5, -0.25]
    assert dec.feed('{"type":"flushed","seq":3}') == Flushed(3)
    assert dec.feed('{"type":"cleared","seq":-1}') == Cleared(-1)
    err = dec.feed('{"type":"error","code":"invalid_param","message":"m","fatal":false}')
    assert err == Error("invalid_param", "m", False)
    done = dec.feed('{"type":"done","stats":{"chars":3,"chunks":1,"audio_ms":5,'
                    '"ttfa_ms":null,"underrun_ms":0}}')
    assert isinstance(done, Done) and done.stats.ttfa_ms is None
    assert dec.feed('{"type":"from_the_future"}') is None


def test_decoder_msgpack_audio_carries_its_seq() -> None:
    dec = EventDecoder("msgpack")
    pcm = np.array([1, -2, 3], dtype="<i2").tobytes()
    audio = dec.feed(msgpack.packb({"type": "audio", "seq": 7, "pcm": pcm}, use_bin_type=True))
    assert isinstance(audio, Audio) and audio.seq == 7
    assert audio.samples().dtype == np.int16 and audio.samples().tolist() == [1, -2, 3]


def test_build_url_skips_none_and_keeps_existing_query() -> None:
    url = build_url("ws://h:1/v1/stream?x=1", {"voice": "v a", "speed": None, "frame_ms": 20})
    assert url == "ws://h:1/v1/stream?x=1&voice=v+a&frame_ms=20"


@pytest.mark.parametrize("base", ["ws://h:1", "ws://h:1/"])
def test_build_url_without_a_path_means_the_stream_endpoint(base: str) -> None:
    assert build_url(base, {"voice": "v"}) == "ws://h:1/v1/stream?voice=v"
    assert build_url("ws://proxy/tts/v1/stream", {}) == "ws://proxy/tts/v1/stream"


# ---------------------------------------------------------------- against a real server


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def server() -> AsyncIterator[RunningServer]:
    # Protocol checks, not the scheduler's pacing: a roomy first-audio target keeps it out of
    # the way on a slow, shared machine (see tests/e2e/server/test_websocket.py).
    async with run_server(first_audio_target_ms=2000) as srv:
        yield srv


@module_loop
async def test_synthesize_returns_int16_mono_at_voice_rate(server: RunningServer) -> None:
    # synthesize() runs its own event loop: call it off this one, where the server runs.
    rate, pcm = await asyncio.to_thread(synthesize, server.url, "Hello world.", timeout=30)
    assert rate == 22050
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert len(pcm) > rate // 4  # "Hello world." is well over a quarter second
    assert np.abs(pcm).max() > 1000  # speech, not silence


@module_loop
async def test_a_format_configured_before_the_first_text_decodes_every_frame(
        server: RunningServer) -> None:
    async with connect(server.url) as stream:  # the handshake's format: s16le
        await stream.configure(format="f32le")
        await stream.send_text("Hello there. This is a test.")
        with pytest.raises(ValueError, match="cannot change format after"):
            await stream.configure(format="s16le")  # which chunk would change is not said
        await stream.end()
        audio = [e for e in [e async for e in stream] if isinstance(e, Audio)]
    samples = np.concatenate([a.samples() for a in audio])
    assert samples.dtype == np.float32 and {a.format for a in audio} == {"f32le"}
    assert 0.05 < float(np.abs(samples).max()) <= 1.0  # speech as floats, not int16 read as f32
    assert len(samples) > 22050  # over a second of it


@module_loop
async def test_synthesize_is_not_paced_to_a_listener(server: RunningServer) -> None:
    # Nobody plays a one-shot while it arrives: its audio may be far longer than the timeout
    # (at a listener's pace, with 20 s of lookahead at most, the last of this text's ~75 s of
    # audio would come over 50 s after the first).
    text = " ".join(f"This is sentence number {i} of a long answer." for i in range(30))
    rate, pcm = await asyncio.to_thread(synthesize, server.url, text, timeout=30)
    assert len(pcm) / rate > 60


@module_loop
async def test_synthesize_timeout_names_what_it_waited_for(server: RunningServer) -> None:
    with pytest.raises(TimeoutError, match=r"did not finish \d+ characters in 0.001 s"):
        await asyncio.to_thread(synthesize, server.url, "Hello world.", timeout=0.001)


@module_loop
@pytest.mark.parametrize("encoding", ["json", "msgpack"])
async def test_events_arrive_in_spec_order(server: RunningServer, encoding: str) -> None:
    text = "Hello there. This is a short test. Goodbye."
    async with connect(server.url, encoding=encoding) as stream:
        await stream.send_text(text)
        await stream.end()
        events = [event async for event in stream]
    assert isinstance(events[0], Ready)
    assert events[0].protocol == 1 and events[0].sample_rate == 22050
    assert stream.ready == events[0]
    assert isinstance(events[-1], Done)
    assert sum(isinstance(e, Done) for e in events) == 1
    chunks = [e for e in events if isinstance(e, Chunk)]
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert " ".join(c.text for c in chunks) == text
    # protocol-v1: every frame of chunk seq comes after its `chunk` and before seq+1's.
    current = -1
    frames_per_seq: dict[int, int] = {}
    for event in events:
        if isinstance(event, Chunk):
            current = event.seq
        elif isinstance(event, Audio):
            assert event.seq == current
            frames_per_seq[event.seq] = frames_per_seq.get(event.seq, 0) + 1
    assert set(frames_per_seq) == {c.seq for c in chunks}
    done = events[-1]
    assert isinstance(done, Done)
    assert done.stats.chunks == len(chunks)
    audio_ms = sum(len(e.pcm) for e in events if isinstance(e, Audio)) / 2 / 22.05
    assert done.stats.audio_ms == pytest.approx(audio_ms, abs=len(chunks) + 1)


@module_loop
async def test_flush_speaks_unfinished_sentence_and_acknowledges(server: RunningServer) -> None:
    async with connect(server.url, encoding="msgpack") as stream:
        await stream.send_text("An unfinished thought", flush=True)
        seen: list[object] = []
        async for event in stream:
            seen.append(event)
            if isinstance(event, Flushed):
                break
        await stream.end()
        rest = [event async for event in stream]
    chunks = [e for e in seen if isinstance(e, Chunk)]
    assert [c.text for c in chunks] == ["An unfinished thought"]
    assert any(isinstance(e, Audio) for e in seen)
    assert seen[-1] == Flushed(chunks[-1].seq)
    assert isinstance(rest[-1], Done)


@module_loop
async def test_bad_voice_is_refused_with_bad_request(server: RunningServer) -> None:
    with pytest.raises(BadRequest) as info:
        async with connect(server.url, voice="no-such-voice"):
            pass
    assert info.value.status == 400
    assert "voice" in str(info.value.body)


@module_loop
async def test_api_key_and_capacity_refusals() -> None:
    async with run_server(api_keys=("s3cret",), max_streams=1) as srv:
        with pytest.raises(Unauthorized) as info:
            async with connect(srv.url):
                pass
        assert info.value.status == 401
        for in_query in (False, True):
            async with connect(srv.url, token="s3cret", token_in_query=in_query) as stream:
                await stream.end()
                events = [event async for event in stream]
            assert isinstance(events[0], Ready) and isinstance(events[-1], Done)
        # max_streams=1: while one stream is open, the next handshake gets 503 + Retry-After.
        async with connect(srv.url, token="s3cret") as held:
            assert isinstance(await anext(held), Ready)
            with pytest.raises(Unavailable) as refused:
                async with connect(srv.url, token="s3cret"):
                    pass
            assert refused.value.status == 503
            assert refused.value.retry_after_s is not None and refused.value.retry_after_s > 0


@module_loop
async def test_voice_agent_barge_in_reports_what_was_heard(server: RunningServer) -> None:
    agent = _load_voice_agent()
    # Barge in after 3 s of playback: past the first sentence (~2.2 s of audio).
    report = await agent.run_agent(server.url, barge_in_after_s=3.0, words_per_s=30.0,
                                   timeout_s=30.0)
    assert report.barged_in
    assert report.cleared is not None
    assert report.ttfa_ms is not None and report.ttfa_ms > 0
    assert len(report.fully_played) >= 1
    heard = " ".join(c.text for c in report.fully_played + report.partly_played)
    assert agent.CANNED_REPLY.startswith(heard)  # what was heard is a prefix of the reply
    assert report.done is not None  # the stream ended cleanly after the clear
    assert not report.errors


@module_loop
async def test_voice_agent_counts_text_the_server_still_held_as_not_heard(
        server: RunningServer) -> None:
    """The user barges in while the LLM is still streaming: the server still held text no
    chunk carried yet (a sentence is cut only once the next one begins, and a `listener`
    stream is chunked only as playback needs it). The agent had sent that text and it was
    never heard, but the report's "not heard" left it out."""
    agent = _load_voice_agent()
    report = await agent.run_agent(server.url, barge_in_after_s=1.0, words_per_s=20.0,
                                   timeout_s=30.0)
    assert report.barged_in
    sent = agent.CANNED_REPLY.split()[:report.words_sent]
    assert 0 < len(sent) < report.words_total  # the LLM was stopped mid-reply
    # Heard and not heard together: every word sent, in order, each once.
    assert report.words.heard.split() + report.words.unheard.split() == sent
    assert 0 < len(report.words.heard.split()) < len(sent)


def _load_voice_agent() -> Any:
    path = REPO / "clients" / "voice_agent.py"
    spec = importlib.util.spec_from_file_location("voice_agent", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["voice_agent"] = module  # dataclasses resolve annotations via sys.modules
    spec.loader.exec_module(module)
    return module
