"""synthesis/calibration.py: what start-up measures becomes the cost model's figures."""

from __future__ import annotations

import pytest

from litestream.scheduler import CostModel
from litestream.synthesis.calibration import Calibration, apply


def test_measured_runs_replace_the_priors_and_count_context_frames() -> None:
    model = CostModel()
    model.register("v", context_frames=10)
    # Two workers, each: 100 chars encoded in 0.05 s, 200 frames decoded in 4 windows in 0.56 s.
    runs = [Calibration(chars=100, encode_s=0.05, frames=200, decode_s=0.56, windows=4)] * 2
    apply(model, "v", runs)
    cost = model.voice("v")
    assert cost.encode_per_char_s == pytest.approx(0.0005)
    # Each window also decoded 10 context frames on each side inside the sentence (the first
    # window has none on its left, the last none on its right): 200 + 6 * 10 = 260 computed.
    assert cost.decode_per_frame_s == pytest.approx(0.56 / 260)
    assert cost.frames_per_char == pytest.approx(2.0)
    assert cost.encode_samples >= 5 and cost.decode_samples >= 5  # weighs as observations
