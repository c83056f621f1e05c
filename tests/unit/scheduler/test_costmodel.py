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
