"""Joints between chunks cut mid-clause lose the silence that would sound like a stutter."""

from __future__ import annotations

import numpy as np
import pytest

from litestream.joints import ends_mid_clause, smooth

RATE = 1000  # 1 sample = 1 ms keeps the arithmetic readable


def padded(lead_ms: int, speech_ms: int, tail_ms: int) -> np.ndarray:
    return np.concatenate([np.zeros(lead_ms), np.full(speech_ms, 0.5), np.zeros(tail_ms)]
                          ).astype(np.float32)


@pytest.mark.parametrize("text,mid", [
    ("The morning train", True), ("was late again,", False), ("It ended.", False),
    ("Really?", False), ("He said 'go'", False), ("in 1999", True), ("", False),
])
def test_ends_mid_clause(text: str, mid: bool) -> None:
    assert ends_mid_clause(text) is mid


def test_trims_only_the_silence_at_a_mid_clause_cut() -> None:
    audio = padded(60, 500, 150)
    assert smooth(audio, RATE, after_cut=False, before_cut=False) is audio
    tail = smooth(audio, RATE, after_cut=False, before_cut=True)
    assert tail.size == 60 + 500 + 30
    lead = smooth(audio, RATE, after_cut=True, before_cut=False)
    assert lead.size == 10 + 500 + 150
    both = smooth(audio, RATE, after_cut=True, before_cut=True)
    assert both.size == 10 + 500 + 30
    assert np.count_nonzero(both) == 500  # no speech lost


def test_silent_or_empty_audio_is_left_alone() -> None:
    silent = np.zeros(100, dtype=np.float32)
    assert smooth(silent, RATE, after_cut=True, before_cut=True) is silent
    empty = np.zeros(0, dtype=np.float32)
    assert smooth(empty, RATE, after_cut=True, before_cut=True) is empty
