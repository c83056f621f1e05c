"""The local autoscaler's rule (deploy/fleet/autoscale.py) and the demonstration's accounting
(loadtest/lib/autoscale_run.py). `python -m loadtest.autoscale` runs them on a real fleet."""

from __future__ import annotations

import pytest

from deploy.fleet.autoscale import DownWindow, desired_replicas
from loadtest.lib.autoscale_run import Refusal, RunResult, Sample, wanted
from loadtest.lib.recorder import StreamResult

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("current,load,expected", [
    (1, 0.88, 2),   # ceil(1 x 0.88 / 0.7) = ceil(1.26)
    (2, 0.81, 3),   # ceil(2.31)
    (3, 1.0, 3),    # ceil(4.3), clamped to max 3
    (3, 0.12, 1),   # ceil(0.51)
    (3, 0.0, 1),    # clamped to min 1
    (2, 0.75, 2),   # 0.75 / 0.7 = 1.07: inside the tolerance, no change
    (2, 0.63, 2),   # 0.9: at the tolerance's edge, no change
    (4, 0.5, 3),    # ceil(2.86): scale down
])
def test_the_hpa_formula(current: int, load: float, expected: int) -> None:
    assert desired_replicas(current, load, target=0.7, tolerance=0.1, lo=1, hi=3) == expected


def test_no_replica_serving_asks_for_the_minimum() -> None:
    assert desired_replicas(0, 0.9, target=0.7, tolerance=0.1, lo=2, hi=5) == 2


def test_scale_down_waits_out_the_window() -> None:
    window = DownWindow(window_s=15.0)
    assert window.add(0.0, 3) == 3
    assert window.add(5.0, 1) == 3  # a dip: the 3 of 5 s ago still counts
    assert window.add(14.9, 1) == 3
    assert window.add(15.1, 1) == 1  # the 3 is older than the window
    assert window.add(16.0, 2) == 2


def test_the_profile_is_linear_between_its_points() -> None:
    profile = ((0.0, 3.0), (10.0, 3.0), (40.0, 18.0), (50.0, 18.0))
    assert [wanted(profile, t) for t in (0, 5, 10, 25, 40, 45, 60)] == [3, 3, 3, 10, 18, 18, 18]


def _sample(at: float, started: tuple[str, ...], admin: dict[str, int]) -> Sample:
    return Sample(at, started, admin)


def test_a_run_is_judged_on_its_replica_counts_refusals_and_streams() -> None:
    run = RunResult(samples=[
        _sample(0, ("r1",), {"r1": 0}),
        _sample(1, ("r1", "r2"), {"r1": 0}),         # r2 warming
        _sample(2, ("r1", "r2"), {"r1": 0, "r2": 0}),
        _sample(3, ("r1", "r2", "r3"), {"r1": 0, "r2": 0, "r3": 0}),
        _sample(4, ("r1", "r2", "r3"), {"r1": 8, "r2": 0, "r3": 0}),  # r1 draining
        _sample(5, ("r2",), {"r2": 0}),
    ], streams=[StreamResult(0, 0.0, done=True)],
        refusals=[Refusal(1.0, 503, ("r2",))])
    assert [n for _, n in run.changes()] == [1, 2, 3, 2, 1]
    assert all(held for _, held in run.checks())
    assert sum(s.in_rotation == 2 for s in run.samples) == 2
    assert run.samples[1].warming == ("r2",)

    run.refusals.append(Refusal(4.5, 503, ()))  # refused with no replica warming
    run.streams.append(StreamResult(1, 0.0, done=True, stall_count=1))
    failed = {name for name, held in run.checks() if not held}
    assert failed == {"0 stalls in streams already playing",
                      "refusals only while a new replica warms"}
