"""Stopping a local fleet stops what its state file lists, not what a stale copy of it knew.

The autoscaler's demo (loadtest.autoscale) holds the Fleet it started with one replica; the
autoscaler, another process, starts and stops replicas and rewrites the state file. The
demo's teardown used its own copy, so replicas the autoscaler had started were left running.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deploy.fleet import fleet

pytestmark = pytest.mark.unit


def test_teardown_stops_a_replica_another_process_started(tmp_path: Path) -> None:
    demo = fleet.Fleet(tmp_path, fleet.State(base_port=18480,
                                             replica_args=["--drain-grace-s", "1"]))
    demo.save()
    # What the autoscaler does from its own process: load the fleet, start a replica, save.
    # A real process stands in for the replica (nothing listens: the drain is a SIGTERM).
    replica = subprocess.Popen(["sleep", "120"])
    try:
        scaler = fleet.Fleet.load(tmp_path)
        scaler.state.replicas["r2"] = fleet.Replica("r2", 2, 18492, replica.pid)
        scaler.save()
        assert demo.state.replicas == {}  # the demo's copy never saw it
        demo.on_disk().down(say=lambda *_: None)  # what running_fleet's teardown does
        assert not fleet.alive(replica.pid)
        assert not (tmp_path / "state.json").exists()
    finally:
        replica.kill()
        replica.wait()


def test_teardown_without_a_state_file_uses_the_fleet_it_has(tmp_path: Path) -> None:
    demo = fleet.Fleet(tmp_path, fleet.State(base_port=18480, replica_args=[]))
    assert demo.on_disk() is demo
