"""The soak's memory verdict (loadtest.lib.endurance.memory_growth): pure arithmetic on samples."""

from __future__ import annotations

import pytest

from loadtest.lib.endurance import memory_growth


def _samples(own_mb: list[float], cache_mb: float = 0.0) -> list[tuple[float, float, float]]:
    """One sample every 10 s: (t, rss, cache) with rss = own + cache."""
    return [(10.0 * i, mb + cache_mb, cache_mb) for i, mb in enumerate(own_mb)]


def test_swings_between_samples_are_not_growth() -> None:
    # 30 minutes of RSS swinging 740 <-> 810 MB as runs hold their activations.
    swinging = [740.0 if i % 2 else 810.0 for i in range(180)]
    base, final, growth = memory_growth(_samples(swinging), warm_s=300.0)
    assert 770.0 < base < 780.0 and 770.0 < final < 780.0
    assert abs(growth) < 1.0


def test_a_steady_leak_is_growth() -> None:
    leaking = [800.0 + 0.5 * i for i in range(180)]  # +3 MB a minute
    base, final, growth = memory_growth(_samples(leaking), warm_s=300.0)
    assert final - base > 60.0
    assert growth > 5.0


def test_the_bounded_cache_is_reported_apart() -> None:
    # The cache fills from 0 to 256 MB over the soak; the rest of the process stays flat.
    own = [800.0] * 180
    samples = [(10.0 * i, 800.0 + 256.0 * i / 179, 256.0 * i / 179) for i in range(180)]
    assert memory_growth(samples, warm_s=300.0)[2] == pytest.approx(0.0)
    assert memory_growth(_samples(own), warm_s=300.0)[0] == 800.0
