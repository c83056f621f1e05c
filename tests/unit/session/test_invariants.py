"""Every accepted sentence ends exactly once, and no stream waits forever (issue 10, Must show 2).

Hypothesis drives the real per-stream rules (`StreamSession`), the real scheduler side
(`Synthesis`: `StreamLink`s, the dispatch loop, `on_result`, the `Scheduler`) synchronously,
with random interleavings of text, flush, clear, config (speed), end, results (encode and decode
steps, successes and failures, in any order) and disconnects. Only the edges are stand-ins: a
fake clock for the loop, a fake worker pool whose batches the test completes, and a sender that
takes each outgoing item as soon as it is queued (as a fast client would).

A sentence is accepted when its session submits its seq. It ends as audio (its `chunk` event
and all the audio that event announced), `synthesis_failed`, cleared (a `cleared` event
covering its seq) or cancelled (its stream closed). Checked: no sentence ends twice, none ends
unaccepted, no audio comes for a sentence that ended, and once the pool is drained and the
clock has moved on, every sentence of every open stream has ended, every flush got its
`flushed` (or was answered by a `cleared`), and every stream that sent `end` got `done`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from litestream import config as config_mod
from litestream.engine.base import Latent
from litestream.metrics import Metrics
from litestream.protocol import Encoding, StreamSettings
from litestream.scheduler import StepKind
from litestream.session import (
    ClientFrame,
    Close,
    Disconnected,
    SendAudio,
    SendMessage,
    SessionLimits,
    StreamSession,
    SynthesisResult,
)
from litestream.synthesis import Synthesis
from litestream.synthesis.workers import WorkResult
from tests.fakes import FakeLoop, FakePool, FakeVoice

TEXTS = (
    "Hello there.",
    "One sentence. And another one, with a clause, and more words after it. ",
    "words without an end",
    " and then ",
    "A long sentence that keeps going, clause after clause, so that the segmenter has to cut "
    "it somewhere in the middle before the end arrives. ",
    "?!...",
    "   ",
)
HOP = 256  # samples per frame of the fake engine


@dataclasses.dataclass
class Tracked:
    session: StreamSession
    accepted: set[int] = dataclasses.field(default_factory=set)
    ended: dict[int, str] = dataclasses.field(default_factory=dict)
    announced_ms: dict[int, float] = dataclasses.field(default_factory=dict)
    audio_ms: dict[int, float] = dataclasses.field(default_factory=dict)
    flushes: int = 0
    flushed: int = 0
    sent_end: bool = False
    done: bool = False
    closed: bool = False


class Harness:
    def __init__(self, max_batch: int, workers: int = 2) -> None:
        self.config = config_mod.build(environ={}, workers=workers, max_batch=max_batch,
                                       max_chunk_chars=60, first_chunk_chars=40)
        fake = FakeVoice()
        self.voices = {fake.id: fake}
        self.voice = next(iter(self.voices))
        self.metrics = Metrics()
        self.synthesis = Synthesis(self.config, self.voices, self.metrics, max_batch, self.voice)
        self.loop = FakeLoop()
        self.pool = FakePool(workers)
        self.synthesis.start(self.pool, self.loop, self.deliver)  # type: ignore[arg-type]
        self.tracked: dict[str, Tracked] = {}
        self.violations: list[str] = []

    # ------------------------------------------------------------ inputs

    def open(self) -> None:
        sid = f"s{len(self.tracked)}"
        self.synthesis.open_stream(sid, "normal", self.loop.now)
        link = self.synthesis.link(sid)
        submit = link.submit

        def recording_submit(seq: int, text: str, **kw: Any) -> None:
            self.tracked[sid].accepted.add(seq)
            submit(seq, text, **kw)

        link.submit = recording_submit  # type: ignore[method-assign]
        config = self.config
        session = StreamSession(
            sid, settings=StreamSettings(voice=self.voice, format="s16le", frame_ms=40),
            encoding=Encoding.JSON,
            sample_rates={v: voice.sample_rate for v, voice in self.voices.items()},
            limits=SessionLimits(max_stream_chars=config.max_stream_chars,
                                 max_buffered_chars=config.max_buffered_chars,
                                 max_chunk_chars=config.max_chunk_chars,
                                 first_chunk_chars=config.first_chunk_chars,
                                 send_buffer_s=1e6),
            link=link, metrics=self.metrics)
        self.tracked[sid] = Tracked(session)
        self.pump()

    def live(self, index: int) -> Tracked | None:
        open_ = [t for t in self.tracked.values() if not t.closed]
        return open_[index % len(open_)] if open_ else None

    def send(self, index: int, message: dict[str, Any]) -> None:
        t = self.live(index)
        if t is None:
            return
        flushing = message["type"] == "flush" or bool(message.get("flush"))
        errors_before = self.metrics.errors.labels(code="rate_limited")._value.get()
        t.session.receive(ClientFrame(json.dumps(message)), self.loop.now)
        refused = self.metrics.errors.labels(code="rate_limited")._value.get() > errors_before
        if flushing and not refused:
            t.flushes += 1
        if message["type"] == "end" and not refused:
            t.sent_end = True
        self.synthesis.dispatch()
        self.pump()

    def disconnect(self, index: int) -> None:
        t = self.live(index)
        if t is not None:
            t.session.receive(Disconnected(), self.loop.now)
            self.close(t)
            self.pump()

    def complete(self, index: int, ok: bool) -> None:
        """A worker finishes one running batch, in any order."""
        if not self.pool.running:
            return
        batch = self.pool.running.pop(index % len(self.pool.running))
        self.pool.idle += 1
        for step in batch:
            if not ok:
                result = WorkResult(step, 0.01, error="injected")
            elif step.kind is StepKind.ENCODE:
                frames = 3 * len(step.text.strip())
                result = WorkResult(step, 0.01, latent=Latent(frames, HOP, step.speed))
            else:
                result = WorkResult(step, 0.01,
                                    audio=np.zeros(step.frames * HOP, dtype=np.float32))
            self.synthesis.on_result(result)
        self.pump()

    def tick(self, seconds: float) -> None:
        self.loop.now += seconds
        self.synthesis.dispatch()
        self.pump()

    # ------------------------------------------------------------ what the server does

    def deliver(self, stream_id: str, results: list[SynthesisResult]) -> None:
        t = self.tracked.get(stream_id)
        if t is None or t.closed:
            return
        for result in results:
            t.session.receive(result, self.loop.now)

    def close(self, t: Tracked) -> None:
        """The connection is gone: the server forgets the stream (server._finish)."""
        self.settle(t)
        t.closed = True
        for seq in t.accepted - set(t.ended):
            t.ended[seq] = "cancelled"
        self.synthesis.close_stream(t.session.id, self.loop.now)

    # ------------------------------------------------------------ the client's view

    def end(self, t: Tracked, seq: int, how: str) -> None:
        if seq not in t.accepted:
            self.violations.append(f"{t.session.id} seq {seq} ended ({how}), never accepted")
        elif seq in t.ended:
            self.violations.append(f"{t.session.id} seq {seq} ended twice: {t.ended[seq]}, "
                                   f"{how}")
        else:
            t.ended[seq] = how

    def pump(self) -> None:
        """The senders: take every outgoing item of every stream as soon as it is queued."""
        for t in list(self.tracked.values()):
            while not t.closed and (item := t.session.next_outgoing()) is not None:
                if isinstance(item, Close):
                    self.close(t)
                elif isinstance(item, SendAudio):
                    self.on_audio(t, item)
                elif isinstance(item, SendMessage):
                    self.on_message(t, json.loads(item.payload))

    def on_audio(self, t: Tracked, item: SendAudio) -> None:
        seq = item.seq
        if seq in t.ended or seq not in t.announced_ms:
            self.violations.append(f"{t.session.id} audio for seq {seq} "
                                   f"({t.ended.get(seq, 'not announced')})")
            return
        self.settle(t, before=seq)
        t.audio_ms[seq] = t.audio_ms.get(seq, 0.0) + item.audio_ms

    def settle(self, t: Tracked, before: int | None = None) -> None:
        """Sentences (before `before`) whose announced audio has all been sent end as audio.
        Settled when something later arrives: the last frame of a sentence may be tiny."""
        for seq in sorted(t.announced_ms):
            if seq in t.ended or (before is not None and seq >= before):
                continue
            if t.audio_ms.get(seq, 0.0) >= t.announced_ms[seq] - 1.0:
                self.end(t, seq, "audio")

    def on_message(self, t: Tracked, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "chunk":
            self.settle(t, before=msg["seq"])
            t.announced_ms[msg["seq"]] = float(msg["duration_ms"])
        elif kind == "error" and msg["code"] == "synthesis_failed":
            seq = int(msg["message"].split()[1])
            self.settle(t, before=seq)
            self.end(t, seq, "failed")
        elif kind == "cleared":
            self.settle(t)
            for seq in sorted(t.accepted - set(t.ended)):
                if seq <= msg["seq"]:
                    t.ended[seq] = "cleared"
            t.flushed = t.flushes  # `cleared` answers the flushes still pending
        elif kind == "flushed":
            t.flushed += 1
        elif kind == "done":
            self.settle(t)
            if t.done:
                self.violations.append(f"{t.session.id} got done twice")
            t.done = True
            unended = t.accepted - set(t.ended)
            if unended:
                self.violations.append(f"{t.session.id} done with {sorted(unended)} unended")

    def drain(self) -> None:
        """Let everything finish: complete every batch, move the clock, dispatch again."""
        ticks = 0
        while ticks < 100:
            if self.pool.running:
                self.complete(0, True)
            elif self.synthesis.scheduler.queued_sentences():
                self.tick(5.0)  # playback moves on; held (lookahead) streams become eligible
                ticks += 1
            else:
                break
        self.tick(60.0)
        for t in self.tracked.values():
            if t.closed:
                continue
            self.settle(t)
            waiting = t.accepted - set(t.ended)
            if waiting:
                self.violations.append(f"{t.session.id} waits forever for {sorted(waiting)}")
            if t.flushed != t.flushes:
                self.violations.append(f"{t.session.id}: {t.flushes} flushes, {t.flushed} "
                                       "flushed")
            if t.sent_end and not t.done:
                self.violations.append(f"{t.session.id} sent end, never got done")


speeds = st.sampled_from([0.5, 0.9, 1.0, 1.1, 1.5])
ops = st.lists(st.one_of(
    st.tuples(st.just("open")),
    st.tuples(st.just("text"), st.integers(0, 7), st.sampled_from(TEXTS), st.booleans()),
    st.tuples(st.just("flush"), st.integers(0, 7)),
    st.tuples(st.just("clear"), st.integers(0, 7)),
    st.tuples(st.just("end"), st.integers(0, 7)),
    st.tuples(st.just("speed"), st.integers(0, 7), speeds),
    st.tuples(st.just("complete"), st.integers(0, 7), st.booleans()),
    st.tuples(st.just("disconnect"), st.integers(0, 7)),
    st.tuples(st.just("tick"), st.sampled_from([0.01, 0.3, 2.0])),
), min_size=1, max_size=60)


def run_ops(max_batch: int, steps: list[tuple[Any, ...]], workers: int = 2) -> list[str]:
    h = Harness(max_batch, workers)
    for _ in range(3):
        h.open()
    for step in steps:
        kind = step[0]
        if kind == "open":
            h.open()
        elif kind == "text":
            h.send(step[1], {"type": "text", "text": step[2], "flush": step[3]})
        elif kind in ("flush", "clear", "end"):
            h.send(step[1], {"type": kind})
        elif kind == "speed":
            h.send(step[1], {"type": "config", "speed": step[2]})
        elif kind == "complete":
            h.complete(step[1], step[2])
        elif kind == "disconnect":
            h.disconnect(step[1])
        elif kind == "tick":
            h.tick(step[1])
    h.drain()
    return h.violations


# Sentences at nearby speeds queue behind a busy worker and could share a batch: the bug of
# issue 10 (a mixed-speed batch left a stream waiting forever). Random search finds this
# interleaving rarely, so it always runs.
MIXED_SPEED_BATCH: list[tuple[Any, ...]] = [
    ("speed", 1, 1.1),
    ("text", 0, "Hello there.", True),
    ("text", 1, "Hello there.", True),
    ("text", 2, "Hello there.", True),
    ("complete", 0, True),
    ("complete", 0, True),
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=ops)
@example(steps=MIXED_SPEED_BATCH)
def test_every_sentence_ends_once_without_batching(steps: list[tuple[Any, ...]]) -> None:
    assert run_ops(1, steps) == []


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=ops)
@example(steps=MIXED_SPEED_BATCH)
def test_every_sentence_ends_once_with_batching(steps: list[tuple[Any, ...]]) -> None:
    assert run_ops(4, steps, workers=1) == []


def test_the_harness_sees_a_lost_sentence() -> None:
    """The check can fail: a sentence the scheduler drops without telling its stream (what a
    mixed batch did) shows as a stream waiting forever."""
    h = Harness(max_batch=1, workers=1)
    h.open()
    h.send(0, {"type": "text", "text": "Hello there. ", "flush": True})
    [batch] = h.pool.running
    h.pool.running.clear()
    h.pool.idle += 1
    h.synthesis.scheduler.fail(batch[0], h.loop.now)  # dropped: the session never hears
    h.drain()
    assert h.violations == ["s0 waits forever for [0]", "s0: 1 flushes, 0 flushed"]
