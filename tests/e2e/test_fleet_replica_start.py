"""A replica the fleet starts takes a port it can have, and one that fails to start does not
stop the autoscaler.

Found as an operator: with the port of the fleet's next replica held by another program, the
autoscaler's scale-up started a replica that exited at once ("cannot listen on ...: Address
already in use") and the autoscaler died with a FleetError traceback, leaving the fleet
without its scaler. Replica indices also only grew (r1, r2, ... for every replica ever
started), so a long autoscaling run walked the replicas' ports out of the fleet's block.
No HAProxy runs here: a replica is started and waited for (`/readyz`), and the runtime API
calls the fleet tool makes fail and are skipped, as they are when HAProxy is gone.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.fleet import fleet
from deploy.fleet.autoscale import Autoscaler


def free_base() -> int:
    """A base port whose replica ports P+11..P+13 are free."""
    for base in range(18300, 18340, 5):
        if all(fleet._port_free(base + 10 + i) for i in range(1, 4)):
            return base
    raise AssertionError("no free ports")


@pytest.fixture
def state(tmp_path: Path) -> Iterator[fleet.Fleet]:
    f = fleet.Fleet(tmp_path, fleet.State(
        base_port=free_base(), next_index=7,  # as after six replicas came and went
        replica_args=["--voice", "synthetic", "--no-kokoro", "--workers", "1"]))
    f.save()
    yield f
    for replica in list(f.state.replicas.values()):
        fleet.stop_pid(replica.pid, 10)


def test_a_new_replica_takes_the_lowest_index_whose_port_is_free(state: fleet.Fleet) -> None:
    f = state
    placeholder = fleet.spawn([sys.executable, "-c", "import time; time.sleep(60)"],
                              f.dir / "r1.log")
    f.state.replicas["r1"] = fleet.Replica("r1", 1, f.ports.replica(1), placeholder)
    with socket.socket() as other:  # another program holds r2's port
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do
        other.bind(("127.0.0.1", f.ports.replica(2)))
        other.listen()
        replica = f.start_replica()
        assert (replica.name, replica.port) == ("r3", f.ports.replica(3))
        f.wait_ready(replica, timeout_s=60)  # it can listen, so it turns ready
    log = (f.dir / "r3.log").read_text()
    assert log.startswith(fleet.LOG_START)


def test_the_autoscaler_goes_on_when_a_replica_fails_to_start(state: fleet.Fleet) -> None:
    f = state
    f.state.replica_args.append("--no-such-flag")  # every replica exits at start
    f.save()
    said: list[str] = []
    scaler = Autoscaler(f, target=0.7, lo=1, hi=3, tolerance=0.1, down_window_s=300,
                        say=said.append)
    # Prometheus' figure: no replica yet, so nothing to average; one replica is wanted (min).
    scaler.loads = dict  # type: ignore[method-assign,assignment]
    first = scaler.step()
    assert first.action == "up"
    assert any("up: failed" in line and "no-such-flag" in line for line in said)
    assert f.state.replicas == {}, "the replica that failed is forgotten"
    assert fleet.Fleet.load(f.dir).state.replicas == {}
    # The next decision waits instead of starting a replica every second.
    assert scaler.step().action == "up-retry-wait"
