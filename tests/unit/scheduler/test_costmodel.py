"""The cost model learns a run's fixed cost as well as its cost per unit.

A GPU run costs mostly its fixed part (the synthetic voice's table, measured on an H200:
2.5 ms a decode run and 3.5 us a frame); on the CPU the frames dominate. The model's overhead
used to stay at its CPU prior, so on a GPU the rest of the fixed part was charged to the frames
and long windows were priced at several times what they took."""

from __future__ import annotations

import random

import pytest

from litestream.scheduler.costmodel import FIT_MEMORY, CostModel, CostPriors, StepKind

CONTEXT = 17  # the bundled voice's (and the synthetic voice's) context frames


def gpu_shaped(frames: int, sides: int, *, run_s: float = 0.008, frame_s: float = 6e-6) -> float:
    """A run on the GPU host as measured at 1,000 synthetic listeners: ~8 ms a run (launch,
    the GIL, the device queue), a few microseconds a frame."""
    return run_s + frame_s * (frames + CONTEXT * sides)


def model() -> CostModel:
    m = CostModel()
    m.register("v", context_frames=CONTEXT)
    return m


def test_the_fixed_cost_of_a_run_is_learned_from_runs_of_different_sizes() -> None:
    m = model()
    for _ in range(10):
        for frames, sides in ((32, 1), (64, 2), (128, 2), (256, 2), (256, 2), (41, 1)):
            m.observe_decode("v", frames=frames, audio_s=frames * 0.0116, sides=sides,
                             compute_s=gpu_shaped(frames, sides))
    cost = m.voice("v")
    assert cost.decode_overhead_s == pytest.approx(0.008, rel=0.02)
    # (the rate follows the last windows fast: a short one reads a little of the overhead's
    # error as frames)
    assert cost.decode_per_frame_s == pytest.approx(6e-6, rel=0.15)
    # A 256-frame window is priced at what it takes, not at the short windows' rate per frame
    # (with the overhead fixed at the CPU prior: 2 ms + 6 ms / 66 frames x 290 = 28 ms).
    assert m.price("v", StepKind.DECODE, 256) == pytest.approx(gpu_shaped(256, 2), rel=0.03)
    assert m.price("v", StepKind.DECODE, 32, sides=1) == pytest.approx(gpu_shaped(32, 1),
                                                                        rel=0.03)
    # and the windows that fit a budget are as many as really fit
    assert m.window_within("v", 0.010) == pytest.approx((0.002 / 6e-6) - 2 * CONTEXT, rel=0.2)


def test_encode_steps_learn_their_fixed_cost_too() -> None:
    m = model()
    for chars in [20, 45, 80, 120, 60, 33] * 10:
        m.observe_encode("v", chars=chars, speed=1.0, frames=4 * chars,
                         compute_s=0.009 + 5e-6 * chars)
    cost = m.voice("v")
    assert cost.encode_overhead_s == pytest.approx(0.009, rel=0.02)
    assert m.price("v", StepKind.ENCODE, 200) == pytest.approx(0.009 + 5e-6 * 200, rel=0.05)
    assert m.price("v", StepKind.ENCODE, 20) == pytest.approx(0.009 + 5e-6 * 20, rel=0.05)


def test_runs_all_of_one_size_keep_the_prior_overhead() -> None:
    # Nothing tells a fixed part from a part per frame: the prior stays, the rest is per frame
    # (as before), and a window of that size is priced at what it took.
    m = model()
    prior = CostPriors().decode_overhead_s
    for _ in range(200):
        m.observe_decode("v", frames=64, audio_s=0.74, compute_s=0.05)
    assert m.voice("v").decode_overhead_s == pytest.approx(prior, rel=1e-6)
    assert m.price("v", StepKind.DECODE, 64) == pytest.approx(0.05, rel=1e-6)


def test_a_cpu_voice_keeps_a_small_overhead_under_noise() -> None:
    # The bundled voice on the CPU: ~1.1 ms a frame, 2 ms a run, +-20% noise on every run.
    rng = random.Random(7)
    m = model()
    for _ in range(2000):
        frames = rng.choice((32, 48, 64, 96, 128, 192, 256))
        sides = rng.choice((1, 2))
        true = 0.002 + 0.0011 * (frames + CONTEXT * sides)
        m.observe_decode("v", frames=frames, audio_s=frames * 0.0116, sides=sides,
                         compute_s=true * rng.uniform(0.8, 1.2))
        cost = m.voice("v")
        assert 0.0 <= cost.decode_overhead_s < 0.03  # a 32-frame window costs 55-80 ms
        for frames in (32, 256):
            assert m.price("v", StepKind.DECODE, frames) == pytest.approx(
                0.002 + 0.0011 * (frames + 2 * CONTEXT), rel=0.35)


def test_a_window_of_a_batch_counts_as_its_share_of_one_run() -> None:
    # k windows of one length decoded in one run of a + b x (all their frames): each gets
    # the run's time / k. Observed one by one as whole runs, the fixed part read k times smaller.
    m = model()
    for _ in range(20):
        for k, frames in ((1, 64), (4, 64), (8, 128), (1, 256), (2, 32), (16, 96)):
            run = 0.008 + 6e-6 * k * (frames + 2 * CONTEXT)
            for _member in range(k):
                m.observe_decode("v", frames=frames, audio_s=frames * 0.0116,
                                 compute_s=run / k, batch=k)
    cost = m.voice("v")
    assert cost.decode_overhead_s == pytest.approx(0.008, rel=0.02)
    assert cost.decode_per_frame_s == pytest.approx(6e-6, rel=0.15)


def test_an_encode_step_of_a_batched_front_counts_as_its_share_of_one_run() -> None:
    # A GPU's batched front: k sentences of about one length in one run of c + d x (all their
    # characters), each step taking the run's time / k. The fixed part is one run's.
    m = model()
    for _ in range(20):
        for k, chars in ((1, 40), (4, 60), (8, 30), (1, 120), (16, 80), (2, 20)):
            run = 0.009 + 5e-6 * k * chars
            for _member in range(k):
                m.observe_encode("v", chars=chars, speed=1.0, frames=4 * chars,
                                 compute_s=run / k, batch=k)
    cost = m.voice("v")
    assert cost.encode_overhead_s == pytest.approx(0.009, rel=0.02)
    assert cost.encode_per_char_s == pytest.approx(5e-6, rel=0.15)


def test_the_line_forgets_old_runs() -> None:
    # The host got slower per run (another tenant): after a few memories of runs, the new
    # fixed part is what counts.
    m = model()
    sizes = (32, 64, 128, 256)
    for i in range(FIT_MEMORY):
        f = sizes[i % 4]
        m.observe_decode("v", frames=f, audio_s=f * 0.0116, compute_s=gpu_shaped(f, 2))
    for i in range(5 * FIT_MEMORY):
        f = sizes[i % 4]
        m.observe_decode("v", frames=f, audio_s=f * 0.0116,
                         compute_s=gpu_shaped(f, 2, run_s=0.02))
    assert m.voice("v").decode_overhead_s == pytest.approx(0.02, rel=0.05)


def test_a_line_falling_with_size_is_read_as_flat() -> None:
    # Noise can make longer runs look cheaper; no part per frame is negative, nor the overhead.
    m = model()
    for _ in range(50):
        for frames, took in ((32, 0.012), (256, 0.010)):
            m.observe_decode("v", frames=frames, audio_s=frames * 0.0116, compute_s=took)
    cost = m.voice("v")
    assert 0.0 <= cost.decode_overhead_s <= 0.012
    assert cost.decode_per_frame_s >= 0.0
    assert 0.009 < m.price("v", StepKind.DECODE, 128) < 0.013


def learned_gpu_model() -> CostModel:
    m = model()
    for _ in range(30):
        for frames, sides in ((32, 1), (64, 2), (128, 2), (256, 2)):
            m.observe_decode("v", frames=frames, audio_s=frames * 0.0116, sides=sides,
                             compute_s=gpu_shaped(frames, sides))
    return m


def test_one_slow_short_window_does_not_reprice_every_long_window() -> None:
    # A 32-frame window held up 40 ms (the GIL, a busy event loop): as a rate per frame it was
    # 0.6 ms a frame, and a 256-frame window's price rose threefold; uncapped, the level alone
    # would raise every price by 60%; capped at twice its price, by 12%.
    m = learned_gpu_model()
    before = m.price("v", StepKind.DECODE, 256)
    m.observe_decode("v", frames=32, audio_s=32 * 0.0116, sides=1, compute_s=0.040)
    assert before < m.price("v", StepKind.DECODE, 256) < 1.25 * before


def test_a_real_slowdown_is_still_followed_within_a_few_steps() -> None:
    # Everything now takes three times as long (the host got busy): within ten steps the
    # prices have followed most of the way.
    m = learned_gpu_model()
    before = {f: m.price("v", StepKind.DECODE, f) for f in (64, 256)}
    for i in range(10):
        frames = (64, 256)[i % 2]
        m.observe_decode("v", frames=frames, audio_s=frames * 0.0116,
                         compute_s=3 * gpu_shaped(frames, 2))
    for frames, price in before.items():
        assert m.price("v", StepKind.DECODE, frames) > 2.2 * price


def test_after_calibration_the_steps_that_follow_decide_the_slope() -> None:
    # Start-up measures one window size with every worker busy at once (on one GPU: 16 runs
    # queued together, 10.8 ms for 98 frames computed, overhead assumed the CPU prior's 2 ms).
    # The windows that follow, of every size, teach the line; a stream's share of a worker
    # (what admission sums) becomes what its steps take.
    m = model()
    m.calibrate("v", encode_per_char_s=0.0002, decode_per_frame_s=0.09e-3, chars=119, frames=98)
    for _ in range(100):
        for frames, sides in ((32, 1), (64, 2), (256, 2), (128, 2), (211, 1)):
            m.observe_decode("v", frames=frames, audio_s=frames * 256 / 22050, sides=sides,
                             compute_s=gpu_shaped(frames, sides))
        for chars in (30, 80, 140):
            m.observe_encode("v", chars=chars, speed=1.0, frames=4 * chars,
                             compute_s=0.009 + 5e-6 * chars)
    # One 80-character sentence (320 frames) in windows of up to 256: an encode and 2 windows.
    true = (0.009 + 5e-6 * 80 + 2 * gpu_shaped(160, 2)) / (320 * 256 / 22050)
    assert m.rtf("v", sentence_chars=80, window_frames=256) == pytest.approx(true, rel=0.05)
