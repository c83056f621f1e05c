"""`python -m deploy.fleet restart PART` starts HAProxy, Redis or Prometheus again after it died.

docs/operations.md, "When a part fails", says to restart Redis or HAProxy when it stops; the
fleet tool had no way to (`up` refuses while the fleet runs), `status` did not say a part was
gone, and an HAProxy started by hand has none of the replicas, which are added at run time.
"""

from __future__ import annotations

import os
import signal
import urllib.request
from pathlib import Path

import pytest

from deploy.fleet import fleet
from deploy.fleet.__main__ import main as fleet_main


def free_base() -> int:
    """A base port whose P..P+3 and first replica port are free."""
    for base in range(18320, 18345, 5):
        if all(fleet._port_free(base + k) for k in (0, 1, 2, 3, 11)):
            return base
    raise AssertionError("no free ports")


def test_restart_brings_back_haproxy_with_its_replicas_and_redis(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = fleet.Fleet.up(1, base_port=free_base(), state_dir=tmp_path, say=lambda *_: None,
                       replica_args=["--voice", "synthetic", "--no-kokoro", "--workers", "1"])
    try:
        for part in ("haproxy", "redis"):
            os.kill(f.state.pids[part], signal.SIGKILL)
            fleet.wait_exit(f.state.pids[part], 10)
        assert fleet_main(["--state-dir", str(tmp_path), "status"]) == 0
        assert "GONE: python -m deploy.fleet restart redis" in capsys.readouterr().out
        assert fleet_main(["--state-dir", str(tmp_path), "restart", "haproxy"]) == 0
        assert fleet_main(["--state-dir", str(tmp_path), "restart", "redis"]) == 0
        assert fleet_main(["--state-dir", str(tmp_path), "restart", "redis"]) == 1  # running
        f = fleet.Fleet.load(tmp_path)
        fleet.wait_until("r1 UP in the new HAProxy",
                         lambda: f.server_states().get("r1") == "UP", 10)
        with urllib.request.urlopen(f"{f.http_url}/readyz", timeout=5) as resp:
            assert (resp.status, resp.headers["X-Litestream-Replica"]) == (200, "r1")
        assert fleet._tcp_open(f.ports.redis)
        assert "GONE" not in f.describe()
    finally:
        f.on_disk().down(say=lambda *_: None)
