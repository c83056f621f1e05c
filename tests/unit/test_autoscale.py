"""The local autoscaler's rule (deploy/fleet/autoscale.py) and the demonstration's accounting
(loadtest/lib/autoscale_run.py). `python -m loadtest.autoscale` runs them on a real fleet."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deploy.fleet import fleet
from deploy.fleet.autoscale import Autoscaler, DownWindow, desired_replicas
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


def test_a_started_autoscaler_waits_a_window_before_it_drains(tmp_path: Path) -> None:
    """docs/operations.md, "The local autoscaler": scale-down takes the highest recommendation
    of the last window, as the HPA's does, and the HPA counts the replicas it found as one
    (recordInitialRecommendation). Started (or restarted) on an idle fleet of 2, the local
    one drained a replica at its first decision, 1 s in: a dip at a restart cost a replica."""
    procs = [subprocess.Popen(["sleep", "120"]) for _ in range(2)]
    try:
        f = fleet.Fleet(tmp_path, fleet.State(base_port=18480, replica_args=[], next_index=3))
        for i, proc in enumerate(procs, start=1):
            f.state.replicas[f"r{i}"] = fleet.Replica(f"r{i}", i, 18490 + i, proc.pid)
        f.save()
        scaler = Autoscaler(f, target=0.7, lo=1, hi=3, tolerance=0.1, down_window_s=300,
                            say=lambda line: None)
        scaler.loads = lambda: {"r1": 0.0, "r2": 0.0}  # type: ignore[method-assign]
        drained: list[int] = []
        scaler.scale_down = drained.append  # type: ignore[method-assign]
        decision = scaler.step()
        assert (decision.recommended, decision.action, drained) == (1, "hold", [])
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_the_window_counts_the_replicas_found_at_its_start() -> None:
    window = DownWindow(window_s=15.0)
    assert window.add(0.0, 1, current=3) == 3  # the 3 found, as a recommendation at 0 s
    assert window.add(14.9, 1, current=3) == 3
    assert window.add(15.1, 1, current=3) == 1  # only a window's start is seeded
