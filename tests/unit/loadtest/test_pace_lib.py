"""loadtest/lib/pace.py's pure parts: the burst's compute floor read from the server's DEBUG
lines, and the download text."""

from __future__ import annotations

import logging

import pytest

from litestream.logs import JsonFormatter, PlainFormatter
from loadtest.lib.pace import StepLine, burst_floor_s, campaign_texts, download_text, step_lines

_LINE = ("2026-12-05 DEBUG litestream.synthesis session={} seq=0 {} frames={} took {} ms,"
         " predicted 30.0 ms")
LOG = "\n".join(_LINE.format(*row) for row in [
    ("aaa", "encode", 0, 18.0), ("bbb", "encode", 0, 20.0), ("aaa", "decode", 32, 32.0),
    ("aaa", "decode", 96, 80.0), ("bbb", "decode", 32, 30.0), ("ccc", "decode", 32, 99.0)])


def test_the_floor_is_each_streams_first_encode_and_window_over_the_workers() -> None:
    # aaa: 18 + 32, bbb: 20 + 30; aaa's second window and ccc (no encode seen: it started
    # before the burst) are not first audio.
    floor, streams = burst_floor_s(LOG, workers=2)
    assert streams == 2
    assert floor == pytest.approx((18 + 32 + 20 + 30) / 1000 / 2)


def test_the_short_floor_counts_longer_first_windows_as_short_ones() -> None:
    # ddd's first window ran 64 frames (a burst's start): counted as the burst's 32-frame
    # first windows' median (32 and 30 ms: 31); with none to measure, scaled by frames plus
    # context margins.
    log = LOG + "\n" + "\n".join(_LINE.format(*row) for row in [
        ("ddd", "encode", 0, 19.0), ("ddd", "decode", 64, 50.0)])
    floor, streams = burst_floor_s(log, workers=2, first_frames=32)
    assert streams == 3
    assert floor == pytest.approx((18 + 32 + 20 + 30 + 19 + 31) / 1000 / 2)
    assert burst_floor_s(log, workers=2)[0] == pytest.approx((18 + 32 + 20 + 30 + 19 + 50)
                                                             / 1000 / 2)
    alone = "\n".join(_LINE.format(*row) for row in [("ddd", "encode", 0, 19.0),
                                                      ("ddd", "decode", 64, 49.0)])
    floor, _ = burst_floor_s(alone, workers=1, first_frames=32)
    assert floor == pytest.approx((19 + 49 * (32 + 34) / (64 + 34)) / 1000)


def _step_record(session: str, kind: str, frames: int, took_ms: float) -> logging.LogRecord:
    """A step's DEBUG record as synthesis/dispatcher.py logs it (tests/e2e/server/test_logs.py
    checks the server's own lines against step_lines)."""
    record = logging.LogRecord("litestream.synthesis", logging.DEBUG, __file__, 1, "step", (),
                               None)
    record.__dict__.update(session=session, seq=0, kind=kind, frames=frames, took_ms=took_ms,
                           predicted_ms=30.0)
    return record


@pytest.mark.parametrize("formatter", [PlainFormatter(), JsonFormatter()])
def test_step_lines_read_the_fields_of_this_trees_lines(formatter: logging.Formatter) -> None:
    rows = [("aaa", "encode", 0, 18.0), ("aaa", "decode", 32, 32.5)]
    log = "\n".join([formatter.format(_step_record(*row)) for row in rows]
                    + ["2026-12-05 INFO litestream.server [aaa] stream done chars=3"])
    assert step_lines(log) == [StepLine(*row) for row in rows]
    assert burst_floor_s(log, workers=1) == (pytest.approx(0.0505), 1)


def test_step_lines_read_an_older_trees_json_lines() -> None:
    line = ('{"ts":"x","level":"DEBUG","logger":"litestream.synthesis","msg":"session=abc seq=1 '
            'decode frames=64 took 12.5 ms, predicted 30.0 ms"}')
    assert step_lines(line) == [StepLine("abc", "decode", 64, 12.5)]


def test_texts() -> None:
    text = download_text(2500)
    assert 2500 <= len(text) < 2700 and text.endswith(".")
    texts = campaign_texts(3)
    assert len(set(texts)) == 3
