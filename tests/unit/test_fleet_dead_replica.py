"""A replica that died (SIGKILL, OOM, a crash) is replaced, not counted as serving.

docs/operations.md, "When a part fails": a dead replica's fix is "start a replacement
(`scale`, or the autoscaler)". Both counted the replicas in the state file, the dead one too:
`scale N` started nothing (or drained a live replica in its place), and the autoscaler, which
waits for a sample from every replica it counts, waited for the dead one's forever and never
scaled again. Real processes stand in for the replicas (nothing listens; no HAProxy runs, so
its runtime API calls fail and are skipped as the fleet tool does).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.fleet import fleet
from deploy.fleet.__main__ import main as fleet_main
from deploy.fleet.autoscale import Autoscaler

pytestmark = pytest.mark.unit


@pytest.fixture
def dead_and_live(tmp_path: Path) -> Iterator[tuple[fleet.Fleet, subprocess.Popen[bytes]]]:
    """A fleet of r1 (its process has exited) and r2 (alive)."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    live = subprocess.Popen(["sleep", "120"])
    f = fleet.Fleet(tmp_path, fleet.State(base_port=18480, replica_args=["--drain-grace-s", "1"],
                                          next_index=3))
    f.state.replicas["r1"] = fleet.Replica("r1", 1, 18491, gone.pid)
    f.state.replicas["r2"] = fleet.Replica("r2", 2, 18492, live.pid)
    f.save()
    try:
        yield f, live
    finally:
        live.kill()
        live.wait()


def test_scale_forgets_a_dead_replica_and_keeps_the_live_one(
        dead_and_live: tuple[fleet.Fleet, subprocess.Popen[bytes]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    _, live = dead_and_live
    assert fleet_main(["--state-dir", str(tmp_path), "scale", "1"]) == 0
    assert fleet.alive(live.pid), "scale 1 drained the one live replica"
    assert list(fleet.Fleet.load(tmp_path).state.replicas) == ["r2"]
    assert "r1: its process is gone" in capsys.readouterr().out


def test_the_autoscaler_replaces_a_dead_replica(
        dead_and_live: tuple[fleet.Fleet, subprocess.Popen[bytes]]) -> None:
    f, _ = dead_and_live
    said: list[str] = []
    scaler = Autoscaler(f, target=0.7, lo=2, hi=3, tolerance=0.1, down_window_s=300,
                        say=said.append)
    # Prometheus has a sample from the live replica only (the dead one exports nothing).
    scaler.loads = lambda: {"r2": 0.1}  # type: ignore[method-assign]
    started: list[int] = []
    scaler.scale_up = started.append  # type: ignore[method-assign,assignment]
    decision = scaler.step()
    assert (decision.action, decision.current, started) == ("up", 1, [1])
    assert scaler.serving() == ["r2"]
    assert any("r1: its process is gone" in line for line in said)
