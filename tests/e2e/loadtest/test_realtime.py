"""Tests for loadtest/lib/recorder.py and loadtest/lib/streams.py: the pure accounting with plain
numbers, one run end to end.

No timing thresholds are asserted (docs/style.md: tests): only that figures exist and are
consistent.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import subprocess
import sys

import pytest

from loadtest.lib.net import free_port
from loadtest.lib.recorder import (
    NOTHING_HEARD,
    RATE_LIMIT_HINT,
    StreamRecorder,
    StreamResult,
    Summary,
    arrival_offsets,
    capacity_search,
    format_report,
    parse_arrival,
    passes,
    percentile,
    summarize,
)
from loadtest.lib.streams import check_loopback, machine_info, run_load
from loadtest.lib.texts import LONG, PARAGRAPH, text_for, words
from tests import REPO

RATE = 1000  # samples/s, s16le: 2 bytes per ms of audio


def ms_bytes(ms: float) -> int:
    return int(ms * 2)


def recorder() -> StreamRecorder:
    rec = StreamRecorder()
    rec.on_ready(RATE, "s16le")
    return rec


# ---------------------------------------------------------------- texts

def test_texts_sizes_and_tokens_round_trip() -> None:
    assert PARAGRAPH.count(". ") + 1 == 5
    assert 20 <= LONG.count(". ") + 1 <= 30
    assert "".join(words(PARAGRAPH)) == " ".join(PARAGRAPH.split())
    assert text_for("tokens") == PARAGRAPH
    with pytest.raises(ValueError):
        text_for("nope")


# ---------------------------------------------------------------- playback accounting

def test_no_stall_when_audio_arrives_ahead() -> None:
    rec = recorder()
    rec.on_text_sent(10.0)
    rec.on_chunk(0, "a", 0, 1000, 10.2)
    rec.on_audio(ms_bytes(1000), 10.25)  # 1 s of audio; plays until 11.25
    rec.on_chunk(1, "b", 1000, 1000, 10.5)
    assert rec.on_audio(ms_bytes(1000), 10.75) == 0.0  # 0.5 s still buffered
    rec.on_done()
    r = rec.result
    assert r.ttfa_ms == pytest.approx(250.0)
    assert r.stall_count == 0 and r.stall_ms == 0.0
    assert r.audio_s == pytest.approx(2.0)
    assert r.chunk_lateness_ms == [pytest.approx(-500.0)]  # early by what was buffered
    assert r.chunks == 2 and r.done


def test_stall_when_next_chunk_comes_after_buffer_ran_dry() -> None:
    rec = recorder()
    rec.on_text_sent(0.0)
    rec.on_chunk(0, "a", 0, 500, 0.1)
    rec.on_audio(ms_bytes(500), 0.1)  # dry at 0.6
    rec.on_chunk(1, "b", 500, 500, 0.8)
    assert rec.on_audio(ms_bytes(250), 0.9) == pytest.approx(300.0)
    assert rec.on_audio(ms_bytes(250), 0.95) == 0.0  # same chunk, buffer not dry
    r = rec.result
    assert r.stall_count == 1 and r.stall_ms == pytest.approx(300.0)
    assert r.chunk_lateness_ms == [pytest.approx(300.0)]
    # Playback resumed at 0.9 with 0.5 s: a frame at 1.5 finds it dry again for 0.1 s.
    rec.on_chunk(2, "c", 1000, 100, 1.5)
    assert rec.on_audio(ms_bytes(100), 1.5) == pytest.approx(100.0)
    assert rec.result.stall_count == 2
    assert rec.result.stall_ms == pytest.approx(400.0)


def test_frames_within_a_chunk_count_lateness_once() -> None:
    rec = recorder()
    rec.on_text_sent(0.0)
    rec.on_chunk(0, "a", 0, 100, 0.0)
    for i in range(5):
        rec.on_audio(ms_bytes(20), 0.01 * i)
    rec.on_chunk(1, "b", 100, 100, 0.045)
    for i in range(5):
        rec.on_audio(ms_bytes(20), 0.05 + 0.001 * i)
    assert len(rec.result.chunk_lateness_ms) == 1
    assert rec.result.chunk_lateness_ms[0] < 0


def test_ttfa_counts_from_first_text_not_later_tokens() -> None:
    rec = recorder()
    for i in range(4):
        rec.on_text_sent(1.0 + i * 0.125)
    rec.on_chunk(0, "a", 0, 100, 1.6)
    rec.on_audio(ms_bytes(100), 1.7)
    assert rec.result.ttfa_ms == pytest.approx(700.0)


def test_close_without_done_is_recorded() -> None:
    rec = recorder()
    rec.on_close(1013)
    assert rec.result.close_code == 1013
    ok = recorder()
    ok.on_done()
    ok.on_close(1000)
    assert ok.result.close_code is None


# ---------------------------------------------------------------- summary

def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    values = [float(x) for x in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile(values, 100) == 100.0
    assert percentile([3.0, 1.0, 2.0], 0) == 1.0
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def _result(i: int, **kw: object) -> StreamResult:
    r = StreamResult(index=i, start_offset_s=0.0)
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_summarize_counts_everything() -> None:
    results = [
        _result(0, ttfa_ms=100.0, audio_s=10.0, done=True, chunks=3,
                chunk_lateness_ms=[-400.0, -200.0]),
        _result(1, ttfa_ms=300.0, audio_s=10.0, done=True, chunks=3, stall_count=2,
                stall_ms=150.0, chunk_lateness_ms=[-100.0, 120.0], errors=["synthesis_failed"],
                error_messages=["chunk 2 failed"]),
        _result(2, refused_status=503),
        _result(3, refused_status=429),
        _result(4, connect_error="OSError: refused"),
        _result(5, ttfa_ms=200.0, audio_s=1.0, close_code=1013, timed_out=True, chunks=1),
    ]
    s = summarize(results, wall_s=12.5)
    assert s.streams == 6 and s.with_audio == 3 and s.completed == 2
    assert s.ttfa_p50_ms == pytest.approx(200.0) and s.ttfa_max_ms == 300.0
    assert s.stall_count == 2 and s.streams_with_stalls == 1 and s.stall_ms_total == 150.0
    assert s.refused == 2 and s.refused_by_status == {"503": 1, "429": 1}
    assert s.connect_errors == 1 and s.timed_out == 1
    assert s.errors == {"synthesis_failed": 1} and s.abnormal_closes == {"1013": 1}
    assert s.error_examples == {"synthesis_failed": "chunk 2 failed"}
    assert s.audio_s_total == pytest.approx(21.0)
    assert s.worst_chunk_lateness_ms == 120.0
    assert s.wall_s == 12.5
    assert not passes(s, 1000.0)


def test_passes_needs_clean_fast_complete_streams() -> None:
    clean = [_result(i, ttfa_ms=100.0 * (i + 1), audio_s=5.0, done=True) for i in range(3)]
    assert passes(summarize(clean, 1.0), 1000.0)
    assert not passes(summarize(clean, 1.0), 250.0)  # p95 of 100, 200, 300 is 290
    stalled = [*clean[:2], _result(2, ttfa_ms=100.0, done=True, stall_count=1, stall_ms=5.0)]
    assert not passes(summarize(stalled, 1.0), 1000.0)


# ---------------------------------------------------------------- arrivals and search

def test_arrivals() -> None:
    assert arrival_offsets(3, "burst") == [0.0, 0.0, 0.0]
    a = arrival_offsets(2000, "poisson:10", seed=7)
    assert a == arrival_offsets(2000, "poisson:10", seed=7)  # seeded
    assert a[0] == 0.0 and all(x <= y for x, y in itertools.pairwise(a))
    gaps = [y - x for x, y in itertools.pairwise(a)]
    assert sum(gaps) / len(gaps) == pytest.approx(0.1, rel=0.1)
    assert parse_arrival("poisson:2.5") == ("poisson", 2.5)
    for bad in ("poisson", "poisson:0", "poisson:x", "uniform"):
        with pytest.raises(ValueError):
            parse_arrival(bad)


def _fake_probe(capacity: int, calls: list[int]):  # type: ignore[no-untyped-def]
    async def probe(n: int) -> Summary:
        calls.append(n)
        ok = n <= capacity
        return summarize([_result(i, ttfa_ms=100.0, done=True, audio_s=1.0,
                                  stall_count=0 if ok else 1) for i in range(n)], 1.0)
    return probe


@pytest.mark.parametrize(("capacity", "start", "max_streams"),
                         [(13, 1, 64), (13, 20, 64), (0, 4, 64), (64, 8, 64), (5, 5, 64),
                          (37, 20, 64), (1, 1, 1)])
def test_capacity_search_finds_the_largest_passing_n(capacity: int, start: int,
                                                     max_streams: int) -> None:
    calls: list[int] = []
    found, probes, bounded = asyncio.run(capacity_search(
        _fake_probe(capacity, calls), target_p95_ms=1000.0, max_streams=max_streams,
        start=start))
    assert found == min(capacity, max_streams) and not bounded
    assert len(calls) == len(set(calls)) == len(probes)  # no probe repeated
    assert len(calls) <= 2 * math.ceil(math.log2(max_streams + 1)) + 2


def test_capacity_search_stops_at_deadline() -> None:
    ticks = iter(range(100))
    found, probes, bounded = asyncio.run(capacity_search(
        _fake_probe(50, []), target_p95_ms=1000.0, max_streams=64, start=1,
        deadline_s=2.5, clock=lambda: float(next(ticks))))
    assert bounded and len(probes) == 3 and found == 4


def test_loopback_only() -> None:
    check_loopback("ws://127.0.0.1:1/v1/stream")
    check_loopback("ws://localhost:1/v1/stream")
    check_loopback("ws://[::1]:1/v1/stream")
    with pytest.raises(SystemExit):
        check_loopback("ws://10.0.0.1:8765/v1/stream")


# ---------------------------------------------------------------- end to end

def test_two_streams_of_the_paragraph_against_a_real_server() -> None:
    from tests.serverutil import run_server

    async def main() -> tuple[Summary, list[StreamResult]]:
        async with run_server(workers=2) as srv:
            return await run_load(srv.url, streams=2, text="paragraph", timeout_s=120)

    summary, results = asyncio.run(main())
    assert summary.streams == 2 and summary.refused == 0 and summary.connect_errors == 0
    assert summary.with_audio == 2 and summary.completed == 2
    assert all(r.ttfa_ms is not None and r.ttfa_ms > 0 for r in results)
    assert all(r.audio_s > 1.0 and r.chunks >= 1 for r in results)
    assert summary.ttfa_p50_ms is not None and summary.ttfa_p50_ms > 0
    assert not summary.errors and not summary.abnormal_closes and summary.timed_out == 0
    assert summary.wall_s > 0 and summary.audio_s_total == pytest.approx(
        sum(r.audio_s for r in results))


def test_a_load_test_over_the_servers_text_rate_says_it_met_the_limit_not_capacity() -> None:
    # Every stream of a load test comes from one address: past the per-address text rate the
    # server refuses text with rate_limited, and the report says to widen the limits.
    from tests.serverutil import run_server

    async def main() -> tuple[Summary, list[StreamResult]]:
        async with run_server(workers=2, chars_per_s=100) as srv:
            return await run_load(srv.url, streams=4, text="paragraph", timeout_s=60)

    summary, _ = asyncio.run(main())
    assert summary.errors.get("rate_limited", 0) >= 1, summary.errors
    report = format_report(summary, {"machine": machine_info(), "url": "ws://x", "arrival": "burst",
                                     "text": "paragraph", "token_rate": 0})
    assert f"rate_limited   {RATE_LIMIT_HINT}" in report
    assert "--chars-per-s 100000000" in report


def test_a_url_without_a_path_loads_the_stream_endpoint() -> None:
    # As for litestream.client: ws://host:port means /v1/stream, not the player page (whose
    # 200 and HTML the tool counted as a refused handshake).
    from tests.serverutil import run_server

    async def main() -> Summary:
        async with run_server(workers=2) as srv:
            summary, _ = await run_load(f"ws://127.0.0.1:{srv.port}", streams=1,
                                        text="paragraph", timeout_s=120)
            return summary

    summary = asyncio.run(main())
    assert summary.refused == 0, summary.refused_by_status
    assert summary.completed == 1 and summary.with_audio == 1


def realtime_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loadtest.realtime", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_a_run_that_reaches_no_server_says_why_and_fails() -> None:
    url = f"ws://127.0.0.1:{free_port()}/v1/stream"  # nothing listens there
    run = realtime_command("--url", url, "--streams", "2")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "connect errors 2 (ConnectionRefusedError" in run.stdout, run.stdout
    assert f"nothing heard  {NOTHING_HEARD}" in run.stdout


@pytest.mark.parametrize("args, message", [
    (["--mix", "joe=nope"], "--mix: unknown text 'nope'"),
    (["--url", "http://127.0.0.1:1/v1/stream"], "--url must be a ws:// or wss://"),
    (["--token-rate", "0", "--text", "tokens"], "--token-rate must be > 0"),
    (["--timeout-s", "0"], "--timeout-s must be > 0"),
])
def test_a_bad_argument_is_a_message_not_a_traceback(args: list[str], message: str) -> None:
    run = realtime_command(*args)
    assert run.returncode != 0
    assert message in run.stderr and "Traceback" not in run.stderr, run.stderr
