"""Every accepted chunk ends exactly once, and no stream waits forever (issue 10, Must show 2).

Hypothesis drives the server's own per-stream rules and the real Scheduler, synchronously:
messages go through `LitestreamServer._on_frame`, results through `_on_result`, disconnects
through `_finish`, dispatch through `_dispatch`. Only the edges are stand-ins: a fake clock for
the loop, a fake worker pool whose batches the test completes (audio or failure) in any order,
and a sender that takes each outbox item as soon as it is queued.

A chunk is accepted when the scheduler hands it a seq. It ends as audio (its `chunk` event),
`synthesis_failed`, cleared (a `cleared` event covering its seq) or cancelled (its stream
closed). Checked: no chunk ends twice, none ends unaccepted, and once the pool is drained and
the clock has moved on, every chunk of every open stream has ended, every flush got its
`flushed`, and every stream that sent `end` got `done`.

Branch `session` moves these rules into litestream/session.py (StreamSession); this test then
drives StreamSession + Scheduler instead of the server's methods.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from litestream import config as config_mod
from litestream.errors import ProtocolError
from litestream.logs import SessionAdapter
from litestream.protocol import Encoding
from litestream.scheduler import ChunkJob
from litestream.segmenter import Segmenter
from litestream.server import _CLOSE, LitestreamServer, Stream, _Audio
from litestream.workers import WorkResult
from tests.serverutil import shared_voices

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


class FakeLoop:
    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Any, *args: Any) -> Any:
        return _Handle()  # wake-ups are replaced by the driver's ticks


class _Handle:
    def cancel(self) -> None:
        pass


class FakePool:
    """Workers that hold batches until the test completes them."""

    def __init__(self, workers: int) -> None:
        self.idle = workers
        self.running: list[list[ChunkJob]] = []

    def dispatch(self, jobs: list[ChunkJob]) -> None:
        assert self.idle > 0, "dispatch to a busy pool"
        self.idle -= 1
        self.running.append(list(jobs))


class FakeWs:
    close_code: int | None = None


@dataclasses.dataclass
class Tracked:
    stream: Stream
    accepted: set[int] = dataclasses.field(default_factory=set)
    ended: dict[int, str] = dataclasses.field(default_factory=dict)
    flushes: int = 0
    flushed: int = 0
    ended_stream: bool = False  # `end` accepted
    done: bool = False
    closed: bool = False


class Harness:
    def __init__(self, max_batch: int, workers: int = 2) -> None:
        config = config_mod.build(environ={}, workers=workers, max_batch=max_batch,
                                  messages_per_s=1e6, chars_per_s=1e9, max_chunk_chars=60)
        self.server = LitestreamServer(config, voices=shared_voices())
        self.loop = FakeLoop()
        self.pool = FakePool(workers)
        self.server._loop = self.loop  # type: ignore[assignment]
        self.server._pool = self.pool  # type: ignore[assignment]
        self.server._max_batch = max_batch
        self.tracked: dict[str, Tracked] = {}
        self.violations: list[str] = []
        submit = self.server.scheduler.submit

        def recording_submit(stream_id: str, text: str, **kw: Any) -> ChunkJob:
            job = submit(stream_id, text, **kw)
            self.tracked[stream_id].accepted.add(job.seq)
            return job

        self.server.scheduler.submit = recording_submit  # type: ignore[method-assign]

    def open(self) -> None:
        sid = f"s{len(self.tracked)}"
        server = self.server
        stream = Stream(id=sid, ws=FakeWs(), encoding=Encoding.JSON,  # type: ignore[arg-type]
                        settings=server._defaults,
                        segmenter=Segmenter(max_chars=server.config.max_chunk_chars),
                        client="client", log=SessionAdapter(logging.getLogger("t"), sid),
                        sample_rate=22050)
        server.scheduler.open_stream(sid, "normal", self.loop.now)
        server.streams[sid] = stream
        self.tracked[sid] = Tracked(stream)

    def live(self, index: int) -> Tracked | None:
        open_ = [t for t in self.tracked.values() if not t.closed]
        return open_[index % len(open_)] if open_ else None

    def end_chunk(self, t: Tracked, seq: int, how: str) -> None:
        if seq not in t.accepted:
            self.violations.append(f"{t.stream.id} seq {seq} ended ({how}) but never accepted")
        elif seq in t.ended:
            self.violations.append(f"{t.stream.id} seq {seq} ended twice: {t.ended[seq]}, {how}")
        else:
            t.ended[seq] = how

    def send(self, index: int, message: dict[str, Any]) -> None:
        t = self.live(index)
        if t is None:
            return
        if message["type"] == "flush" or message.get("flush"):
            t.flushes += 1
        try:
            self.server._on_frame(t.stream, json.dumps(message))
        except ProtocolError as exc:  # refused, and said so: nothing of it was accepted
            if message["type"] == "flush" or message.get("flush"):
                t.flushes -= 1
            assert not exc.fatal, exc
            return
        if message["type"] == "end":
            t.ended_stream = True
        self.pump()

    def disconnect(self, index: int) -> None:
        t = self.live(index)
        if t is None:
            return
        self.close(t)
        self.pump()

    def close(self, t: Tracked) -> None:
        t.closed = True
        for seq in t.accepted - set(t.ended):
            t.ended[seq] = "cancelled"
        self.server._finish(t.stream)

    def complete(self, index: int, ok: bool) -> None:
        if not self.pool.running:
            return
        batch = self.pool.running.pop(index % len(self.pool.running))
        self.pool.idle += 1
        for job in batch:
            audio = np.zeros(2205 * (1 + len(job.text) // 20), dtype=np.float32) if ok else None
            self.server._on_result(WorkResult(job, audio, 0.01))
        self.pump()

    def tick(self, seconds: float) -> None:
        self.loop.now += seconds
        self.server._dispatch()
        self.pump()

    def pump(self) -> None:
        """The senders: take every queued item of every stream, as it is queued."""
        for t in list(self.tracked.values()):
            outbox = t.stream.outbox
            while not outbox.empty():
                item = outbox.get_nowait()
                if item is _CLOSE or isinstance(item, tuple):
                    if not t.closed:
                        self.close(t)
                    continue
                payload = item.payload if isinstance(item, _Audio) else item
                if isinstance(payload, bytes):
                    continue  # an audio frame
                msg = json.loads(payload)
                kind = msg["type"]
                if kind == "chunk":
                    self.end_chunk(t, msg["seq"], "audio")
                elif kind == "error" and msg["code"] == "synthesis_failed":
                    self.end_chunk(t, int(msg["message"].split()[1]), "failed")
                elif kind == "cleared":
                    for seq in sorted(t.accepted - set(t.ended)):
                        if seq <= msg["seq"]:
                            t.ended[seq] = "cleared"
                    t.flushed = t.flushes  # `cleared` answers the flushes still pending
                elif kind == "flushed":
                    t.flushed += 1
                elif kind == "done":
                    if t.done:
                        self.violations.append(f"{t.stream.id} got done twice")
                    t.done = True
                    unended = t.accepted - set(t.ended)
                    if unended:
                        self.violations.append(f"{t.stream.id} done with {sorted(unended)} "
                                               "not ended")

    def drain(self) -> None:
        """Let everything finish: complete every batch, move the clock, dispatch again."""
        for _ in range(2000):
            if self.pool.running:
                self.complete(0, True)
            elif self.server.scheduler.queued_jobs():
                self.tick(5.0)  # playback moves on; held (lookahead) streams become eligible
            else:
                break
        self.tick(60.0)
        for t in self.tracked.values():
            if t.closed:
                continue
            waiting = t.accepted - set(t.ended)
            if waiting:
                self.violations.append(f"{t.stream.id} waits forever for {sorted(waiting)}")
            if t.flushed != t.flushes:
                self.violations.append(f"{t.stream.id}: {t.flushes} flushes, {t.flushed} "
                                       "flushed")
            if t.ended_stream and not t.done:
                self.violations.append(f"{t.stream.id} sent end, never got done")


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


# Two first chunks at nearby speeds queue behind a busy worker and share a batch. Random
# search finds this rarely, so it always runs.
MIXED_SPEED_BATCH: list[tuple[Any, ...]] = [
    ("speed", 1, 1.1),
    ("text", 0, "Hello there.", True),
    ("text", 1, "Hello there.", True),
    ("text", 2, "Hello there.", True),
    ("complete", 0, True),
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=ops)
@example(steps=MIXED_SPEED_BATCH)
def test_every_chunk_ends_once_without_batching(steps: list[tuple[Any, ...]]) -> None:
    assert run_ops(1, steps) == []


@pytest.mark.xfail(strict=True, reason=(
    "server._dispatch fails the second voice/speed group of a mixed batch in the scheduler "
    "only; the stream is never told and waits forever (issue 10). Branch sched makes batches "
    "homogeneous; the one-line fix in server.py is pool.dispatch(jobs) (the worker now runs "
    "one engine run per voice and speed of a batch)"))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=ops)
@example(steps=MIXED_SPEED_BATCH)
def test_every_chunk_ends_once_with_batching(steps: list[tuple[Any, ...]]) -> None:
    assert run_ops(4, steps, workers=1) == []
