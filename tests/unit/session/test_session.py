"""StreamSession with plain calls: no server, no socket, no voice, no clock.

Audio is made up (float32 arrays of a chosen length); time is a number the test passes. The
scheduler side is `RecordingLink`, which records what the session asked for; the last tests
drive the session through the real `StreamLink` and `Scheduler` instead.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import re
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from litestream.config import Config
from litestream.errors import CloseCode
from litestream.metrics import Metrics
from litestream.protocol import (
    ClearMsg,
    ConfigMsg,
    Encoding,
    EndMsg,
    FlushMsg,
    StreamSettings,
    TextMsg,
)
from litestream.scheduler import Scheduler, StepKind
from litestream.session import (
    ChunkAudio,
    ChunkFailed,
    ChunkPlanned,
    ClientFrame,
    Close,
    Disconnected,
    GoingAway,
    ReceiveTimeout,
    SendAudio,
    SendMessage,
    SendTimeout,
    SessionLimits,
    StreamSession,
    StreamState,
)
from litestream.synthesis import StreamLink, scheduler_config

RATE = 1000  # samples per second: 1 sample = 1 ms, so the arithmetic reads plainly
VOICE = "v"
FRAME_MS = 40
FRAME_BYTES = FRAME_MS * 2  # s16le at 1 kHz


@dataclass
class RecordingLink:
    """The scheduler side, as the session sees it: records every request."""

    submitted: list[tuple[int, str, str, float]] = field(default_factory=list)
    clears: int = 0
    priorities: list[str] = field(default_factory=list)
    paces: list[str] = field(default_factory=list)
    queued: list[tuple[int, float]] = field(default_factory=list)  # (seq, audio_s)
    taken_s: float = 0.0  # audio a download's client took from the outbox
    underrun: float = 0.0

    def submit(self, seq: int, text: str, *, speed: float, voice: str, now: float,
               words: bool = False) -> None:
        self.submitted.append((seq, text, voice, speed))

    def clear(self, now: float) -> None:
        self.clears += 1

    def set_priority(self, priority: str, now: float) -> None:
        self.priorities.append(priority)

    def set_pace(self, pace: str, now: float) -> None:
        self.paces.append(pace)

    def audio_taken(self, audio_s: float) -> None:
        self.taken_s += audio_s

    def audio_queued(self, seq: int, audio_s: float, nbytes: int, now: float) -> None:
        self.queued.append((seq, audio_s))

    def underrun_s(self) -> float:
        return self.underrun


def limits(**changes: Any) -> SessionLimits:
    base = {"max_stream_chars": 10_000, "max_buffered_chars": 1_000, "max_chunk_chars": 300,
            "first_chunk_chars": 0, "send_buffer_s": 30.0}
    base.update(changes)
    return SessionLimits(**base)


def make(link: Any = None, encoding: Encoding = Encoding.JSON, metrics: Metrics | None = None,
         rate_wait_s: float = 0.0, **limit_changes: Any) -> tuple[StreamSession, Any]:
    link = RecordingLink() if link is None else link
    session = StreamSession(
        "s1", settings=StreamSettings(voice=VOICE, format="s16le", frame_ms=FRAME_MS),
        encoding=encoding, sample_rates={VOICE: RATE, "w": RATE}, limits=limits(**limit_changes),
        link=link, metrics=metrics or Metrics(),
        rate_check=(lambda chars, now: rate_wait_s),
    )
    return session, link


def drain(session: StreamSession, limit: int | None = None) -> list[tuple[Any, ...]]:
    """Take items off the session's outbox (at most `limit` items, as a writer would): each
    ("event", msg) | ("audio", seq, bytes), one per frame | ("close", code, reason, abort)."""
    out: list[tuple[Any, ...]] = []
    taken = 0
    while limit is None or taken < limit:
        taken += 1
        item = session.next_outgoing()
        if item is None:
            break
        if isinstance(item, SendMessage):
            msg = (json.loads(item.payload) if session.encoding is Encoding.JSON
                   else msgpack.unpackb(item.payload))
            assert msg["type"] == item.kind
            out.append(("event", msg))
        elif isinstance(item, SendAudio):
            out += [("audio", item.seq, len(frame)) for frame in item.frames()]
        else:
            assert isinstance(item, Close)
            out.append(("close", item.code, item.reason, item.abort))
    return out


def events(items: list[tuple[Any, ...]], kind: str | None = None) -> list[dict[str, Any]]:
    return [i[1] for i in items if i[0] == "event" and (kind is None or i[1]["type"] == kind)]


def audio(ms: int) -> np.ndarray:
    return np.full(ms * RATE // 1000, 0.25, dtype=np.float32)


def result(session: StreamSession, seq: int, ms: int, now: float = 1.0) -> None:
    """Whole-chunk synthesis: plan and all audio together."""
    session.receive(ChunkPlanned(seq, f"text {seq}", ms * RATE // 1000), now)
    session.receive(ChunkAudio(seq, audio(ms), last=True), now)


def opened(**kwargs: Any) -> tuple[StreamSession, Any]:
    session, link = make(**kwargs)
    assert drain(session)[0][1]["type"] == "ready"
    return session, link


# ---------------------------------------------------------------- basics

def test_ready_comes_first_with_the_stream_settings() -> None:
    session, _ = make()
    (item,) = drain(session)
    assert item[1] == {"type": "ready", "protocol": 1, "session": "s1", "voice": VOICE,
                       "sample_rate": RATE, "format": "s16le", "channels": 1,
                       "frame_ms": FRAME_MS}
    assert session.state is StreamState.OPEN


def test_each_sentence_gets_the_next_seq_and_is_submitted() -> None:
    session, link = opened()
    session.receive(TextMsg("One two. Three four. Five"), 0.0)
    assert [(s[0], s[1]) for s in link.submitted] == [(0, "One two."), (1, "Three four.")]
    session.receive(FlushMsg(), 0.1)
    assert link.submitted[-1][:2] == (2, "Five")
    assert session.last_seq == 2


def test_results_out_of_order_go_out_in_seq_order() -> None:
    session, link = opened()
    session.receive(TextMsg("A one. B two. C three.", flush=True), 0.0)
    result(session, 2, 100)
    result(session, 1, 60)
    assert drain(session) == []  # nothing before seq 0
    result(session, 0, 80)
    items = drain(session)
    chunks = events(items, "chunk")
    assert [c["seq"] for c in chunks] == [0, 1, 2]
    assert [(c["start_ms"], c["duration_ms"]) for c in chunks] == [(0, 80), (80, 60), (140, 100)]
    audio_seqs = [i[1] for i in items if i[0] == "audio"]
    assert audio_seqs == sorted(audio_seqs)
    # Each chunk event comes right before its own frames.
    order = [("chunk", i[1]["seq"]) if i[0] == "event" and i[1]["type"] == "chunk"
             else (i[0], i[1] if i[0] == "audio" else i[1]["type"]) for i in items]
    for n, (kind, seq) in enumerate(order):
        if kind == "audio":
            last_chunk = [s for k, s in order[:n] if k == "chunk"][-1]
            assert last_chunk == seq
    assert [s for s, _ in link.queued] == [0, 1, 2]


def test_start_ms_stays_on_the_audio_sent_over_many_chunks() -> None:
    """At 22,050 Hz a chunk's length is rarely a whole ms: start_ms is rounded from the exact
    audio before it, and never from a sum of rounded lengths (which drifted 0.22 ms a chunk
    here, 33 ms after 150). duration_ms tiles the timeline, so the stats add up as well."""
    rate, samples = 22_050, 17_150  # 777.78 ms: rounded alone, 778
    session = StreamSession(
        "s1", settings=StreamSettings(voice=VOICE, format="s16le", frame_ms=FRAME_MS),
        encoding=Encoding.JSON, sample_rates={VOICE: rate}, limits=limits(max_buffered_chars=5_000),
        link=RecordingLink(), metrics=Metrics())
    count = 150
    session.receive(TextMsg("Hello there. " * count), 0.0)
    session.receive(EndMsg(), 0.0)
    items = []
    for seq in range(count):
        session.receive(ChunkPlanned(seq, "Hello there.", samples), 1.0)
        session.receive(ChunkAudio(seq, np.zeros(samples, dtype=np.float32), last=True), 1.0)
        items += drain(session)  # as the writer sends them (send_buffer_s holds 30 s)
    chunks = events(items, "chunk")
    assert len(chunks) == count
    sent_bytes = 0
    for item in items:
        if item[0] == "event" and item[1]["type"] == "chunk":
            assert item[1]["start_ms"] == round(sent_bytes / 2 * 1000 / rate)
        elif item[0] == "audio":
            sent_bytes += item[2]
    for chunk, nxt in itertools.pairwise(chunks):
        assert nxt["start_ms"] == chunk["start_ms"] + chunk["duration_ms"]
        assert abs(chunk["duration_ms"] - samples * 1000 / rate) < 1
    stats = events(items, "done")[0]["stats"]
    assert stats["audio_ms"] == round(count * samples * 1000 / rate)
    assert stats["audio_ms"] == sum(c["duration_ms"] for c in chunks)


def test_frames_hold_at_most_frame_ms_and_all_of_the_audio() -> None:
    session, _ = opened()
    session.receive(TextMsg("Some words.", flush=True), 0.0)
    result(session, 0, 130)
    sizes = [i[2] for i in drain(session) if i[0] == "audio"]
    assert sizes == [FRAME_BYTES, FRAME_BYTES, FRAME_BYTES, 10 * 2]
    assert sum(sizes) == 130 * 2


def test_the_workers_s16_pcm_goes_out_as_it_is_and_other_formats_convert_the_audio() -> None:
    # Workers convert each window to s16le off the event loop (ChunkAudio.pcm_s16): an s16le
    # stream frames those bytes; an f32le sentence converts the float audio itself.
    made_by_worker = np.arange(60, dtype="<i2").tobytes()  # not what audio(60) converts to
    session, _ = opened()
    session.receive(TextMsg("Some words.", flush=True), 0.0)
    session.receive(ChunkPlanned(0, "Some words.", 60), 0.1)
    session.receive(ChunkAudio(0, audio(60), last=True, pcm_s16=made_by_worker), 0.1)
    frames = [item.payload for item in iter(session.next_outgoing, None)
              if isinstance(item, SendAudio)]
    assert b"".join(frames) == made_by_worker
    session.receive(ConfigMsg({"format": "f32le"}), 0.2)
    session.receive(TextMsg("More words.", flush=True), 0.2)
    session.receive(ChunkPlanned(1, "More words.", 60), 0.3)
    session.receive(ChunkAudio(1, audio(60), last=True, pcm_s16=made_by_worker), 0.3)
    frames = [item.payload for item in iter(session.next_outgoing, None)
              if isinstance(item, SendAudio)]
    assert b"".join(frames) == audio(60).astype("<f4").tobytes()


def test_msgpack_audio_is_a_map_with_its_seq() -> None:
    session, _ = make(encoding=Encoding.MSGPACK)
    session.receive(TextMsg("Some words.", flush=True), 0.0)
    result(session, 0, 50)
    frames = []
    while (item := session.next_outgoing()) is not None:
        if isinstance(item, SendAudio):
            frames += [msgpack.unpackb(frame) for frame in item.frames()]
    assert [(f["type"], f["seq"], len(f["pcm"])) for f in frames] == [
        ("audio", 0, FRAME_BYTES), ("audio", 0, 10 * 2)]


def test_audio_in_pieces_is_framed_across_pieces_and_waits_for_order() -> None:
    session, _ = opened()
    session.receive(TextMsg("First one. Second one.", flush=True), 0.0)
    session.receive(ChunkPlanned(0, "First one.", 100), 0.1)
    session.receive(ChunkAudio(0, audio(30), last=False), 0.1)
    items = drain(session)
    # The chunk event goes out as soon as the length is known; 30 ms is not a whole frame yet.
    assert events(items, "chunk") == [{"type": "chunk", "seq": 0, "text": "First one.",
                                       "start_ms": 0, "duration_ms": 100}]
    assert [i for i in items if i[0] == "audio"] == []
    result(session, 1, 40)  # seq 1 complete, but seq 0 is not: it waits
    session.receive(ChunkAudio(0, audio(50), last=False), 0.2)
    assert [i for i in drain(session) if i[0] != "event"] == [("audio", 0, FRAME_BYTES),
                                                               ("audio", 0, FRAME_BYTES)]
    session.receive(ChunkAudio(0, audio(20), last=True), 0.3)
    items = drain(session)
    assert items[0] == ("audio", 0, 20 * 2)  # the carried tail of seq 0 ends it
    assert events(items, "chunk")[0]["start_ms"] == 100
    assert [i[1] for i in items if i[0] == "audio"] == [0, 1]


def test_audio_after_the_last_piece_is_an_internal_error() -> None:
    session, _ = opened()
    session.receive(TextMsg("Words. More words.", flush=True), 0.0)
    session.receive(ChunkAudio(1, audio(10), last=True), 0.2)  # waits behind seq 0
    session.receive(ChunkAudio(1, audio(10), last=True), 0.2)
    items = drain(session)
    assert events(items, "error") == [{"type": "error", "code": "internal",
                                       "message": "internal error", "fatal": True}]
    assert items[-1] == ("close", CloseCode.INTERNAL_ERROR, "internal error", False)


# ---------------------------------------------------------------- flush

def test_flushed_follows_the_frames_of_the_text_before_it() -> None:
    session, _ = opened()
    session.receive(TextMsg("An unfinished thought"), 0.0)
    session.receive(FlushMsg(), 0.0)
    assert drain(session) == []
    result(session, 0, 50)
    items = drain(session)
    assert items[-1] == ("event", {"type": "flushed", "seq": 0})
    assert [i[0] for i in items] == ["event", "audio", "audio", "event"]


def test_flush_with_nothing_spoken_is_answered_at_once() -> None:
    session, _ = opened()
    session.receive(FlushMsg(), 0.0)
    assert drain(session) == [("event", {"type": "flushed", "seq": -1})]


def test_flush_marks_wait_for_their_own_seq_only() -> None:
    session, _ = opened()
    session.receive(TextMsg("One.", flush=True), 0.0)
    session.receive(TextMsg("Two.", flush=True), 0.0)
    result(session, 1, 40)
    assert events(drain(session), "flushed") == []
    result(session, 0, 40)
    flushed = [(i[1]["type"], i[1].get("seq")) for i in drain(session) if i[0] == "event"]
    assert flushed == [("chunk", 0), ("flushed", 0), ("chunk", 1), ("flushed", 1)]


# ---------------------------------------------------------------- clear

def test_clear_drops_unsent_frames_and_start_ms_counts_what_was_sent() -> None:
    session, link = opened()
    session.receive(TextMsg("One. Two. Three.", flush=True), 0.0)
    session.receive(ChunkPlanned(0, "text 0", 200 * RATE // 1000), 1.0)
    session.receive(ChunkAudio(0, audio(80), last=False), 1.0)  # 2 frames
    session.receive(ChunkAudio(0, audio(120), last=True), 1.0)  # 3 more
    result(session, 1, 100)
    sent = drain(session, limit=2)  # chunk 0 and the first piece's two frames went out
    assert [i[0] for i in sent] == ["event", "audio", "audio"]
    session.receive(ClearMsg(), 0.5)
    assert link.clears == 1
    items = drain(session)
    assert items == [("event", {"type": "cleared", "seq": 2})]
    # Late results of cleared sentences are dropped.
    result(session, 2, 100)
    assert drain(session) == []
    session.receive(TextMsg("After.", flush=True), 0.6)
    assert link.submitted[-1][:2] == (3, "After.")
    result(session, 3, 40)
    chunk = events(drain(session), "chunk")[0]
    assert chunk["seq"] == 3 and chunk["start_ms"] == 2 * FRAME_MS
    session.receive(EndMsg(), 0.7)
    done = events(drain(session), "done")[0]
    assert done["stats"]["audio_ms"] == 2 * FRAME_MS + 40
    assert done["stats"]["chunks"] == 2  # chunk 1 was never announced to the client


def test_audio_sent_counts_what_the_writer_took_not_what_a_clear_dropped() -> None:
    metrics = Metrics()
    session, _ = opened(metrics=metrics)
    session.receive(TextMsg("One. Two.", flush=True), 0.0)
    session.receive(ChunkPlanned(0, "text 0", 200 * RATE // 1000), 1.0)
    session.receive(ChunkAudio(0, audio(80), last=False), 1.0)  # 2 frames: one item
    session.receive(ChunkAudio(0, audio(120), last=True), 1.0)  # 3 more: another
    drain(session, limit=2)  # the chunk event and the first piece's item
    items, _ = session.take_outgoing()  # and the second piece, as the WebSocket writer does
    assert [type(i) for i in items] == [SendAudio]
    result(session, 1, 100)  # queued, never taken
    session.receive(ClearMsg(), 1.5)
    drain(session)
    sent_s = metrics.registry.get_sample_value("litestream_audio_sent_seconds_total")
    assert sent_s == pytest.approx(0.200)  # chunk 0's 200 ms; chunk 1's 100 ms was dropped


def test_clear_mid_sentence_stops_every_later_piece() -> None:
    session, _ = opened()
    session.receive(TextMsg("A long sentence.", flush=True), 0.0)
    session.receive(ChunkPlanned(0, "A long sentence.", 1000), 0.1)
    session.receive(ChunkAudio(0, audio(120), last=False), 0.1)
    assert [i[0] for i in drain(session)] == ["event", "audio", "audio", "audio"]
    session.receive(ClearMsg(), 0.2)
    session.receive(ChunkAudio(0, audio(500), last=False), 0.3)
    session.receive(ChunkAudio(0, audio(380), last=True), 0.4)
    assert drain(session) == [("event", {"type": "cleared", "seq": 0})]
    session.receive(TextMsg("Next.", flush=True), 0.5)
    result(session, 1, 40)
    assert events(drain(session), "chunk")[0]["start_ms"] == 120


def test_clear_keeps_an_error_queued_before_it() -> None:
    session, _ = opened()
    session.receive(TextMsg("Words.", flush=True), 0.0)
    result(session, 0, 80)
    session.receive(ClientFrame("not json"), 0.1)
    session.receive(ClearMsg(), 0.2)
    kinds = [i[1]["type"] for i in drain(session)]
    assert kinds == ["flushed", "error", "cleared"]  # the chunk event and its frames are gone


def test_clear_before_any_text_says_cleared_minus_one() -> None:
    session, _ = opened()
    session.receive(ClearMsg(), 0.0)
    assert drain(session) == [("event", {"type": "cleared", "seq": -1})]


# ---------------------------------------------------------------- end and done

def test_end_speaks_what_is_left_then_done_then_close() -> None:
    metrics = Metrics()
    session, link = opened(metrics=metrics)
    link.underrun = 0.0125
    session.receive(TextMsg("Hello there. Unfinished"), 1.0)
    session.receive(EndMsg(), 1.1)
    assert session.state is StreamState.ENDING
    assert [s[1] for s in link.submitted] == ["Hello there.", "Unfinished"]
    result(session, 0, 100, now=1.2)
    assert events(drain(session), "done") == []
    result(session, 1, 60, now=1.3)
    items = drain(session)
    assert items[-2] == ("event", {"type": "done", "stats": {
        "chars": len("Hello there. Unfinished"), "chunks": 2, "audio_ms": 160,
        "ttfa_ms": 200, "underrun_ms": 12}})
    assert items[-1] == ("close", CloseCode.NORMAL, "done", False)
    assert session.state is StreamState.CLOSED
    assert metrics.registry.get_sample_value("litestream_ttfa_seconds_sum") == pytest.approx(0.2)


def test_end_with_nothing_to_say_is_done_at_once() -> None:
    session, _ = opened()
    session.receive(TextMsg(" ... "), 0.0)
    session.receive(EndMsg(), 0.0)
    items = drain(session)
    assert events(items, "done")[0]["stats"] == {"chars": 5, "chunks": 0, "audio_ms": 0,
                                                  "ttfa_ms": None, "underrun_ms": 0}
    assert items[-1][0] == "close"


def test_after_end_only_clear_is_accepted_and_clear_finishes_the_stream() -> None:
    session, link = opened()
    session.receive(TextMsg("One. Two. Three."), 0.0)
    session.receive(EndMsg(), 0.1)
    result(session, 0, 80)
    drain(session, limit=2)
    session.receive(TextMsg("Too late."), 0.2)
    session.receive(ClearMsg(), 0.3)
    items = drain(session)
    kinds = [i[1]["type"] if i[0] == "event" else i[0] for i in items]
    assert kinds == ["error", "cleared", "done", "close"]
    assert events(items, "error")[0]["code"] == "bad_message"
    assert events(items, "error")[0]["fatal"] is False
    assert len(link.submitted) == 3  # "Too late." was not accepted


def test_inputs_after_done_change_nothing() -> None:
    session, _ = opened()
    session.receive(EndMsg(), 0.0)
    assert drain(session)[-1][0] == "close"
    session.receive(TextMsg("Hello."), 0.1)
    result(session, 0, 40)
    assert drain(session) == []


# ---------------------------------------------------------------- failures

def test_a_failed_chunk_is_reported_in_its_place_and_the_stream_goes_on() -> None:
    metrics = Metrics()
    session, _ = opened(metrics=metrics)
    session.receive(TextMsg("One. Two. Three.", flush=True), 0.0)
    result(session, 2, 40)
    session.receive(ChunkFailed(1, "RuntimeError"), 0.1)
    result(session, 0, 40)
    session.receive(EndMsg(), 0.2)
    items = drain(session)
    kinds = [(i[1]["type"], i[1].get("seq")) for i in items if i[0] == "event"]
    assert kinds == [("chunk", 0), ("error", None), ("chunk", 2), ("flushed", 2),
                     ("done", None)]
    error = events(items, "error")[0]
    assert error == {"type": "error", "code": "synthesis_failed",
                     "message": "chunk 1 could not be synthesized", "fatal": False}
    assert "RuntimeError" not in json.dumps(error)  # engine details stay in the log
    assert events(items, "chunk")[1]["start_ms"] == 40
    assert events(items, "done")[0]["stats"]["chunks"] == 2
    assert metrics.registry.get_sample_value(
        "litestream_errors_total", {"code": "synthesis_failed"}) == 1


def test_a_sentence_failing_midway_keeps_start_ms_true() -> None:
    session, _ = opened()
    session.receive(TextMsg("One. Two.", flush=True), 0.0)
    session.receive(ChunkPlanned(0, "One.", 200), 0.1)
    session.receive(ChunkAudio(0, audio(80), last=False), 0.1)
    session.receive(ChunkFailed(0, "watchdog"), 0.2)
    result(session, 1, 40)
    items = drain(session)
    assert events(items, "error")[0]["code"] == "synthesis_failed"
    assert events(items, "chunk")[1]["start_ms"] == 80


# ---------------------------------------------------------------- limits and bad input

def test_bad_frames_get_bad_message_and_the_stream_goes_on() -> None:
    session, link = opened()
    for frame in ("not json", b"\x00\x01", '{"type": "sing"}', '{"type": "text", "text": 4}'):
        session.receive(ClientFrame(frame), 0.0)
    session.receive(ClientFrame('{"type": "config", "speed": 9}'), 0.0)
    session.receive(ClientFrame('{"type": "config", "voice": "nobody"}'), 0.0)
    codes = [e["code"] for e in events(drain(session), "error")]
    assert codes == ["bad_message"] * 4 + ["invalid_param", "invalid_voice"]
    session.receive(ClientFrame('{"type": "text", "text": "Fine.", "flush": true}'), 0.1)
    assert link.submitted[-1][1] == "Fine."
    assert session.state is StreamState.OPEN


def test_a_client_sending_garbage_is_logged_once_and_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    """The first protocol error of a stream is an INFO line; the rest are DEBUG (a fuzzer's
    thousand frames are not a thousand lines), counted for the summary line. Each line carries
    the session as a field, and a message echoing a huge value is clipped."""
    caplog.set_level(logging.DEBUG, logger="litestream.session")
    session, _ = opened()
    huge = "my diary " * 5000
    session.receive(ClientFrame(json.dumps({"type": huge})), 0.0)
    for _ in range(49):
        session.receive(ClientFrame("not json"), 0.0)
    assert len(events(drain(session), "error")) == 50
    assert session.protocol_errors == 50
    lines = [r for r in caplog.records if r.name == "litestream.session"]
    assert [r.levelno for r in lines] == [logging.INFO] + [logging.DEBUG] * 49
    assert all(r.__dict__["session"] == "s1" and "s1" not in r.getMessage() for r in lines)
    assert len(lines[0].getMessage()) < 300 and "(45" in lines[0].getMessage()


def test_log_fields_go_on_the_sessions_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="litestream.session")
    session = StreamSession(
        "s2", settings=StreamSettings(voice=VOICE, format="s16le", frame_ms=FRAME_MS),
        encoding=Encoding.JSON, sample_rates={VOICE: RATE}, limits=limits(),
        link=RecordingLink(), metrics=Metrics(), log_fields={"request_id": "req_1"})
    session.receive(ClientFrame("not json"), 0.0)
    (line,) = caplog.records
    assert line.__dict__["session"] == "s2" and line.__dict__["request_id"] == "req_1"


def test_too_much_buffered_text_is_refused_and_not_accepted() -> None:
    session, link = opened(max_buffered_chars=20)
    session.receive(TextMsg("a" * 15), 0.0)
    session.receive(TextMsg("b" * 10), 0.0)
    error = events(drain(session), "error")[0]
    assert error["code"] == "text_too_long" and error["fatal"] is False
    assert session.chars == 15
    session.receive(FlushMsg(), 0.0)
    assert link.submitted[-1][1] == "a" * 15


def test_too_much_text_in_all_is_fatal() -> None:
    session, _ = opened(max_stream_chars=30)
    session.receive(TextMsg("Short one.", flush=True), 0.0)
    session.receive(TextMsg("x" * 25), 0.0)
    items = drain(session)
    assert events(items, "error")[0] == {"type": "error", "code": "text_too_long",
                                         "message": "stream text over 30 characters",
                                         "fatal": True}
    assert items[-1] == ("close", CloseCode.POLICY, "stream text over 30 characters", False)
    assert session.close_reason == "text_too_long"
    result(session, 0, 40)  # its audio is no longer wanted
    assert drain(session) == []


def test_rate_limit_refuses_text_but_never_clear_or_end() -> None:
    session, link = opened(rate_wait_s=1.5)
    session.receive(TextMsg("Hello.", flush=True), 0.0)
    session.receive(ConfigMsg({"speed": 1.5}), 0.0)
    errors = events(drain(session), "error")
    assert [e["code"] for e in errors] == ["rate_limited", "rate_limited"]
    assert "1.5 s" in errors[0]["message"]
    assert link.submitted == [] and session.settings.speed == 1.0
    session.receive(ClearMsg(), 0.1)
    session.receive(EndMsg(), 0.1)
    kinds = [i[1]["type"] if i[0] == "event" else i[0] for i in drain(session)]
    assert kinds == ["cleared", "done", "close"]


@pytest.mark.parametrize(("wait_s", "said"), [(0.004, "0.1 s"), (0.3, "0.3 s"), (0.31, "0.4 s")])
def test_a_rate_limit_wait_is_never_said_as_zero(wait_s: float, said: str) -> None:
    session, _ = opened(rate_wait_s=wait_s)
    session.receive(TextMsg("Hello.", flush=True), 0.0)
    (error,) = events(drain(session), "error")
    assert error["message"] == f"over the message or text rate; retry in {said}"


def test_config_applies_to_text_after_it() -> None:
    session, link = opened()
    session.receive(TextMsg("Before.", flush=True), 0.0)
    session.receive(ConfigMsg({"voice": "w", "speed": 1.5, "frame_ms": 20,
                               "priority": "high"}), 0.0)
    session.receive(TextMsg("After.", flush=True), 0.0)
    assert [(s[2], s[3]) for s in link.submitted] == [(VOICE, 1.0), ("w", 1.5)]
    assert link.priorities == ["high"]
    result(session, 0, 40)
    result(session, 1, 40)
    sizes = [(i[1], i[2]) for i in drain(session) if i[0] == "audio"]
    assert sizes == [(0, FRAME_BYTES), (1, 40), (1, 40)]


# ---------------------------------------------------------------- the send buffer and lifecycle

def test_the_send_buffer_bounds_queued_audio_then_cuts_the_client_off() -> None:
    session, _ = opened(send_buffer_s=0.5)
    session.receive(TextMsg("One. Two.", flush=True), 0.0)
    session.receive(ChunkPlanned(0, "text 0", 400 * RATE // 1000), 1.0)
    session.receive(ChunkAudio(0, audio(80), last=False), 1.0)
    session.receive(ChunkAudio(0, audio(320), last=True), 1.0)
    assert session.queued_audio_ms == pytest.approx(400)
    assert not session.aborting
    drain(session, limit=2)  # the client read the chunk event and the first piece's 2 frames
    assert session.queued_audio_ms == pytest.approx(320)
    result(session, 1, 200)  # 520 ms would wait: over 0.5 s
    assert session.aborting and session.state is StreamState.DRAINING
    assert session.queued_audio_ms == 0
    assert drain(session) == [("close", CloseCode.POLICY, "slow reader", True)]
    assert session.close_reason == "slow reader"


def test_a_download_is_paced_by_its_reader_not_cut_off() -> None:
    # protocol-v1: Pace. A download's outbox may hold more than send_buffer_s (the scheduler
    # bounds it by download_buffer_s instead): a client that reads is never cut off, and
    # every frame it takes is reported, since its reading paces the synthesis.
    session, link = opened(send_buffer_s=0.5)
    session.receive(ConfigMsg({"pace": "download"}), 0.0)
    assert link.paces == ["download"]
    session.receive(TextMsg("One. Two.", flush=True), 0.0)
    result(session, 0, 400)
    result(session, 1, 600)
    assert session.queued_audio_ms == pytest.approx(1000) and not session.aborting
    items = drain(session)
    assert sum(1 for i in items if i[0] == "audio") == 25
    assert link.taken_s == pytest.approx(1.0)
    assert session.state is StreamState.OPEN


@pytest.mark.parametrize("pace", ["listener", "download"])
def test_take_outgoing_is_next_outgoing_in_one_call(pace: str) -> None:
    """The WebSocket writer takes the whole outbox at once: the same items in the same order
    as next_outgoing() one by one, the Close apart (and nothing after it), the same audio left
    queued, and for a download the same audio reported taken."""
    def feed(session: StreamSession) -> None:
        session.receive(ConfigMsg({"pace": pace}), 0.0)
        session.receive(TextMsg("One. Two. Three.", flush=True), 0.0)
        result(session, 0, 400)
        session.receive(ChunkPlanned(1, "text 1", 300), 1.0)
        session.receive(ChunkAudio(1, audio(130), last=False), 1.0)

    one, one_link = opened()
    many, many_link = opened()
    feed(one)
    feed(many)
    expected = []
    while (item := one.next_outgoing()) is not None:
        expected.append(item)
    items, close = many.take_outgoing()
    assert items == expected and close is None
    assert sum(len(i.frames()) for i in items if isinstance(i, SendAudio)) == 13  # 10 + 3
    assert many.queued_audio_ms == pytest.approx(one.queued_audio_ms) == pytest.approx(0.0)
    assert many_link.taken_s == pytest.approx(one_link.taken_s)
    assert many_link.taken_s == pytest.approx(0.52 if pace == "download" else 0.0)
    assert many.take_outgoing() == ([], None)
    # The rest of seq 1, seq 2, `done` and the Close: the Close comes apart and ends it.
    for session in (one, many):
        session.receive(ChunkAudio(1, audio(170), last=True), 2.0)
        result(session, 2, 200, now=2.0)
        session.receive(EndMsg(), 2.0)
    expected = []
    while (item := one.next_outgoing()) is not None:
        expected.append(item)
    items, close = many.take_outgoing()
    assert isinstance(expected[-1], Close) and items == expected[:-1] and close == expected[-1]
    assert any(isinstance(i, SendMessage) and i.kind == "done" for i in items)
    assert many.state is one.state is StreamState.CLOSED
    assert many_link.taken_s == pytest.approx(one_link.taken_s)
    assert many.take_outgoing() == ([], None)


def test_pace_applies_to_the_whole_stream() -> None:
    session, link = opened()
    session.receive(TextMsg("Hello"), 0.0)  # buffered text: the stream has begun
    session.receive(ConfigMsg({"pace": "download", "speed": 1.5}), 0.0)
    (error,) = events(drain(session), "error")
    assert (error["code"], error["fatal"]) == ("invalid_param", False)
    assert "before the first text" in error["message"]
    assert link.paces == [] and session.settings.pace == "listener"
    assert session.settings.speed == 1.0  # nothing of that message was applied
    session.receive(ConfigMsg({"pace": "listener"}), 0.0)  # the pace it has: fine
    assert events(drain(session), "error") == []


def test_idle_timeout_only_when_nothing_is_being_spoken() -> None:
    session, _ = opened()
    session.receive(TextMsg("Words.", flush=True), 0.0)
    session.receive(ReceiveTimeout(), 300.0)
    assert drain(session) == []  # still waiting for its audio: not idle
    result(session, 0, 40)
    session.receive(ReceiveTimeout(), 301.0)  # its frames still wait to be sent: not idle
    assert [i[0] for i in drain(session)] == ["event", "audio", "event"]
    session.receive(ReceiveTimeout(), 600.0)
    assert drain(session) == [("close", CloseCode.POLICY, "idle timeout", False)]


def test_going_away_drops_unsent_audio_and_closes_1001() -> None:
    session, _ = opened()
    session.receive(TextMsg("Words.", flush=True), 0.0)
    result(session, 0, 400)
    session.receive(GoingAway(), 1.0)
    assert drain(session) == [("close", CloseCode.GOING_AWAY, "server shutting down", False)]


def test_a_stuck_send_and_a_lost_connection_end_the_session() -> None:
    session, _ = opened()
    session.receive(TextMsg("Words.", flush=True), 0.0)
    result(session, 0, 400)
    session.receive(SendTimeout(), 11.0)
    assert session.state is StreamState.CLOSED and session.close_reason == "slow reader"
    assert drain(session) == []
    other, _ = opened()
    other.receive(Disconnected(), 1.0)
    other.receive(TextMsg("Hello."), 1.1)
    assert other.state is StreamState.CLOSED and drain(other) == []


# ---------------------------------------------------------------- a property: order and clear

@st.composite
def scripts(draw: st.DrawFn) -> list[tuple[str, int]]:
    """Random interleavings of new sentences, results (any order, in pieces), clears, reads."""
    steps = draw(st.lists(st.sampled_from(["say", "say", "piece", "piece", "piece", "clear",
                                           "read", "read", "fail"]), max_size=60))
    return [(step, draw(st.integers(0, 1_000))) for step in steps]


@settings(max_examples=300, deadline=None)
@given(scripts())
def test_frames_keep_seq_order_and_nothing_of_a_cleared_seq_follows_cleared(
        script: list[tuple[str, int]]) -> None:
    session, _ = opened()
    rng = random.Random(0)
    open_seqs: dict[int, int] = {}  # seq -> audio pieces left to deliver
    out: list[tuple[Any, ...]] = []
    now = 0.0
    for step, pick in script:
        now += 0.01
        if step == "say":
            session.receive(TextMsg(f"Sentence {pick}.", flush=True), now)
            seq = session.last_seq
            open_seqs[seq] = 1 + pick % 3
            session.receive(ChunkPlanned(seq, "x", 30 * open_seqs[seq]), now)
        elif step in ("piece", "fail") and open_seqs:
            seq = sorted(open_seqs)[pick % len(open_seqs)]
            if step == "fail":
                del open_seqs[seq]
                session.receive(ChunkFailed(seq, "boom"), now)
                continue
            open_seqs[seq] -= 1
            last = open_seqs[seq] == 0
            if last:
                del open_seqs[seq]
            session.receive(ChunkAudio(seq, audio(rng.choice([10, 30, 50])), last), now)
        elif step == "clear":
            session.receive(ClearMsg(), now)  # late pieces may still come: they must vanish
        elif step == "read":
            out.extend(drain(session, limit=1 + pick % 5))
    out.extend(drain(session))
    announced = -1
    cleared_through = -1
    last_audio = -1
    for item in out:
        if item[0] == "event" and item[1]["type"] == "chunk":
            assert item[1]["seq"] > max(announced, cleared_through)
            announced = item[1]["seq"]
        elif item[0] == "event" and item[1]["type"] == "cleared":
            cleared_through = item[1]["seq"]
        elif item[0] == "audio":
            seq = item[1]
            assert seq == announced, "audio belongs to the chunk announced last"
            assert seq > cleared_through, "no audio of a cleared seq after cleared"
            assert seq >= last_audio
            last_audio = seq
            assert item[2] <= FRAME_BYTES


# ---------------------------------------------------------------- with the real scheduler

def test_the_session_over_the_real_scheduler_link() -> None:
    """Sentences go through the real scheduler as an encode step and decode windows; the
    session hears one plan and then the windows' pieces, and clear empties the queue."""
    scheduler = Scheduler(scheduler_config(Config()), workers=1)
    scheduler.register_voice(VOICE, context_frames=4, sample_rate=RATE)
    scheduler.open_stream("s1", "normal", 0.0)
    metrics = Metrics()
    link = StreamLink(scheduler, "s1", metrics)
    session, _ = make(link=link, metrics=metrics)
    drain(session)
    session.receive(TextMsg("The first sentence. The second one.", flush=True), 0.0)
    assert scheduler.queued_sentences("s1") == 2
    now, hop, windows = 0.01, 10, 0
    while steps := scheduler.next_steps(now):
        (step,) = steps
        if step.kind is StepKind.ENCODE:
            frames = len(step.text) * 6
            assert scheduler.encoded(step, frames=frames, samples_per_frame=hop, latent=frames,
                                     compute_s=0.01, now=now)
            session.receive(ChunkPlanned(step.seq, step.text, frames * hop), now)
        else:
            pcm = audio(step.frames * hop)
            assert scheduler.decoded(step, audio_s=len(pcm) / RATE, compute_s=0.02, now=now)
            link.piece_delivered(step.seq, step.deadline_s)  # as Synthesis.on_result does
            session.receive(ChunkAudio(step.seq, pcm, last=step.last), now)
            windows += 1
        now += 0.02
    items = drain(session)
    assert [c["text"] for c in events(items, "chunk")] == ["The first sentence.",
                                                          "The second one."]
    assert windows > 2  # the sentences' audio came in several windows
    samples = hop * 6 * (len("The first sentence.") + len("The second one."))
    assert sum(item[2] for item in items if item[0] == "audio") == 2 * samples  # s16le bytes
    assert metrics.registry.get_sample_value("litestream_chunks_total") == 2
    session.receive(TextMsg("A third. A fourth.", flush=True), now)
    assert scheduler.queued_sentences("s1") == 2
    session.receive(ClearMsg(), now)
    assert scheduler.queued_sentences("s1") == 0
    session.receive(EndMsg(), now)
    assert events(drain(session), "done")[0]["stats"]["chunks"] == 2


# ---------------------------------------------------------------- word timestamps

@dataclass(frozen=True)
class SpokenWord:
    """A word's place in its chunk (the engine's `Word` shape: samples from the chunk's start)."""

    text: str
    char_start: int
    char_end: int
    start_sample: int
    end_sample: int


def planned_with_words(seq: int, text: str, ms: int) -> ChunkPlanned:
    """The chunk's words, each spread evenly over the chunk (1 sample = 1 ms at RATE)."""
    spans = [(m.start(), m.end()) for m in re.finditer(r"\w+", text)]
    step = ms // max(1, len(spans))
    return ChunkPlanned(seq, text, ms * RATE // 1000, tuple(
        SpokenWord(text[a:b], a, b, i * step + 1, (i + 1) * step)
        for i, (a, b) in enumerate(spans)))


@pytest.mark.parametrize("encoding", [Encoding.JSON, Encoding.MSGPACK])
def test_words_follow_their_chunk_before_its_audio(encoding: Encoding) -> None:
    session, _ = opened(encoding=encoding)
    session.receive(ConfigMsg({"timestamps": "word"}), 0.0)
    session.receive(TextMsg("Hello there. Good day.", flush=True), 0.0)
    session.receive(planned_with_words(0, "Hello there.", 100), 0.1)
    session.receive(ChunkAudio(0, audio(100), last=True), 0.1)
    session.receive(planned_with_words(1, "Good day.", 80), 0.2)
    session.receive(ChunkAudio(1, audio(80), last=True), 0.2)
    items = drain(session)
    kinds = [i[1]["type"] if i[0] == "event" else i[0] for i in items]
    assert kinds == ["chunk", "words", "audio", "audio", "audio",
                     "chunk", "words", "audio", "audio", "flushed"]
    first, second = events(items, "words")
    # Times on the stream's audio timeline: the second chunk's start_ms is added.
    assert first == {"type": "words", "seq": 0, "words": [
        {"text": "Hello", "start_ms": 1, "end_ms": 50, "char_start": 0, "char_end": 5},
        {"text": "there", "start_ms": 51, "end_ms": 100, "char_start": 6, "char_end": 11}]}
    assert events(items, "chunk")[1]["start_ms"] == 100
    assert [(w["text"], w["start_ms"], w["end_ms"]) for w in second["words"]] == [
        ("Good", 101, 140), ("day", 141, 180)]


def test_words_after_clear_and_flush_count_the_audio_sent() -> None:
    session, _ = opened()
    session.receive(ConfigMsg({"timestamps": "word"}), 0.0)
    session.receive(TextMsg("One two three. Four five.", flush=True), 0.0)
    session.receive(planned_with_words(0, "One two three.", 120), 0.1)
    session.receive(ChunkAudio(0, audio(40), last=False), 0.1)
    session.receive(ChunkAudio(0, audio(80), last=True), 0.1)
    drain(session, limit=3)  # chunk, words and the first piece, one frame (40 ms), went out
    session.receive(planned_with_words(1, "Four five.", 80), 0.2)
    session.receive(ClearMsg(), 0.3)
    items = drain(session)
    assert events(items, "words") == []  # unsent, dropped with its chunk and audio
    session.receive(TextMsg("Six seven.", flush=True), 0.4)
    session.receive(planned_with_words(2, "Six seven.", 60), 0.5)
    session.receive(ChunkAudio(2, audio(60), last=True), 0.5)
    items = drain(session)
    (chunk,) = events(items, "chunk")
    (words,) = events(items, "words")
    assert chunk["start_ms"] == 40  # only the frame sent counts
    assert [(w["start_ms"], w["end_ms"]) for w in words["words"]] == [(41, 70), (71, 100)]
    assert all(chunk["start_ms"] <= w["start_ms"] <= w["end_ms"]
               <= chunk["start_ms"] + chunk["duration_ms"] for w in words["words"])


def test_words_only_for_text_after_the_config_and_never_unasked() -> None:
    session, _ = opened()
    session.receive(TextMsg("Unasked words.", flush=True), 0.0)
    session.receive(planned_with_words(0, "Unasked words.", 40), 0.1)
    session.receive(ChunkAudio(0, audio(40), last=True), 0.1)
    items = drain(session)
    assert events(items, "words") == []
    assert events(items, "chunk") == [{"type": "chunk", "seq": 0, "text": "Unasked words.",
                                       "start_ms": 0, "duration_ms": 40}]
    session.receive(ConfigMsg({"timestamps": "word"}), 0.2)
    session.receive(TextMsg("Asked.", flush=True), 0.2)
    session.receive(ChunkPlanned(1, "Asked.", 40), 0.3)  # no words known: an empty list
    session.receive(ChunkAudio(1, audio(40), last=True), 0.3)
    assert events(drain(session), "words") == [{"type": "words", "seq": 1, "words": []}]
    session.receive(ConfigMsg({"timestamps": "none"}), 0.4)
    session.receive(TextMsg("Off again.", flush=True), 0.4)
    result(session, 2, 40)
    assert events(drain(session), "words") == []


def test_bad_timestamps_value_is_refused() -> None:
    session, _ = opened()
    session.receive(ClientFrame(json.dumps({"type": "config", "timestamps": "phoneme"})), 0.0)
    session.receive(ClientFrame(json.dumps({"type": "config", "timestamps": True})), 0.0)
    assert [e["code"] for e in events(drain(session), "error")] == ["invalid_param",
                                                                   "bad_message"]


def test_a_flood_of_bad_messages_is_answered_whole_but_logged_only_at_first(
        caplog: pytest.LogCaptureFixture) -> None:
    """Every bad message gets its error (and is counted), but a client sending thousands a
    second cannot fill the server's logs (300,000 lines, 40 MB, in ten seconds from one client
    before): a stream logs its first at INFO, the rest at DEBUG, counted for its summary."""
    session, _ = make()
    with caplog.at_level(logging.INFO, logger="litestream.session"):
        for i in range(1000):
            session.receive(ClientFrame(json.dumps({"type": f"bogus{i}"})), 0.0)
    errors = [m for kind, m in (item[:2] for item in drain(session)) if kind == "event"
              and m["type"] == "error"]
    assert len(errors) == 1000 and session.state is StreamState.OPEN
    logged = [r for r in caplog.records if r.name == "litestream.session"]
    assert len(logged) == 1
    assert session.protocol_errors == 1000


def test_a_voice_that_makes_chunks_whole_gets_its_first_clauses_as_chunks() -> None:
    """A short first sentence plays while the next is made; for a voice whose audio exists
    only once the whole chunk is (Kokoro), the run's first clauses are chunks of their own, so
    the listener waits for one clause, not a whole long sentence (2 s of silence on a CPU)."""
    text = ("はい。東京では午後から雨が降るかもしれませんので、"
            "出かける際には傘を持っていくことをおすすめします。")
    said = {}
    for whole in (frozenset(), frozenset({"jf"})):
        link = RecordingLink()
        session = StreamSession(
            "s1", settings=StreamSettings(voice="jf", format="s16le", frame_ms=FRAME_MS),
            encoding=Encoding.JSON, sample_rates={"jf": 24_000}, languages={"jf": "ja"},
            whole_chunk_voices=whole, limits=limits(first_chunk_chars=80), link=link,
            metrics=Metrics())
        session.receive(TextMsg(text), 0.0)
        session.receive(EndMsg(), 0.0)
        said[whole] = [submitted[1] for submitted in link.submitted]
    assert said[frozenset()] == ["はい。", text[3:]]
    assert said[frozenset({"jf"})] == ["はい。", "東京では午後から雨が降るかもしれませんので、",
                                       "出かける際には傘を持っていくことをおすすめします。"]
