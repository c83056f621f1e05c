"""The decode batch size histogram: the server observes each engine run; loadtest/lib/batches.py
reads it back from /metrics (the 1,000-stream run's batch report, issue 17). With it, each
step's compute by kind (litestream_step_seconds), read back as a mean per step."""

from __future__ import annotations

import pytest

from litestream.metrics import Metrics
from loadtest.lib.batches import BatchReport, parse, since, total


def test_each_run_is_observed_by_kind_and_read_back() -> None:
    m = Metrics()
    empty = parse(m.render()[0].decode())
    assert set(empty) == {"encode", "decode"}
    assert empty["decode"].runs == 0 and empty["decode"].share_batched == 0.0
    for size in (1, 1, 1, 2, 8, 8, 30, 64):
        m.run_dispatched("decode", size)
    m.run_dispatched("encode", 3)
    m.run_dispatched("nonsense", 5)  # unknown kinds are not counted, never raise
    after = parse(m.render()[0].decode())
    decode = after["decode"]
    assert decode.runs == 8 and decode.steps == 115
    assert decode.single == 3 and decode.share_batched == 5 / 8
    assert decode.by_size[2.0] == 1 and decode.by_size[8.0] == 2
    assert decode.by_size[32.0] == 1 and decode.by_size[64.0] == 1
    assert after["encode"].runs == 1 and after["encode"].steps == 3
    assert "batched 62.5%" in decode.line() and "<=8: 2" in decode.line()


def test_a_run_reports_only_its_own_batches() -> None:
    m = Metrics()
    m.run_dispatched("decode", 4)
    before = parse(m.render()[0].decode())
    m.run_dispatched("decode", 1)
    m.run_dispatched("decode", 16)
    run = since(before, parse(m.render()[0].decode()))["decode"]
    assert (run.runs, run.steps, run.single) == (2, 17, 1)
    assert run.by_size[4.0] == 0 and run.by_size[16.0] == 1
    assert since({}, {"decode": run})["decode"] == run
    assert BatchReport("decode").mean_size == 0.0


def test_each_steps_compute_is_observed_by_kind_and_read_back_per_run() -> None:
    m = Metrics()
    m.synthesized(0.040, 0.0, "encode")
    before = parse(m.render()[0].decode())
    assert before["encode"].timed == 1 and before["encode"].mean_step_ms == pytest.approx(40.0)
    m.synthesized(0.010, 0.0, "encode")
    m.synthesized(0.030, 0.0, "encode")
    for _ in range(4):  # one decode run of four windows: its 12 ms shared
        m.synthesized(0.003, 0.37, "decode")
    m.synthesized(0.5, 2.0)  # no kind: counted in the total only
    m.synthesized(0.0, 0.0, "decode")  # nothing computed (a window of no frames)
    run = since(before, parse(m.render()[0].decode()))
    assert run["encode"].timed == 2 and run["encode"].mean_step_ms == pytest.approx(20.0)
    assert run["decode"].timed == 4 and run["decode"].mean_step_ms == pytest.approx(3.0)
    assert "compute per step 3.0 ms (mean of 4)" in run["decode"].line()
    assert BatchReport("decode").mean_step_ms == 0.0 and "compute" not in (
        BatchReport("decode").line())


def test_replicas_reports_add_up_by_kind() -> None:
    a, b = Metrics(), Metrics()
    for size in (1, 2, 2):
        a.run_dispatched("decode", size)
    b.run_dispatched("decode", 2)
    b.run_dispatched("encode", 3)
    a.synthesized(0.004, 0.37, "decode")
    b.synthesized(0.002, 0.37, "decode")
    both = total([parse(a.render()[0].decode()), parse(b.render()[0].decode())])
    decode = both["decode"]
    assert (decode.runs, decode.steps, decode.single) == (4, 7, 1)
    assert decode.by_size[2.0] == 3
    assert decode.timed == 2 and decode.mean_step_ms == pytest.approx(3.0)
    assert (both["encode"].runs, both["encode"].steps) == (1, 3)
    assert total([]) == {}
