"""Scheduler behaviour, driven by plain calls and a fake clock (no sleeps, no event loop).

Units are synthesis steps: a sentence's encode step, then its decode windows in order. The fake
engine (tests/fakes/simulator.py) has the bundled voice's measured figures; the scheduler's cost
model starts from the same priors, so predictions here are exact unless a test says otherwise."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from litestream.scheduler import (
    AdmissionReason,
    Pace,
    Priority,
    Scheduler,
    SchedulerConfig,
    SynthesisStep,
)
from litestream.scheduler._admission import RETRY_PRICE_EVERY_S
from litestream.scheduler.costmodel import CostModel, StepKind, context_sides
from loadtest.lib.texts import LONG, PARAGRAPH
from tests.fakes import (
    APF,
    CONTEXT_FRAMES,
    DECODE_OVERHEAD_S,
    DECODE_PER_FRAME_S,
    ENCODE_OVERHEAD_S,
    ENCODE_PER_CHAR_S,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    VOICE,
    FakeClock,
    config,
    simulate,
)
from tests.fakes import price_step as price
from tests.fakes import run_step as run


def make(workers: int = 1, **knobs: float) -> Scheduler:
    # The worked examples use a first-audio target of 0.3 s, no slack, a 0.15 s jitter budget.
    knobs.setdefault("first_audio_target_s", 0.3)
    knobs.setdefault("first_audio_slack_s", 0.0)
    s = Scheduler(config(**knobs), workers)
    s.register_voice(VOICE, context_frames=CONTEXT_FRAMES, sample_rate=SAMPLE_RATE)
    return s


def submit(s: Scheduler, sid: str, seq: int, chars: int, now: float, *,
           speed: float = 1.0, voice: str = VOICE) -> SynthesisStep:
    return s.submit(sid, seq, "x" * chars, speed=speed, voice=voice, now=now)


def drain(s: Scheduler, clock: FakeClock, max_steps: int = 1) -> list[SynthesisStep]:
    """Run every step to the end on one worker, the clock moving by each step's compute."""
    done: list[SynthesisStep] = []
    while True:
        steps = s.next_steps(clock.now, max_steps)
        if not steps:
            wake = s.next_wakeup_s(clock.now)
            if wake is None:
                return done
            clock.advance(max(wake - clock.now, 0.0))
            continue
        clock.advance(max(price(s, step) for step in steps))
        for step in steps:
            assert run(s, step, clock.now)
        done += steps


# ---- order of steps --------------------------------------------------------------------------


def test_a_sentence_is_its_encode_step_then_windows_in_order() -> None:
    clock = FakeClock()
    s = make()
    s.open_stream("a", Priority.NORMAL, clock.now)
    encode = submit(s, "a", 7, 45, clock.now)  # 184 frames
    assert (encode.kind, encode.seq) == (StepKind.ENCODE, 7)
    steps: list[SynthesisStep] = []
    while step := next(iter(s.next_steps(clock.now)), None):
        assert s.next_steps(clock.now) == []  # one step of a stream in flight at a time
        clock.advance(step.predicted_compute_s)
        assert run(s, step, clock.now)
        steps.append(step)
    assert steps[0] is encode
    windows = steps[1:]
    assert all(w.kind is StepKind.DECODE and w.seq == 7 for w in windows)
    assert all(w.latent == ("latent", "a", 7) for w in windows)
    starts = [w.start_frame for w in windows]
    assert starts == [sum(w.frames for w in windows[:i]) for i in range(len(windows))]
    assert sum(w.frames for w in windows) == 184
    assert [w.last for w in windows] == [False] * (len(windows) - 1) + [True]
    # The first window is small (first audio fast); later ones grow as the buffer fills.
    # The last window is whatever is left of the sentence.
    assert windows[0].frames == s.config.first_window_frames
    grown = [w.frames for w in windows[:-1]]
    assert grown == sorted(grown) and len(grown) >= 2
    assert grown[-1] > 2 * windows[0].frames
    assert s.queued_sentences() == 0


def test_sentences_of_a_stream_run_in_order() -> None:
    clock = FakeClock()
    s = make(workers=2)
    s.open_stream("a", Priority.NORMAL, 0.0)
    for seq, chars in enumerate((40, 12, 60)):
        submit(s, "a", seq, chars, 0.0)
    order = [(step.seq, step.kind, step.start_frame) for step in drain(s, clock)]
    assert order == sorted(order, key=lambda o: (o[0], o[1] is StepKind.DECODE, o[2]))
    assert [o for o in order if o[1] is StepKind.ENCODE] == [
        (seq, StepKind.ENCODE, 0) for seq in range(3)
    ]


def test_thin_buffer_goes_first() -> None:
    s = make()
    for sid, buffered in (("thick", 3.0), ("thin", 0.5)):
        s.open_stream(sid, Priority.NORMAL, 0.0)
        s.audio_sent(sid, buffered, 0.0)
        submit(s, sid, 0, 30, 0.0)
    (step,) = s.next_steps(0.0)
    assert step.stream_id == "thin"
    # An encode step is due before its first window: the buffer's end, less jitter, less
    # the window's compute.
    first_window = s.model.price(VOICE, StepKind.DECODE, s.config.first_window_frames)
    assert step.deadline_s == pytest.approx(0.5 - 0.15 - first_window, abs=0.03)


def test_latest_start_beats_earliest_deadline() -> None:
    s = make()
    for sid, buffered, chars in (("short", 1.0, 10), ("long", 1.2, 600)):
        s.open_stream(sid, Priority.NORMAL, 0.0)
        s.audio_sent(sid, buffered, 0.0)
        submit(s, sid, 0, chars, 0.0)
    first, second = s.next_steps(0.0)[0], s.next_steps(0.0)[0]
    # 600 characters: a 0.36 s front pass, so it must start first although due later.
    assert (first.stream_id, second.stream_id) == ("long", "short")
    assert first.deadline_s > second.deadline_s
    assert first.latest_start_s < second.latest_start_s


def test_near_ties_go_to_least_attained_service() -> None:
    clock = FakeClock()
    s = make()
    s.open_stream("busy", Priority.NORMAL, 0.0)
    s.open_stream("fresh", Priority.NORMAL, 0.0)
    for seq in range(3):
        submit(s, "busy", seq, 20, clock.now)
    drain(s, clock)
    clock.advance(60.0)  # its listener played everything: idle
    # "fresh" first: nothing is backlogged, so it starts at 0; "busy" returns from idle to the
    # lowest backlogged counter (fresh's 0) or its own, whichever is higher: its own.
    submit(s, "fresh", 0, 20, clock.now)
    submit(s, "busy", 3, 40, clock.now)
    assert s._streams["busy"].attained_s > s._streams["fresh"].attained_s == 0.0
    # busy's longer front pass gives it the earlier latest start, by less than the tie window:
    # a near-tie, which goes to the least attained service.
    assert s._streams["busy"].rank_s < s._streams["fresh"].rank_s
    assert s._streams["fresh"].rank_s - s._streams["busy"].rank_s < s.config.tie_window_s
    assert s.next_steps(clock.now)[0].stream_id == "fresh"


def test_returning_from_idle_earns_no_credit() -> None:
    clock = FakeClock()
    s = make()
    s.open_stream("a", Priority.NORMAL, 0.0)
    s.open_stream("b", Priority.NORMAL, 0.0)
    for seq in range(20):
        submit(s, "a", seq, 20, 0.0)
    for _ in range(10):
        (step,) = s.next_steps(clock.now)
        run(s, step, clock.now, send=False)
    submit(s, "b", 0, 20, clock.now)
    floor = s._queue.service_floor()
    assert floor > 0.0
    assert s._streams["b"].attained_s == pytest.approx(floor)


def test_high_priority_first_at_equal_deadlines() -> None:
    s = make()
    s.open_stream("n", Priority.NORMAL, 0.0)
    s.open_stream("h", Priority.HIGH, 0.0)
    submit(s, "n", 0, 30, 0.0)
    submit(s, "h", 0, 30, 0.0)
    assert s.next_steps(0.0)[0].stream_id == "h"


def test_low_priority_not_starved_by_a_stream_of_normal_arrivals() -> None:
    clock = FakeClock()
    s = make()
    s.open_stream("low", Priority.LOW, 0.0)
    submit(s, "low", 0, 30, 0.0)
    served_at = None
    for i in range(200):
        sid = f"n{i}"
        s.open_stream(sid, Priority.NORMAL, clock.now)
        submit(s, sid, 0, 30, clock.now)
        (step,) = s.next_steps(clock.now)
        if step.stream_id == "low":
            served_at = clock.now
            break
        clock.advance(step.predicted_compute_s)
        run(s, step, clock.now)
    assert served_at is not None
    # Its first audio's deadline (0.3 less the window), plus the low shift, plus one step.
    assert served_at <= 0.3 + 0.5 + 0.2


def test_lookahead_cap_holds_then_serves_idle_worker_and_respects_hard_cap() -> None:
    s = make(workers=2)
    for sid, buffered in (("full", 10.0), ("thin1", 1.0), ("thin2", 1.0)):
        s.open_stream(sid, Priority.NORMAL, 0.0)
        s.audio_sent(sid, buffered, 0.0)  # "full": over lookahead_s = 4
        submit(s, sid, 0, 30, 0.0)
    assert s.stats().held_streams == 1
    assert {s.next_steps(0.0)[0].stream_id for _ in range(2)} == {"thin1", "thin2"}
    # Nothing else to do: the held one goes to the otherwise idle worker.
    assert s.next_wakeup_s(0.0) == 0.0
    (step,) = s.next_steps(0.0)
    assert step.stream_id == "full"
    assert s.stats().lookahead_fallbacks == 1
    # Hard cap: 30 s buffered waits even for an idle worker, until it drops to 20 s.
    s.open_stream("huge", Priority.NORMAL, 0.0)
    s.audio_sent("huge", 30.0, 0.0)
    submit(s, "huge", 0, 30, 0.0)
    assert s.next_steps(0.0) == []
    wake = s.next_wakeup_s(0.0)
    assert wake == pytest.approx(30.0 - 20.0)
    assert s.next_steps(wake - 0.01) == []
    assert s.next_steps(wake)[0].stream_id == "huge"
    assert s.next_wakeup_s(wake) is None


def test_while_newcomers_outnumber_the_workers_only_due_work_goes_before_them() -> None:
    # A window not due would stand between the queued newcomers and the workers (and the
    # event loop, which hands out every run and delivers its audio); due work still goes.
    s = make(workers=2)
    s.open_stream("playing", Priority.NORMAL, 0.0)
    s.audio_sent("playing", 2.0, 0.0)  # 2 s ahead: under the 4 s lookahead cap, not due
    submit(s, "playing", 0, 80, 0.0)
    for sid in ("a", "b", "c"):  # three newcomers, two workers: they queue
        s.open_stream(sid, Priority.NORMAL, 0.0)
        submit(s, sid, 0, 40, 0.0)
    encodes = [s.next_steps(0.0)[0] for _ in range(3)]
    assert {step.stream_id for step in encodes} == {"a", "b", "c"}
    # Nothing of theirs is ready (their encode steps are out): the playing stream waits.
    assert s.next_steps(0.0) == []
    wake = s.next_wakeup_s(0.0)
    assert wake is not None and 0.0 < wake < 2.0
    assert s.next_steps(wake - 0.01) == []
    (due,) = s.next_steps(wake)  # due now: it goes before any newcomer would
    assert due.stream_id == "playing"
    # Two newcomers play; one waits, fewer than the workers: work not due goes again.
    now = wake
    for step in encodes[:2]:
        assert run(s, step, now)
    for _ in range(2):
        (first,) = s.next_steps(now)
        assert first.stream_id in ("a", "b") and run(s, first, now)
    assert run(s, due, now)
    (ahead,) = s.next_steps(now)
    assert ahead.stream_id in ("playing", "a", "b")  # a window not due, for an idle worker


# ---- window size: the control ----------------------------------------------------------------


def test_windows_grow_with_a_healthy_buffer_and_shrink_when_it_runs_thin() -> None:
    clock = FakeClock()
    s = make(lookahead_s=30.0, max_lookahead_s=60.0)
    s.open_stream("a", Priority.NORMAL, 0.0)
    submit(s, "a", 0, 600, 0.0)  # ~2460 frames, ~28 s of audio
    sent = 0.0
    start = None
    frames: list[int] = []
    while len(frames) < 8:
        (step,) = s.next_steps(clock.now)
        clock.advance(step.predicted_compute_s)
        run(s, step, clock.now)
        if step.kind is StepKind.DECODE:
            start = clock.now if start is None else start
            sent += step.frames * APF
            frames.append(step.frames)
    assert frames[0] == s.config.first_window_frames
    assert frames == sorted(frames) and frames[-1] == s.config.max_window_frames
    # Let the listener play until 0.25 s is left: the next window must compute within
    # 0.25 - 0.15 s, so it is small again (and grows back from there).
    assert start is not None
    clock.advance(start + sent - 0.25 - clock.now)
    (step,) = s.next_steps(clock.now)
    assert step.frames <= 64
    assert price(s, step) <= 0.25 - s.config.jitter_s


def test_a_sentences_short_last_window_does_not_set_the_next_sentence_back() -> None:
    # Windows of sentence 0: 32, 64, then the 27 frames left of it. Sentence 1's windows go
    # on growing from 64 (128, 256), not from 27 (48, 96, 192, ...): one short tail per
    # sentence kept every stream's windows small at 1,000 listeners.
    s = make(workers=1, min_window_growth=2.0, max_window_growth=2.0)
    s.open_stream("a", Priority.NORMAL, 0.0)
    s.audio_sent("a", 2.0, 0.0)
    submit(s, "a", 0, 30, 0.0)  # 123 frames
    submit(s, "a", 1, 100, 0.0)  # 410 frames
    windows = [(step.seq, step.frames) for step in drain(s, FakeClock())
               if step.kind is StepKind.DECODE]
    assert windows == [(0, 32), (0, 64), (0, 27), (1, 128), (1, 256), (1, 26)]


def test_first_window_is_longer_when_the_workers_are_loaded() -> None:
    s = make(workers=2)
    s.open_stream("idle", Priority.NORMAL, 0.0)
    submit(s, "idle", 0, 80, 0.0)
    run(s, s.next_steps(0.0)[0], 0.0)
    alone = s.next_steps(0.0)[0]
    assert alone.frames == s.config.first_window_frames
    loaded = make(workers=2)
    for i in range(10):  # playing, with work: ~0.6 of both workers at the longest windows
        loaded.open_stream(f"s{i}", Priority.NORMAL, 0.0)
        loaded.audio_sent(f"s{i}", 2.0, 0.0)
        submit(loaded, f"s{i}", 0, 400, 0.0)
    loaded.open_stream("new", Priority.HIGH, 0.0)
    submit(loaded, "new", 0, 80, 0.0)
    encode = loaded.next_steps(0.0)[0]
    assert encode.stream_id == "new"
    run(loaded, encode, 0.0)
    first = loaded.next_steps(0.0)[0]
    # Its next window (at the load's floor) must fit in its playback: a tiny first window
    # would be followed by a stall.
    assert first.stream_id == "new" and first.frames > s.config.first_window_frames
    assert first.frames * APF >= s.config.jitter_s + price(loaded, first)


# ---- batches, requeue ------------------------------------------------------------------------


def test_batches_are_homogeneous() -> None:
    s = make(workers=1)
    s.register_voice("other", context_frames=CONTEXT_FRAMES, sample_rate=SAMPLE_RATE)
    streams = [("a0", VOICE, 1.0), ("a1", VOICE, 1.0), ("a2", VOICE, 1.0), ("a3", VOICE, 1.0),
               ("fast", VOICE, 1.5), ("other", "other", 1.0)]
    for sid, voice, speed in streams:
        s.open_stream(sid, Priority.NORMAL, 0.0)
        submit(s, sid, 0, 40, 0.0, speed=speed, voice=voice)
    batch = s.next_steps(0.0, max_steps=8)
    assert len(batch) >= 2
    assert {(b.kind, b.voice, b.speed) for b in batch} == {(StepKind.ENCODE, VOICE, 1.0)}
    for step in batch:
        run(s, step, 0.0)
    # Their first windows: decode steps of one frame count, one voice, one speed.
    kinds = set()
    while windows := s.next_steps(0.0, max_steps=8):
        assert len({(w.kind, w.voice, w.speed, w.frames) for w in windows}) == 1
        kinds.add(windows[0].kind)
        for step in windows:
            run(s, step, 0.0)
    assert kinds == {StepKind.ENCODE, StepKind.DECODE}
    st = s.stats()
    assert st.batches >= 2 and st.queued_sentences == 0


def test_a_batch_never_makes_its_most_urgent_member_late() -> None:
    s = make(workers=1, batch_marginal_cost=1.0)
    for i in range(8):  # equal buffers: each encode step (0.093 s) due at 0.35 less a window
        s.open_stream(f"s{i}", Priority.NORMAL, 0.0)
        s.audio_sent(f"s{i}", 0.5, 0.0)
        submit(s, f"s{i}", 0, 150, 0.0)
    batch = s.next_steps(0.0, max_steps=8)
    assert 1 < len(batch) < 8
    assert sum(b.predicted_compute_s for b in batch) <= min(b.deadline_s for b in batch)


def test_an_encode_batch_of_a_voice_that_batches_fronts_is_priced_as_one_run() -> None:
    """A GPU's batched front runs a batch's front passes as one run: the batch costs its
    longest step plus batch_marginal_cost of the others, as a decode batch does, so more join
    than where a worker runs them one after another (their sum) before the earliest is late."""
    sizes = {}
    for batched in (False, True):
        s = make(workers=1, batch_marginal_cost=0.1, batch_window_s=1.0)
        s.register_voice(VOICE, context_frames=CONTEXT_FRAMES, sample_rate=SAMPLE_RATE,
                         batched_encode=batched)
        for i in range(8):
            s.open_stream(f"s{i}", Priority.NORMAL, 0.0)
            s.audio_sent(f"s{i}", 0.5, 0.0)
            submit(s, f"s{i}", 0, 150, 0.0)
        batch = s.next_steps(0.0, max_steps=8)
        computes = [b.predicted_compute_s for b in batch]
        cost = (max(computes) + 0.1 * (sum(computes) - max(computes))) if batched else \
            sum(computes)
        assert cost <= min(b.deadline_s for b in batch)  # the most urgent is never late
        sizes[batched] = len(batch)
    assert 1 < sizes[False] < sizes[True] == 8


@pytest.mark.parametrize(("share", "joins"), [(0.5, False), (0.0, True)])
def test_a_batch_does_not_cut_a_window_far_below_its_own_length(share: float,
                                                                  joins: bool) -> None:
    # "a" (a 20-frame sentence) is the most urgent; "b" would take a 64-frame window alone.
    # Cut to 20 frames to join a's batch, b's sentence would cost three windows for one: each
    # a hand-out, a result and a socket write (batch_min_window_share; 0 joins it anyway).
    s = make(workers=1, first_window_frames=64, batch_min_window_share=share)
    for sid, chars, buffered in (("a", 5, 0.92), ("b", 400, 1.0)):
        s.open_stream(sid, Priority.NORMAL, 0.0)
        s.audio_sent(sid, buffered, 0.0)
        submit(s, sid, 0, chars, 0.0)
    while (steps := s.next_steps(0.0, max_steps=8))[0].kind is StepKind.ENCODE:
        for step in steps:
            run(s, step, 0.0, send=False)
    assert (steps[0].stream_id, steps[0].frames) == ("a", 20)
    assert [(b.stream_id, b.frames) for b in steps[1:]] == ([("b", 20)] if joins else [])
    for step in steps:
        run(s, step, 0.0)
    if not joins:
        (alone,) = s.next_steps(0.0, max_steps=8)
        assert (alone.stream_id, alone.start_frame, alone.frames) == ("b", 0, 64)


def test_a_first_window_put_back_comes_back_as_a_first_window() -> None:
    # Handed out but never dispatched, no audio of it exists: the stream still waits for its
    # first audio, so its next window is a first window again, not one grown from it.
    clock = FakeClock()
    s = make(workers=1)
    s.open_stream("a", Priority.NORMAL, 0.0)
    submit(s, "a", 0, 150, 0.0)
    (encode,) = s.next_steps(clock.now)
    run(s, encode, clock.now)
    (first,) = s.next_steps(clock.now)
    s.requeue([first], clock.now)
    (back,) = s.next_steps(clock.now)
    assert (back.start_frame, back.frames) == (0, first.frames) == (0, config().first_window_frames)


def test_requeue_puts_a_batch_back_and_nothing_is_lost() -> None:
    clock = FakeClock()
    s = make(workers=1)
    speeds = (0.8, 1.0, 1.0, 1.3)
    for i, speed in enumerate(speeds):
        s.open_stream(f"s{i}", Priority.NORMAL, 0.0)
        submit(s, f"s{i}", 0, 45, 0.0, speed=speed)
        submit(s, f"s{i}", 1, 30, 0.0, speed=speed)
    batch = s.next_steps(0.0, max_steps=4)
    keys = sorted((b.stream_id, b.kind, b.start_frame) for b in batch)
    s.requeue(batch, 0.0)
    assert s.stats().in_flight == 0 and s.stats().requeued == len(batch)
    again = s.next_steps(0.0, max_steps=4)
    assert sorted((b.stream_id, b.kind, b.start_frame) for b in again) == keys
    for step in again:
        run(s, step, clock.now)
    # A step requeued comes back as it was (a window: from the frame it started at).
    (step,) = s.next_steps(0.0)
    s.requeue([step], 0.0)
    (back,) = s.next_steps(0.0)
    assert (back.stream_id, back.seq, back.kind, back.start_frame, back.frames) == (
        step.stream_id, step.seq, step.kind, step.start_frame, step.frames)
    s.requeue([back], 0.0)
    s.requeue([back], 0.0)  # putting back twice is harmless
    assert s.stats().in_flight == 0
    # Every stream, at every speed, is served to the end: no batch leaves one waiting.
    done = drain(s, clock, max_steps=4)
    for i, speed in enumerate(speeds):
        for seq, chars in ((0, 45), (1, 30)):
            windows = [d for d in done if d.stream_id == f"s{i}" and d.seq == seq
                       and d.kind is StepKind.DECODE]
            total = round(4.1 * chars / speed)
            covered = sorted((w.start_frame, w.start_frame + w.frames) for w in windows)
            assert covered[0][0] == 0 and covered[-1][1] == total
            assert all(a[1] == b[0] for a, b in itertools.pairwise(covered))
    assert s.stats().queued_sentences == 0


# ---- clear, close, fail ----------------------------------------------------------------------


def test_clear_drops_a_sentence_mid_way() -> None:
    s = make(workers=2)
    s.open_stream("a", Priority.NORMAL, 0.0)
    submit(s, "a", 0, 100, 0.0)
    submit(s, "a", 1, 100, 0.0)
    run(s, s.next_steps(0.0)[0], 0.0)  # encoded
    run(s, s.next_steps(0.0)[0], 0.0)  # first window played
    flying = s.next_steps(0.1)[0]
    assert flying.kind is StepKind.DECODE and not flying.last
    assert s.clear("a", 0.1) == 2
    assert s.queued_sentences("a") == 0 and s.next_steps(0.2) == []
    assert run(s, flying, 0.2) is False  # its audio is dropped; no later window of it
    st = s.stats()
    assert (st.dropped_results, st.cancelled_in_flight, st.cleared_sentences) == (1, 1, 2)
    # The stream stays open: its next text is a fresh first audio with a small first window.
    step = submit(s, "a", 2, 30, 5.0)
    assert s.next_steps(5.0)[0] is step
    run(s, step, 5.0)
    assert s.next_steps(5.0)[0].frames == s.config.first_window_frames


def test_close_stream_drops_everything() -> None:
    s = make()
    s.open_stream("a", Priority.NORMAL, 0.0)
    submit(s, "a", 0, 30, 0.0)
    submit(s, "a", 1, 30, 0.0)
    flying = s.next_steps(0.0)[0]
    assert s.close_stream("a", 0.1) == 2
    assert run(s, flying, 0.2) is False
    assert s.next_steps(1.0) == []
    assert s.stats().open_streams == 0
    with pytest.raises(KeyError):
        submit(s, "a", 2, 10, 1.0)


def test_fail_drops_the_rest_of_that_sentence_only() -> None:
    s = make()
    s.open_stream("a", Priority.NORMAL, 0.0)
    submit(s, "a", 0, 100, 0.0)
    submit(s, "a", 1, 20, 0.0)
    run(s, s.next_steps(0.0)[0], 0.0)
    window = s.next_steps(0.0)[0]
    assert (window.seq, window.kind, window.last) == (0, StepKind.DECODE, False)
    s.fail(window, 0.05)
    nxt = s.next_steps(0.05)[0]
    assert (nxt.seq, nxt.kind) == (1, StepKind.ENCODE)
    s.fail(nxt, 0.06)  # a failed encode step drops its sentence too
    assert s.next_steps(0.06) == []
    st = s.stats()
    assert (st.failed, st.in_flight, st.queued_sentences) == (2, 0, 0)


# ---- admission and workers -------------------------------------------------------------------


def _old_retry_after_s(s: Scheduler) -> float:
    """A refusal's Retry-After as it was priced at every refusal (O(queued sentences)): the
    listeners' queued work and the first audio downloads owe, over the workers, at least 1 s."""
    adm = s._admission
    backlog = sum(adm._work_s(r, math.inf) if r.pace is Pace.LISTENER else r.first_cost_s
                  for r in adm._backlogged)
    return max(1.0, backlog / max(s.workers, 1))


@pytest.mark.parametrize("seed", range(5))
def test_retry_after_is_the_backlog_priced_at_most_every_half_second(seed: int) -> None:
    """A refusal's Retry-After is the old sum over every queued stream, priced afresh when
    RETRY_PRICE_EVERY_S has passed since the last price and reused in between (refusals come
    in bursts: at 1,000 streams the sum per refusal was a fifth of the event loop). Readiness
    and the load signal never price. Random queue changes: streams of both paces open, get
    text, run steps (with learned costs moving), are cleared and closed."""
    rng = random.Random(seed)
    s = make(workers=2, max_streams=6)
    now = 0.0
    priced_at, price_then = -math.inf, 0.0
    refusals = fresh = reused = 0
    open_ids: list[str] = []
    seqs: dict[str, int] = {}
    in_flight: list[SynthesisStep] = []
    for i in range(1000):
        now += rng.choice([0.0, 0.0, 0.01, 0.05, 0.2, 0.45])
        op = rng.random()
        if op < 0.15 and len(open_ids) < 6:
            sid = f"s{i}"
            s.open_stream(sid, Priority.NORMAL, now, rng.choice([Pace.LISTENER, Pace.DOWNLOAD]))
            open_ids.append(sid)
            seqs[sid] = 0
        elif op < 0.45 and open_ids:
            sid = rng.choice(open_ids)
            s.submit(sid, seqs[sid], "x" * rng.randint(5, 200), speed=rng.choice([0.8, 1.0]),
                     voice=VOICE, now=now)
            seqs[sid] += 1
        elif op < 0.6:
            in_flight += s.next_steps(now, rng.randint(1, 3))
        elif op < 0.75 and in_flight:
            step = in_flight.pop(rng.randrange(len(in_flight)))
            if step.kind is StepKind.ENCODE:
                s.encoded(step, frames=rng.randint(20, 400), samples_per_frame=SAMPLES_PER_FRAME,
                          latent=("latent", step.stream_id, step.seq),
                          compute_s=price(s, step) * rng.uniform(0.5, 2.0), now=now)
            elif s.decoded(step, audio_s=step.frames * APF,
                           compute_s=price(s, step) * rng.uniform(0.5, 2.0), now=now):
                s.audio_sent(step.stream_id, step.frames * APF, now)
        elif op < 0.8 and open_ids:
            s.clear(rng.choice(open_ids), now)
        elif op < 0.85 and open_ids:
            s.close_stream(open_ids.pop(rng.randrange(len(open_ids))), now)
        elif op < 0.9:
            # Readiness and the load signal: never a price, so a refusal just after them is
            # priced from the queue as it is then.
            s.has_capacity(now)
            s.fullness(now)
        else:
            expected = _old_retry_after_s(s)
            admission = s.admit(now, VOICE, rng.choice([Pace.LISTENER, Pace.DOWNLOAD]))
            if admission.accepted:
                continue
            refusals += 1
            if now >= priced_at + RETRY_PRICE_EVERY_S:
                assert admission.retry_after_s == expected
                priced_at, price_then = now, expected
                fresh += 1
            else:
                assert admission.retry_after_s == price_then
                reused += expected != price_then
    assert refusals > 40 and fresh > 20 and reused > 2


@pytest.mark.parametrize("seed", range(4))
def test_the_urgent_work_kept_up_to_date_is_what_a_full_sum_finds(seed: int) -> None:
    # Admission sums every backlogged stream's urgent work at most every URGENT_REFRESH_S
    # and in between prices again only the streams that changed: at every admission the
    # figure must be the full sum's (at the same horizon), whatever happened in between.
    rng = random.Random(seed)
    clock = FakeClock()
    s = make(workers=2)
    admission = s._admission
    running: list[SynthesisStep] = []
    for _ in range(400):
        clock.advance(rng.uniform(0.0, 0.006))
        act = rng.random()
        if act < 0.25:
            sid = f"s{rng.randrange(12)}"
            if s.priority(sid) is None:
                s.open_stream(sid, Priority.NORMAL, clock.now)
            submit(s, sid, rng.randrange(1000), rng.randrange(5, 200), clock.now)
        elif act < 0.6 and len(running) < 2:
            running += s.next_steps(clock.now, 2)
        elif act < 0.9 and running:
            run(s, running.pop(rng.randrange(len(running))), clock.now)
        elif act < 0.95:
            sid = f"s{rng.randrange(12)}"
            if s.priority(sid) is not None:
                s.clear(sid, clock.now)
        else:
            sid = f"s{rng.randrange(12)}"
            running = [step for step in running if step.stream_id != sid]
            if s.priority(sid) is not None:
                s.close_stream(sid, clock.now)
        got = admission._urgent_compute(clock.now)
        urgent = admission._urgent
        assert urgent is not None and urgent.horizon_s >= clock.now + s._pacing.first_due_s
        full = sum(admission._urgent_part(x, urgent.horizon_s) for x in s._backlogged)
        assert got == pytest.approx(full, rel=1e-9, abs=1e-12)


def test_admission_reasons() -> None:
    s = make(workers=2, max_streams=3)
    for sid in ("a", "b", "c"):
        assert s.admit(0.0).accepted
        s.open_stream(sid, Priority.NORMAL, 0.0)
    refusal = s.admit(0.0)
    assert (refusal.accepted, refusal.reason) == (False, AdmissionReason.STREAMS)
    assert refusal.retry_after_s >= 1.0
    # Steady demand: listeners playing (no work queued) still count.
    steady = make(workers=2, open_grace_s=0.0)
    playing = 0
    while (admission := steady.admit(0.0)).accepted:
        steady.open_stream(f"p{playing}", Priority.NORMAL, 0.0)
        steady.audio_sent(f"p{playing}", 30.0, 0.0)
        playing += 1
    assert admission.reason is AdmissionReason.CAPACITY
    rtf = steady.model.rtf(VOICE, sentence_chars=80, window_frames=256)
    assert playing == int(2 * 0.8 / rtf)
    assert steady.admit(31.0).accepted  # all played out: idle streams are free
    # A burst: streams opened together, their first audio about to be asked for.
    burst = make(workers=2)
    opened = 0
    while (admission := burst.admit(0.0)).accepted:
        burst.open_stream(f"b{opened}", Priority.NORMAL, 0.0)
        opened += 1
    assert admission.reason is AdmissionReason.BACKLOG
    assert 4 <= opened < playing
    assert burst.stats().refused == 1
    assert {r.value for r in AdmissionReason} == {"accepted", "capacity", "backlog", "streams"}


def play_until_late(s: Scheduler, sid: str, now: float) -> float:
    """Open `sid`, start its playback with its first window, then finish its next window past
    its deadline; returns when that was."""
    s.open_stream(sid, Priority.NORMAL, now)
    submit(s, sid, 0, 400, now)
    run(s, s.next_steps(now)[0], now + 5.0)  # its encode, far past its first-audio deadline
    now += 5.0
    window = s.next_steps(now)[0]
    run(s, window, now + 0.01)  # the first window: playback starts
    now += 0.01
    step = s.next_steps(now)[0]
    late = step.deadline_s + 0.01
    run(s, step, late)
    assert step.slack_s is not None and step.slack_s < 0.0
    return late


def test_playing_listeners_late_in_two_streams_hold_new_listeners_back() -> None:
    # The prices see the workers, not the host: offered 2,000 stand-in listeners in 10 s on two
    # cores, the GIL ran out first. Listeners of two streams late within admit_late_hold_s are
    # the sign; new listeners are refused for admit_late_hold_s after it (downloads, which wait
    # for idle capacity, are not). A late first audio is a burst's, not this; one stream late
    # alone is its own cost (a Kokoro sentence on the CPU takes longer to make than the one
    # before it plays, on an idle server too).
    s = make(workers=4)
    first = play_until_late(s, "a", 0.0)
    assert s.admit(first + 0.1).accepted  # one stream late (its encode late too): no hold
    second = play_until_late(s, "b", first - 5.0 + 0.5)
    assert second - first < s.config.admit_late_hold_s
    refusal = s.admit(second + 0.5)
    assert (refusal.accepted, refusal.reason) == (False, AdmissionReason.CAPACITY)
    assert s.admit(second + 0.5, pace=Pace.DOWNLOAD).accepted
    assert s.admit(second + s.config.admit_late_hold_s).accepted


def test_admission_prices_each_voice() -> None:
    s = make(workers=2)
    s.register_voice("slow", context_frames=CONTEXT_FRAMES, sample_rate=SAMPLE_RATE)
    s.model.calibrate("slow", encode_per_char_s=0.0012, decode_per_frame_s=0.0022)

    def admitted(voice: str) -> int:
        sched = make(workers=2)
        sched.register_voice("slow", context_frames=CONTEXT_FRAMES, sample_rate=SAMPLE_RATE)
        sched.model.calibrate("slow", encode_per_char_s=0.0012, decode_per_frame_s=0.0022)
        n = 0
        while sched.admit(0.0, voice).accepted:
            sched.open_stream(f"s{n}", Priority.NORMAL, 0.0)
            submit(sched, f"s{n}", 0, 80, 0.0, voice=voice)
            sched.audio_sent(f"s{n}", 30.0, 0.0)
            n += 1
        return n

    assert admitted("slow") < admitted(VOICE)


def test_a_burst_of_streams_opened_without_text_is_priced_at_their_own_voice() -> None:
    # A burst of handshakes for a slow voice (Kokoro on a CPU): each stream opened and not yet
    # sent text counts at the voice it was admitted for, so the burst admits as many as that
    # voice's steady shares fit in the workers, not as many as the default voice's would.
    def admitted(voice: str) -> tuple[int, float]:
        sched = make(workers=1, admit_backlog_s=60.0)  # steady capacity alone decides
        sched.register_voice("slow", context_frames=CONTEXT_FRAMES, sample_rate=SAMPLE_RATE)
        sched.model.calibrate("slow", encode_per_char_s=0.0012, decode_per_frame_s=0.0022)
        n = 0
        while n < 50 and sched.admit(0.0, voice).accepted:
            sched.open_stream(f"s{n}", Priority.NORMAL, 0.0, voice=voice)
            n += 1
        share = sched._pacing.stream_rtf(voice)
        assert sched._admission.demand(0.0) == pytest.approx(n * share)
        return n, share

    (slow, slow_share), (fast, fast_share) = admitted("slow"), admitted(VOICE)
    assert slow_share > 1.5 * fast_share
    target = make().config.target_utilization
    assert slow == int(target / slow_share) and fast == int(target / fast_share)
    assert 1 <= slow < fast


def test_set_workers_moves_capacity() -> None:
    def admitted(workers: int) -> int:
        s = make(workers=2)
        s.set_workers(workers, 0.0)
        n = 0
        while s.admit(0.0).accepted:
            s.open_stream(f"s{n}", Priority.NORMAL, 0.0)
            s.audio_sent(f"s{n}", 30.0, 0.0)
            n += 1
        return n

    one, two, three = admitted(1), admitted(2), admitted(3)
    assert 0 < one < two < three
    s = make(workers=2)
    s.open_stream("a", Priority.NORMAL, 0.0)
    submit(s, "a", 0, 40, 0.0)
    s.set_workers(0, 0.0)
    assert not s.has_capacity(0.0)
    assert s.admit(0.0).reason is AdmissionReason.CAPACITY
    assert s.load(0.0) == float("inf")
    assert s.stats().workers == 0
    s.set_workers(1, 0.0)  # queued work was kept for the worker that comes back
    assert s.next_steps(0.0)[0].stream_id == "a"
    with pytest.raises(ValueError):
        s.set_workers(-1, 0.0)


def test_readiness_check_counts_no_refusal() -> None:
    s = make(max_streams=1)
    s.open_stream("a", Priority.NORMAL, 0.0)
    assert not s.has_capacity(0.0)
    assert s.stats().refused == 0
    assert not s.admit(0.0).accepted
    assert s.stats().refused == 1


def test_load_counts_active_streams_only() -> None:
    s = make(workers=2, open_grace_s=0.0)
    assert s.load(0.0) == 0.0
    s.open_stream("a", "normal", 0.0)
    s.open_stream("b", "normal", 0.0)
    submit(s, "a", 0, 30, 0.0)
    one = s.load(0.0)
    assert one > 0.0
    submit(s, "b", 0, 30, 0.0)
    assert s.load(0.0) == pytest.approx(2 * one)


def test_load_prices_each_active_stream_at_its_own_voice() -> None:
    # Admission sums every open stream's share; each voice is priced once per sum, and the sum
    # must be the same, stream by stream in opening order, as pricing each stream alone.
    s = make(workers=4, open_grace_s=0.0)
    s.register_voice("slow", context_frames=CONTEXT_FRAMES, sample_rate=SAMPLE_RATE)
    s.model.calibrate("slow", encode_per_char_s=0.0012, decode_per_frame_s=0.0022)
    voices = [VOICE, "slow", "slow", VOICE, "slow", VOICE, VOICE]
    for n, voice in enumerate(voices):
        s.open_stream(f"s{n}", "normal", 0.0)
        submit(s, f"s{n}", 0, 40, 0.0, voice=voice)
    s.open_stream("idle", "normal", 0.0)  # no text: costs nothing
    def share(voice: str) -> float:  # a stream's steady share: Pacing.stream_rtf
        return s.model.rtf(voice, sentence_chars=s.config.admit_sentence_chars,
                           window_frames=s.config.max_window_frames)

    fast, slow = share(VOICE), share("slow")
    assert slow > fast
    expected = 0.0
    for voice in voices:
        expected += slow if voice == "slow" else fast
    assert s.load(0.0) * 4 == expected


def test_fullness_is_one_exactly_when_a_new_stream_is_refused() -> None:
    """litestream_load (issue 19): admitted load over capacity. Streams playing long audio
    are opened one by one; at every step the figure is below 1 while a new stream is admitted
    and readiness holds, and exactly 1 once admission refuses."""
    s = make(workers=2, open_grace_s=0.0)
    assert s.fullness(0.0) == 0.0
    seen: list[float] = []
    n = 0
    while True:
        level = s.fullness(0.0)
        ready = s.has_capacity(0.0)
        assert (level >= 1.0) == (not ready)
        if not ready:
            break
        assert 0.0 <= level < 1.0
        seen.append(level)
        assert s.admit(0.0).accepted
        s.open_stream(f"s{n}", Priority.NORMAL, 0.0)
        s.audio_sent(f"s{n}", 30.0, 0.0)  # playing: an active stream
        n += 1
    assert level == 1.0
    assert s.admit(0.0).reason is AdmissionReason.CAPACITY
    assert n >= 2 and seen == sorted(seen) and seen[-1] > 0.5
    # Streams of one voice each add the same share: k streams read k times one stream's.
    assert seen == pytest.approx([k * seen[1] for k in range(n)])
    assert s.stats().refused == 1  # fullness and has_capacity counted no refusal


def test_fullness_follows_max_streams_and_serving_workers() -> None:
    s = make(workers=1, max_streams=4)
    s.open_stream("a", Priority.NORMAL, 0.0)
    assert s.fullness(0.0) >= 0.25
    for sid in "bcd":
        s.open_stream(sid, Priority.NORMAL, 0.0)
    assert s.fullness(0.0) == 1.0 and s.admit(0.0).reason is AdmissionReason.STREAMS
    s.close_stream("d", 0.0)
    assert s.fullness(0.0) < 1.0 and s.has_capacity(0.0)
    s.set_workers(0, 0.0)  # no worker serving: nothing can be admitted
    assert s.fullness(0.0) == 1.0 and not s.has_capacity(0.0)


def test_config_has_no_defaults_for_the_knobs_config_owns() -> None:
    with pytest.raises(TypeError):
        SchedulerConfig()  # type: ignore[call-arg]


# ---- cost model ------------------------------------------------------------------------------


def test_one_pricing_function() -> None:
    model = CostModel()
    assert model.price("v", StepKind.ENCODE, 45) == pytest.approx(
        ENCODE_OVERHEAD_S + ENCODE_PER_CHAR_S * 45)
    assert model.price("v", StepKind.DECODE, 40) == pytest.approx(
        DECODE_OVERHEAD_S + DECODE_PER_FRAME_S * (40 + 2 * 16))
    for budget in (0.05, 0.1, 0.3):
        w = model.window_within("v", budget)
        assert model.price("v", StepKind.DECODE, w) <= budget
        assert model.price("v", StepKind.DECODE, w + 1) > budget
    # The steady share of a stream falls as windows grow (context margins amortized).
    assert model.rtf("v", sentence_chars=80, window_frames=256) < model.rtf(
        "v", sentence_chars=80, window_frames=32)
    # window_for_rtf inverts the same prices (continuous windows): encode share + window share.
    w = model.window_for_rtf("v", rtf=0.15, sentence_chars=80)
    audio = model.audio_s("v", model.sentence_frames("v", 80, 1.0))
    share = model.price("v", StepKind.ENCODE, 80) / audio
    assert share + model.price("v", StepKind.DECODE, w) / model.audio_s("v", w) == pytest.approx(
        0.15)


def test_context_is_priced_and_learned_only_inside_the_sentence() -> None:
    # A sentence's first window computes no context on its left, its last none on its right,
    # one window alone none at all (engine/piper/windows.py clips the margins at its ends).
    model = CostModel()
    model.register("v", context_frames=16)
    inside = model.price("v", StepKind.DECODE, 32)
    assert inside == model.price("v", StepKind.DECODE, 32, sides=2)
    assert model.price("v", StepKind.DECODE, 32, sides=1) == pytest.approx(
        DECODE_OVERHEAD_S + DECODE_PER_FRAME_S * (32 + 16))
    assert model.price("v", StepKind.DECODE, 32, sides=0) < model.price(
        "v", StepKind.DECODE, 32, sides=1) < inside
    assert [context_sides(0, 32, 100), context_sides(32, 32, 100), context_sides(64, 36, 100),
            context_sides(0, 100, 100)] == [1, 2, 1, 0]
    # First, inside and last windows at one true rate: the learned rate is that rate (counting
    # two sides for every window, the first windows would read cheap, the middle ones dear).
    for _ in range(40):
        for start, frames in ((0, 32), (32, 64), (96, 24)):
            sides = context_sides(start, frames, 120)
            model.observe_decode("v", frames=frames, audio_s=frames * 0.01, sides=sides,
                                 compute_s=DECODE_OVERHEAD_S + 0.0007 * (frames + 16 * sides))
    assert model.voice("v").decode_per_frame_s == pytest.approx(0.0007, rel=1e-6)


def test_cost_model_learns_per_voice_and_step_kind() -> None:
    model = CostModel()
    model.register("kokoro", context_frames=0)  # non-streaming: encode does everything
    for _ in range(60):
        model.observe_encode("piper", chars=50, speed=1.0, frames=200,
                             compute_s=0.003 + 0.0005 * 50)
        model.observe_decode("piper", frames=64, audio_s=64 * 0.01, compute_s=0.002 + 0.0009 * 96)
        model.observe_encode("kokoro", chars=50, speed=1.0, frames=150, compute_s=0.003 + 0.4)
        model.observe_decode("kokoro", frames=64, audio_s=64 * 0.025, compute_s=0.0021)
    piper, kokoro = model.voice("piper"), model.voice("kokoro")
    assert piper.encode_per_char_s == pytest.approx(0.0005, rel=0.01)
    assert piper.decode_per_frame_s == pytest.approx(0.0009, rel=0.01)
    assert piper.frames_per_char == pytest.approx(4.0, rel=0.01)
    assert piper.audio_per_frame_s == pytest.approx(0.01)
    assert kokoro.encode_per_char_s == pytest.approx(0.4 / 50, rel=0.01)
    assert model.price("kokoro", StepKind.DECODE, 256) < 0.01  # windows nearly free
    assert model.price("other", StepKind.ENCODE, 10) == pytest.approx(0.003 + 0.006)


def test_audio_per_frame_moves_only_when_the_voice_hop_does() -> None:
    # audio_s / frames of windows of different lengths differs in its last bit; each flip
    # moved every price without any stream changing (admission's kept sums went stale).
    model = CostModel()
    apf = 256 / 22050
    model.observe_decode("v", frames=107, audio_s=107 * 256 / 22050, compute_s=0.1)
    first = model.voice("v").audio_per_frame_s
    assert first == pytest.approx(apf, rel=1e-12)
    for frames in range(16, 600):
        model.observe_decode("v", frames=frames, audio_s=frames * 256 / 22050, compute_s=0.1)
        assert model.voice("v").audio_per_frame_s == first  # the same float, bit for bit
    model.observe_decode("v", frames=100, audio_s=100 * 300 / 22050, compute_s=0.1)
    assert model.voice("v").audio_per_frame_s == pytest.approx(300 / 22050, rel=1e-12)


def test_scheduler_learns_from_finished_steps() -> None:
    clock = FakeClock()
    s = make()
    s.open_stream("a", Priority.NORMAL, 0.0)
    for seq in range(30):
        step = submit(s, "a", seq, 40, clock.now)
        s.next_steps(clock.now)
        s.encoded(step, frames=200, samples_per_frame=SAMPLES_PER_FRAME, latent=None,
                  compute_s=0.003 + 0.001 * 40, now=clock.now)
        while (w := next(iter(s.next_steps(clock.now)), None)) is not None:
            # Context (16 frames) is computed only on the sides inside the sentence.
            sides = (w.start_frame > 0) + (not w.last)
            s.decoded(w, audio_s=w.frames * APF,
                      compute_s=0.002 + 0.002 * (w.frames + 16 * sides), now=clock.now)
        s.clear("a", clock.now)
    cost = s.model.voice(VOICE)
    assert cost.encode_per_char_s == pytest.approx(0.001, rel=0.02)
    assert cost.decode_per_frame_s == pytest.approx(0.002, rel=0.02)
    assert cost.frames_per_char == pytest.approx(5.0, rel=0.02)


def test_thousands_of_streams() -> None:
    clock = FakeClock()
    s = make(workers=4)
    for i in range(3000):
        s.open_stream(f"s{i}", Priority.NORMAL, clock.now)
        submit(s, f"s{i}", 0, 10, clock.now)  # 41 frames: one encode step, one or two windows
        clock.advance(0.0001)
    done = 0
    while steps := s.next_steps(clock.now):
        assert run(s, steps[0], clock.now)
        clock.advance(0.001)
        done += 1
    assert 6000 <= done <= 9000
    assert s.stats().queued_sentences == 0


# ---- playback simulations: the burst, tokens and long texts (simulated time) ------------------


@pytest.mark.parametrize("seed", range(1, 5))
def test_burst_of_twenty_admitted_streams_play_without_stalls(seed: int) -> None:
    result = simulate(PARAGRAPH, streams=20, seed=seed)
    assert result.admitted + result.refused == 20
    assert result.admitted >= 8
    assert result.stalls == 0
    # Bound: every admitted stream's first audio and the window after it (the work a stream
    # needs before the next one may start safely), shared by 2 workers, plus the target.
    sched = result.sched
    first = PARAGRAPH.split(". ")[0]
    per_stream = (sched.model.price(VOICE, StepKind.ENCODE, len(first))
                  + sched.model.price(VOICE, StepKind.DECODE, 48)
                  + sched.model.price(VOICE, StepKind.DECODE, 128))
    assert result.first_audio_s[-1] <= 0.25 + result.admitted * per_stream / 2
    assert result.p95_first_audio_s() <= 1.1
    # Windows grew: context margins are a small share of the frames computed.
    st = sched.stats()
    assert st.context_frames / (st.context_frames + st.decoded_frames) < 0.25


def test_one_stream_first_audio_is_one_encode_and_one_small_window() -> None:
    result = simulate(PARAGRAPH, streams=1, seed=1)
    first = PARAGRAPH.split(". ")[0]
    model = result.sched.model
    fastest = (model.price(VOICE, StepKind.ENCODE, len(first))
               + model.price(VOICE, StepKind.DECODE, 20))
    assert result.stalls == 0
    assert result.first_audio_s[0] <= 1.1 * fastest


@pytest.mark.parametrize("seed", range(1, 4))
def test_llm_tokens_at_eight_words_per_second_play_without_stalls(seed: int) -> None:
    result = simulate(PARAGRAPH, streams=8, seed=seed, words_per_s=8.0)
    assert result.admitted == 8
    assert result.stalls == 0
    # First audio counts from the first sentence's completion in the segmenter.
    assert result.p95_first_audio_s() <= 1.1
    chunks = len(result.listeners[0].submitted)
    assert chunks == 5  # the paragraph's sentences, no shorter chunks


@pytest.mark.parametrize("seed", range(1, 4))
def test_admitted_long_texts_play_without_stalls(seed: int) -> None:
    result = simulate(LONG, streams=20, seed=seed)
    assert result.admitted >= 8
    assert result.stalls == 0
    assert result.p95_first_audio_s() <= 1.0
    st = result.sched.stats()
    assert st.decoded_frames / st.decode_steps >= 96  # long windows once buffers are healthy


def test_gpu_style_batches_play_without_stalls() -> None:
    result = simulate(PARAGRAPH, streams=20, seed=1, workers=2, max_steps=4)
    assert result.stalls == 0
    st = result.sched.stats()
    assert st.batches > 0 and st.batched_steps > st.batches
