"""The autoscaler follows the fleet's state file instead of a copy of it taken at start.

Found as an operator, with the autoscaler running in one terminal: `make fleet-stop` in
another stopped the fleet, and the autoscaler went on, wrote the state file back (a fleet of
no replicas whose parts were gone) and, once `make fleet` had started a new fleet on the same
ports, would have scaled that one from its old copy, writing the new fleet's replicas out of
the state. Likewise a replica added by `scale` while it ran was never counted, and its next
save dropped it from the state: `make fleet-stop` then left it running. Real processes stand in
for the replicas; Prometheus' figure is given (`loads`), no HAProxy runs.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.fleet import fleet
from deploy.fleet.autoscale import Autoscaler

pytestmark = pytest.mark.unit


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def scaler_for(tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]) -> Autoscaler:
    sleepers.append(subprocess.Popen(["sleep", "120"]))
    f = fleet.Fleet(tmp_path, fleet.State(base_port=18480, replica_args=[]))
    f.state.replicas["r1"] = fleet.Replica("r1", 1, 18491, sleepers[-1].pid)
    f.save()
    scaler = Autoscaler(fleet.Fleet.load(tmp_path), target=0.7, lo=1, hi=3, tolerance=0.1,
                        down_window_s=300, say=lambda _: None)
    scaler.loads = lambda: {"r1": 0.7, "r2": 0.7}  # type: ignore[method-assign]
    return scaler


def test_a_replica_added_by_scale_meanwhile_is_counted_and_kept(
        tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]) -> None:
    scaler = scaler_for(tmp_path, sleepers)
    assert scaler.step().current == 1
    other = fleet.Fleet.load(tmp_path)  # `python -m deploy.fleet scale 2`, another process
    sleepers.append(subprocess.Popen(["sleep", "120"]))
    other.state.replicas["r2"] = fleet.Replica("r2", 2, 18492, sleepers[-1].pid)
    other.save()
    decision = scaler.step()
    assert (decision.current, decision.action) == (2, "hold")
    scaler.fleet.save()  # whatever the autoscaler writes next keeps r2
    assert set(fleet.Fleet.load(tmp_path).state.replicas) == {"r1", "r2"}


def test_the_autoscaler_stops_when_the_fleet_is_stopped_and_does_not_bring_it_back(
        tmp_path: Path, sleepers: list[subprocess.Popen[bytes]]) -> None:
    scaler = scaler_for(tmp_path, sleepers)
    assert scaler.step().action == "hold"
    sleepers[0].kill()  # `make fleet-stop`: the replicas exit, the state file goes
    sleepers[0].wait()
    (tmp_path / "state.json").unlink()
    assert scaler.step().action == "fleet-gone"
    scaler.fleet.save()
    assert not (tmp_path / "state.json").exists()
    done = threading.Event()
    runner = threading.Thread(target=lambda: (scaler.run(0.05, threading.Event(), False),
                                              done.set()), daemon=True)
    runner.start()
    assert done.wait(10), "the autoscaler went on with the fleet gone"
