"""litestream.client: pure parts with plain numbers, then the real thing against a real server."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

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
    Unavailable,
    build_url,
)

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


# ---------------------------------------------------------------- against a real server
