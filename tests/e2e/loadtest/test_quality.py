"""The quality command (loadtest/quality.py) as an operator runs it: a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

from loadtest.lib.net import free_port
from tests import REPO


def test_a_run_that_reaches_no_server_says_why_and_fails() -> None:
    url = f"ws://127.0.0.1:{free_port()}/v1/stream"  # nothing listens there
    run = subprocess.run([sys.executable, "-m", "loadtest.quality", "--url", url,
                          "--streams", "1", "--alone-runs", "1"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [row["spoken"] for row in rows] == [0, 0]
    for row in rows:
        [(why, count)] = row["failed"].items()
        assert why.startswith("ConnectionRefusedError") and count == 1, row
