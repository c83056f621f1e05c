"""Scheduler behaviour, driven by plain calls and a fake clock (no sleeps, no event loop)."""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass

import pytest

from litestream.scheduler import ChunkJob, Priority, Scheduler, SchedulerConfig
from litestream.segmenter import Segmenter
from tests.fakes import FakeClock

APC = 0.065  # fake engine: audio seconds per char at speed 1 (the prior)
RTF = 0.072  # fake engine: compute seconds per audio second (scheduler-notes figure)


def make(workers: int = 1, **knobs: object) -> Scheduler:
    # The worked examples below use a first-audio target of 0.3 s and a 0.15 s jitter budget.
    knobs.setdefault("first_audio_target_s", 0.3)
    knobs.setdefault("jitter_s", 0.15)
    knobs.setdefault("first_chunk_slack_s", 0.0)
    return Scheduler(SchedulerConfig(**knobs), workers)  # type: ignore[arg-type]


def run(s: Scheduler, job: ChunkJob, now: float, *, send: bool = True) -> bool:
    """Complete `job` as the fake engine would, and send its audio."""
    audio = job.chars * APC / job.speed
    ok = s.complete(job, audio_s=audio, compute_s=RTF * audio, now=now)
    if ok and send:
        s.audio_sent(job.stream_id, audio, now)
    return ok


def test_thin_buffer_goes_first() -> None:
    clock = FakeClock()
    s = make()
    for sid in ("thick", "thin"):
        s.open_stream(sid, Priority.NORMAL, clock.now)
        s.audio_sent(sid, 3.0 if sid == "thick" else 0.5, clock.now)
    s.submit("thick", "x" * 30, speed=1.0, voice="v", now=clock.now)
    s.submit("thin", "x" * 30, speed=1.0, voice="v", now=clock.now)
    (job,) = s.next_jobs(clock.now)
    assert job.stream_id == "thin"
    assert job.deadline_s == pytest.approx(0.5 - 0.15)


def test_latest_start_beats_earliest_deadline() -> None:
    s = make()
    s.open_stream("short", Priority.NORMAL, 0.0)
    s.open_stream("long", Priority.NORMAL, 0.0)
    s.audio_sent("short", 1.0, 0.0)  # due at 0.85, 10 chars: ~0.05 s compute -> start by 0.80
    s.audio_sent("long", 1.1, 0.0)  # due at 0.95, 200 chars: ~0.94 s compute -> start by 0.01
    s.submit("short", "x" * 10, speed=1.0, voice="v", now=0.0)
    s.submit("long", "x" * 200, speed=1.0, voice="v", now=0.0)
    first, second = s.next_jobs(0.0)[0], s.next_jobs(0.0)[0]
    assert (first.stream_id, second.stream_id) == ("long", "short")
    assert first.deadline_s > second.deadline_s
    assert first.latest_start_s < second.latest_start_s


def test_first_chunk_due_at_arrival_plus_target_then_chained() -> None:
    clock = FakeClock()
    s = make()
    clock.advance(2.0)
    s.open_stream("a", "normal", clock.now)
    j0 = s.submit("a", "x" * 20, speed=1.0, voice="v", now=clock.now)
    j1 = s.submit("a", "x" * 20, speed=2.0, voice="v", now=clock.now)
    assert j0.deadline_s == pytest.approx(2.3)
    assert j1.deadline_s == pytest.approx(2.3 + 20 * APC - 0.15)
    assert j1.predicted_audio_s == pytest.approx(20 * APC / 2)


def test_long_text_does_not_starve_short_streams() -> None:
    clock = FakeClock()
    s = make(workers=1)
    s.open_stream("long", Priority.NORMAL, 0.0)
    for _ in range(200):
        s.submit("long", "x" * 60, speed=1.0, voice="v", now=0.0)
    waiting: dict[str, int] = {}  # short stream -> long-stream chunks handed out meanwhile
    behind: list[int] = []
    while s.queued_jobs():
        if len(behind) + len(waiting) < 10 and clock.now > 1.0 + 0.5 * len(behind):
            sid = f"short{len(behind) + len(waiting)}"
            s.open_stream(sid, Priority.NORMAL, clock.now)
            s.submit(sid, "Hi there.", speed=1.0, voice="v", now=clock.now)
            waiting[sid] = 0
        jobs = s.next_jobs(clock.now)
        if not jobs:  # the long stream is past the hard lookahead cap: wait for its listener
            wake = s.next_wakeup_s(clock.now)
            assert wake is not None and wake > clock.now
            clock.advance(wake - clock.now)
            continue
        (job,) = jobs
        if job.stream_id == "long":
            waiting = {sid: n + 1 for sid, n in waiting.items()}
        else:
            behind.append(waiting.pop(job.stream_id))
        clock.advance(job.predicted_compute_s)
        run(s, job, clock.now)
    assert len(behind) == 10 and not waiting
    assert max(behind) <= 2


def test_near_ties_go_to_least_attained_service() -> None:
    s = make(workers=1)
    for sid in ("busy", "fresh"):
        s.open_stream(sid, Priority.NORMAL, 0.0)
    for _ in range(3):
        s.submit("busy", "x" * 20, speed=1.0, voice="v", now=0.0)
        (job,) = s.next_jobs(0.0)
        run(s, job, 0.0, send=False)
    # Same deadline now; "busy" has used compute, "fresh" none, but a VTC floor lifts "fresh"
    # only to the lowest *backlogged* counter, and "busy" has nothing queued: fresh starts at 0.
    s.submit("busy", "x" * 20, speed=1.0, voice="v", now=0.0)
    s.submit("fresh", "x" * 20, speed=1.0, voice="v", now=0.0)
    assert s.next_jobs(0.0)[0].stream_id == "fresh"


def test_returning_from_idle_earns_no_credit() -> None:
    s = make(workers=1)
    for sid in ("a", "b"):
        s.open_stream(sid, Priority.NORMAL, 0.0)
    for _ in range(20):
        s.submit("a", "x" * 20, speed=1.0, voice="v", now=0.0)
    for _ in range(10):
        (job,) = s.next_jobs(0.0)
        run(s, job, 0.0, send=False)
    s.submit("b", "x" * 20, speed=1.0, voice="v", now=0.0)
    floor = s._service_floor()
    assert floor > 0.0
    assert s._streams["b"].attained_s == pytest.approx(floor)


def test_high_priority_first_at_equal_deadlines() -> None:
    s = make()
    s.open_stream("n", Priority.NORMAL, 0.0)
    s.open_stream("h", Priority.HIGH, 0.0)
    s.submit("n", "x" * 30, speed=1.0, voice="v", now=0.0)
    s.submit("h", "x" * 30, speed=1.0, voice="v", now=0.0)
    assert s.next_jobs(0.0)[0].stream_id == "h"


def test_low_priority_not_starved_by_a_stream_of_normal_arrivals() -> None:
    clock = FakeClock()
    s = make(workers=1)
    s.open_stream("low", Priority.LOW, 0.0)
    s.submit("low", "x" * 30, speed=1.0, voice="v", now=0.0)
    served_at = None
    for i in range(200):
        sid = f"n{i}"
        s.open_stream(sid, Priority.NORMAL, clock.now)
        s.submit(sid, "x" * 30, speed=1.0, voice="v", now=clock.now)
        (job,) = s.next_jobs(clock.now)
        if job.stream_id == "low":
            served_at = clock.now
            break
        clock.advance(job.predicted_compute_s)
        run(s, job, clock.now)
    assert served_at is not None
    assert served_at <= 0.3 + 0.5 + 0.2  # its deadline, plus the low shift, plus one job


def test_lookahead_cap_holds_then_serves_idle_worker_and_respects_hard_cap() -> None:
    s = make(workers=1)
    s.open_stream("full", Priority.NORMAL, 0.0)
    s.open_stream("thin", Priority.NORMAL, 0.0)
    s.audio_sent("full", 10.0, 0.0)  # 10 s buffered: over lookahead_s = 4
    s.audio_sent("thin", 1.0, 0.0)
    s.submit("full", "x" * 30, speed=1.0, voice="v", now=0.0)
    s.submit("thin", "x" * 30, speed=1.0, voice="v", now=0.0)
    s.submit("thin", "x" * 30, speed=1.0, voice="v", now=0.0)
    # Both "thin" chunks come first, though the second is due later than... it is under the cap.
    assert [s.next_jobs(0.0)[0].stream_id for _ in range(2)] == ["thin", "thin"]
    assert s.stats().held_streams == 1
    # Nothing else to do: the held one goes to the otherwise idle worker.
    assert s.next_wakeup_s(0.0) == 0.0
    (job,) = s.next_jobs(0.0)
    assert job.stream_id == "full"
    assert s.stats().lookahead_fallbacks == 1
    # Hard cap: 30 s buffered waits even for an idle worker, until it drops to 20 s.
    s.open_stream("huge", Priority.NORMAL, 0.0)
    s.audio_sent("huge", 30.0, 0.0)
    s.submit("huge", "x" * 30, speed=1.0, voice="v", now=0.0)
    assert s.next_jobs(0.0) == []
    wake = s.next_wakeup_s(0.0)
    assert wake == pytest.approx(30.0 - 20.0)
    assert s.next_jobs(wake - 0.01) == []
    assert s.next_jobs(wake)[0].stream_id == "huge"
    assert s.next_wakeup_s(wake) is None


def test_held_stream_becomes_eligible_as_its_buffer_drains() -> None:
    s = make(workers=1)
    s.open_stream("full", Priority.NORMAL, 0.0)
    s.open_stream("busy", Priority.NORMAL, 0.0)
    s.audio_sent("full", 6.0, 0.0)
    s.submit("full", "x" * 30, speed=1.0, voice="v", now=0.0)
    s.audio_sent("busy", 3.0, 0.0)
    for _ in range(50):
        s.submit("busy", "x" * 10, speed=1.0, voice="v", now=0.0)
    assert s.next_jobs(0.0)[0].stream_id == "busy"
    # At t=2.5 "full" has 3.5 s left: under the cap, and due (5.85) before busy's queue tail.
    assert all(s.next_jobs(0.0)[0].stream_id == "busy" for _ in range(3))
    picks = []
    while jobs := s.next_jobs(2.5):
        picks.append(jobs[0].stream_id)
    assert 0 < picks.index("full") <= 6


def test_admission_refuses_when_overloaded_and_accepts_when_idle() -> None:
    s = make(workers=2)
    assert s.admit(0.0).accepted
    n = 0
    while s.admit(0.0).accepted:
        sid = f"s{n}"
        s.open_stream(sid, Priority.NORMAL, 0.0)
        s.submit(sid, "x" * 40, speed=1.0, voice="v", now=0.0)
        n += 1
    # Steady demand: n x 0.072 <= 2 x 0.9; the backlog rule may stop it a little earlier.
    assert 10 <= n <= math.floor(2 * 0.9 / RTF)
    refusal = s.admit(0.0)
    assert not refusal.accepted and refusal.reason == "capacity"
    assert refusal.retry_after_s >= 1.0
    assert s.stats().refused >= 1
    # Once everything is synthesized and played out, open streams cost nothing.
    while jobs := s.next_jobs(0.0):
        run(s, jobs[0], 0.0)
    assert s.admit(100.0).accepted


def test_admission_counts_streams_that_are_playing() -> None:
    s = make(workers=1)
    for i in range(16):
        s.open_stream(f"s{i}", Priority.NORMAL, 0.0)
        s.submit(f"s{i}", "x" * 10, speed=1.0, voice="v", now=0.0)
        run(s, s.next_jobs(0.0)[0], 0.0)  # now playing 0.65 s each
        s.audio_sent(f"s{i}", 10.0, 0.0)
    assert not s.admit(1.0).accepted  # 17 x RTF > 0.9 (the learned RTF is ~0.064 here)
    assert s.admit(11.0).accepted  # all drained: idle streams are free


def test_max_streams() -> None:
    s = make(max_streams=2)
    s.open_stream("a", Priority.NORMAL, 0.0)
    s.open_stream("b", Priority.NORMAL, 0.0)
    refusal = s.admit(0.0)
    assert (refusal.accepted, refusal.reason) == (False, "streams")
    assert refusal.retry_after_s >= 1.0


def test_clear_and_close_drop_queued_and_in_flight() -> None:
    s = make(workers=2)
    s.open_stream("a", Priority.NORMAL, 0.0)
    for _ in range(5):
        s.submit("a", "x" * 30, speed=1.0, voice="v", now=0.0)
    flying = s.next_jobs(0.0)[0]
    assert s.clear("a", 0.1) == 4
    assert s.queued_jobs("a") == 0 and s.queued_jobs() == 0
    assert run(s, flying, 0.2) is False
    assert s.stats().dropped_results == 1
    # The stream stays open: its next text is a fresh first chunk, seq keeps rising.
    job = s.submit("a", "x" * 30, speed=1.0, voice="v", now=5.0)
    assert job.seq == 5
    assert job.deadline_s == pytest.approx(5.3)
    flying = s.next_jobs(5.0)[0]
    s.submit("a", "x" * 30, speed=1.0, voice="v", now=5.0)
    assert s.close_stream("a", 5.1) == 1
    assert run(s, flying, 5.2) is False
    assert s.next_jobs(6.0) == []
    assert s.stats().open_streams == 0
    with pytest.raises(KeyError):
        s.submit("a", "x", speed=1.0, voice="v", now=6.0)


def test_seq_monotonic_across_clear() -> None:
    s = make()
    s.open_stream("a", Priority.NORMAL, 0.0)
    seqs = []
    for round_ in range(4):
        for _ in range(3):
            seqs.append(s.submit("a", "x" * 10, speed=1.0, voice="v", now=float(round_)).seq)
        s.clear("a", float(round_))
    assert seqs == sorted(set(seqs)) == list(range(12))


def test_fail_releases_the_job_and_the_stream_goes_on() -> None:
    s = make()
    s.open_stream("a", Priority.NORMAL, 0.0)
    s.submit("a", "x" * 10, speed=1.0, voice="v", now=0.0)
    s.submit("a", "x" * 10, speed=1.0, voice="v", now=0.0)
    job = s.next_jobs(0.0)[0]
    s.fail(job, 0.1)
    assert s.stats().in_flight == 0
    nxt = s.next_jobs(0.1)[0]
    assert nxt.seq == 1
    assert nxt.deadline_s == pytest.approx(0.3)  # nothing ahead of it any more
    assert run(s, nxt, 0.2)


def test_complete_reports_slack_and_overruns() -> None:
    s = make()
    s.open_stream("a", Priority.NORMAL, 0.0)
    s.submit("a", "x" * 10, speed=1.0, voice="v", now=0.0)
    job = s.next_jobs(0.0)[0]
    assert s.complete(job, audio_s=0.65, compute_s=2.0, now=2.0)
    assert job.slack_s == pytest.approx(0.3 - 2.0)
    assert job.overrun
    st = s.stats()
    assert (st.overruns, st.late_completions) == (1, 1)


def test_cost_model_converges_per_voice() -> None:
    s = make()
    s.open_stream("a", Priority.NORMAL, 0.0)
    for _ in range(60):
        for voice, apc, rtf in (("slow", 0.09, 0.2), ("fast", 0.05, 0.03)):
            s.submit("a", "x" * 40, speed=1.0, voice=voice, now=0.0)
            job = s.next_jobs(0.0)[0]
            audio = 40 * apc
            s.complete(job, audio_s=audio, compute_s=0.005 + rtf * audio, now=0.0)
            s.clear("a", 0.0)  # keep the buffer empty: no lookahead cap in the way
    audio_s, compute_s = s.model.predict("slow", 40, 1.0)
    assert audio_s == pytest.approx(40 * 0.09, rel=0.01)
    assert compute_s == pytest.approx(0.005 + 0.2 * 40 * 0.09, rel=0.01)
    assert s.model.rtf("fast") == pytest.approx(0.03, rel=0.01)
    assert s.model.predict("other", 40, 2.0)[0] == pytest.approx(40 * APC / 2)


def test_batches_group_near_ties_and_stop_before_lateness() -> None:
    s = make(workers=1)
    for i in range(6):
        s.open_stream(f"s{i}", Priority.NORMAL, 0.0)
        s.submit(f"s{i}", "x" * (20 + i), speed=1.0, voice="v", now=0.0)
    s.open_stream("far", Priority.NORMAL, 0.0)
    s.audio_sent("far", 3.0, 0.0)
    s.submit("far", "x" * 20, speed=1.0, voice="v", now=0.0)
    batch = s.next_jobs(0.0, max_jobs=4)
    assert len(batch) == 4
    assert "far" not in {j.stream_id for j in batch}
    # A batch never makes its most urgent member late when it was on time alone.
    s2 = make(workers=1, batch_marginal_cost=1.0)
    for i in range(8):
        s2.open_stream(f"s{i}", Priority.NORMAL, 0.0)
        s2.submit(f"s{i}", "x" * 20, speed=1.0, voice="v", now=0.0)
    batch = s2.next_jobs(0.0, max_jobs=8)
    assert sum(j.predicted_compute_s for j in batch) <= 0.3
    assert 1 < len(batch) < 8


def test_thousands_of_streams() -> None:
    clock = FakeClock()
    s = make(workers=4)
    for i in range(3000):
        sid = f"s{i}"
        s.open_stream(sid, Priority.NORMAL, clock.now)
        s.submit(sid, "x" * 30, speed=1.0, voice="v", now=clock.now)
        s.submit(sid, "x" * 30, speed=1.0, voice="v", now=clock.now)
        clock.advance(0.0001)
    done = 0
    while jobs := s.next_jobs(clock.now):
        run(s, jobs[0], clock.now)
        clock.advance(0.001)
        done += 1
    assert done == 6000
    assert s.stats().queued_jobs == 0


# ---- playback simulation: the burst from scheduler-notes ---------------------------------


@dataclass
class SimResult:
    first_audio_s: list[float]  # per stream, seconds after its text arrived
    stalls: int  # audio arriving after the listener ran dry, after first audio
    stall_s: float


def simulate(
    cfg: SchedulerConfig, *, streams: int = 20, sentences: int = 5, workers: int = 2, seed: int = 1,
    rtf: float = RTF, shape: bool = True, sentence_chars: tuple[int, int] = (30, 45),
) -> SimResult:
    """Event by event: `streams` users open, then each sends `sentences` sentences at t=0
    through the real segmenter, shaped by the scheduler's first-chunk size and growth (unless
    `shape` is off); workers run a fake engine (compute = rtf x audio, +-10% noise); results are
    sent in seq order and played in real time from the first frame."""
    rng = random.Random(seed)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while"]

    def sentence() -> str:
        n = rng.randint(*sentence_chars)  # default ~2.5 s of audio, as in the notes
        text = ""
        while len(text) < n:
            text += rng.choice(words) + " "
        return text.strip()

    s = Scheduler(cfg, workers)
    now = 0.0
    arrivals: dict[str, list[tuple[float, float]]] = {}
    pending: dict[str, dict[int, float]] = {}
    for i in range(streams):
        s.open_stream(f"s{i}", Priority.NORMAL, now)
    for i in range(streams):
        sid = f"s{i}"
        arrivals[sid], pending[sid] = [], {}
        seg = Segmenter()
        if shape:
            knobs = s.chunk_shape(now, "v")
            seg.first_chunk_chars = knobs.first_chunk_chars
            seg.chunk_growth = knobs.chunk_growth
            seg.ramp_margin_chars = knobs.ramp_margin_chars
        text = " ".join(sentence().capitalize() + "." for _ in range(sentences))
        for chunk in seg.feed(text) + seg.flush():
            s.submit(sid, chunk, speed=1.0, voice="v", now=now)
    running: list[tuple[float, int, ChunkJob, float, float]] = []
    idle, order = workers, 0
    while True:
        while idle and (jobs := s.next_jobs(now)):
            audio = jobs[0].chars * APC
            compute = rtf * audio * rng.uniform(0.9, 1.1)
            order += 1
            heapq.heappush(running, (now + compute, order, jobs[0], audio, compute))
            idle -= 1
        wake = s.next_wakeup_s(now) if idle else None
        if not running and wake is None:
            break
        if wake is not None and (not running or wake < running[0][0]):
            now = max(now, wake)
            continue
        now, _, job, audio, compute = heapq.heappop(running)
        idle += 1
        if s.complete(job, audio_s=audio, compute_s=compute, now=now):
            sid, ready = job.stream_id, pending[job.stream_id]
            ready[job.seq] = audio
            while len(arrivals[sid]) in ready:  # the server reorders by seq before sending
                sent = ready.pop(len(arrivals[sid]))
                s.audio_sent(sid, sent, now)
                arrivals[sid].append((now, sent))
    first, stalls, stall_s = [], 0, 0.0
    for arr in arrivals.values():
        first.append(arr[0][0])
        dry_at = arr[0][0]
        for t, audio in arr:
            if t > dry_at + 1e-9:
                stalls, stall_s = stalls + 1, stall_s + t - dry_at
                dry_at = t
            dry_at += audio
    return SimResult(first, stalls, stall_s)


@pytest.mark.parametrize("seed", range(1, 7))
def test_burst_of_twenty_streams_no_stalls_and_bounded_first_audio(seed: int) -> None:
    cfg = SchedulerConfig()
    shaped = simulate(cfg, seed=seed)
    whole = simulate(cfg, seed=seed, shape=False)
    assert shaped.stalls == 0
    # Bound from the notes: the 20th first audio waits for every stream's first chunk, shared
    # by 2 workers. Once the queue holds a first-audio target's worth of urgent work, every
    # later first chunk is min_first_chunk_chars long.
    floor = cfg.chunk_overhead_s + RTF * cfg.min_first_chunk_chars * APC * 1.1
    bound = (2 * cfg.first_audio_target_s + 20 * floor) / 2
    firsts = sorted(shaped.first_audio_s)
    assert firsts[-1] <= bound
    assert firsts[18] <= 0.8  # the bar: p95 first audio of 20 listeners within 800 ms
    # Short first chunks and the ramp are what buy it: whole sentences take ~1.8 s and stall.
    assert firsts[-1] < max(whole.first_audio_s) - 0.5


def test_twenty_streams_at_the_slower_measured_rtf_overload_two_workers() -> None:
    # At RTF 0.115 (measured on the CI machine) 20 streams need 2.3 workers: no chunk shaping
    # can avoid stalls, which is why admission refuses the excess instead (test below).
    # The server calibrates the cost model at start-up, so the scheduler knows the RTF.
    calibrated = SchedulerConfig(compute_per_audio_s=0.115)
    overloaded = simulate(calibrated, seed=1, rtf=0.115)
    assert overloaded.stalls > 0
    for seed in range(1, 7):
        assert simulate(calibrated, seed=seed, rtf=0.115, streams=12).stalls == 0
    # Admission at the default target utilization lets in no more than that load.
    sched = Scheduler(calibrated, workers=2)
    admitted = 0
    while sched.admit(0.0).accepted:
        sched.open_stream(f"s{admitted}", Priority.NORMAL, 0.0)
        admitted += 1
    assert 12 <= admitted <= 13


def test_load_counts_active_streams_only() -> None:
    sched = Scheduler(SchedulerConfig(open_grace_s=0.0), workers=2)
    assert sched.load(0.0) == 0.0
    sched.open_stream("a", "normal", 0.0)
    sched.open_stream("b", "normal", 0.0)
    sched.submit("a", "Some words to speak now.", speed=1.0, voice="v", now=0.0)
    one = sched.load(0.0)
    assert one > 0.0
    sched.submit("b", "Other words to speak now.", speed=1.0, voice="v", now=0.0)
    assert sched.load(0.0) == pytest.approx(2 * one)


@pytest.mark.parametrize("seed", range(1, 4))
def test_admitted_load_of_long_texts_plays_without_stalls(seed: int) -> None:
    # The capacity benchmark's case: as many 24-sentence texts at once as admission lets in
    # at RTF 0.123 (per worker, 2 workers busy; calibrated), all starting together.
    calibrated = SchedulerConfig(compute_per_audio_s=0.123)
    result = simulate(calibrated, seed=seed, rtf=0.123, streams=13, sentences=24,
                      sentence_chars=(50, 105))
    assert result.stalls == 0
    assert sorted(result.first_audio_s)[11] <= 1.0  # p95 first audio within the 1 s bar


def test_readiness_check_counts_no_refusal() -> None:
    s = make(workers=1, max_streams=1)
    s.open_stream("a", Priority.NORMAL, 0.0)
    assert not s.has_capacity(0.0)
    assert s.stats().refused == 0
    assert not s.admit(0.0).accepted
    assert s.stats().refused == 1
