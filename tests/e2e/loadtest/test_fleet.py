"""The fleet test (`python -m loadtest.fleet` runs the same scenarios and prints the figures).

A real fleet: HAProxy, Redis, Prometheus and three `litestream serve` replicas of 12 streams
each (the synthetic voice), streams offered through HAProxy's public port. Asserted: the
fleet admits exactly its capacity and refuses the rest with 503 + Retry-After; a replica
drained with SIGTERM finishes its streams and gets no new one; a replica killed with SIGKILL
ends only its own streams, HAProxy takes it out and new streams go to the others; a sentence
synthesized on one replica is a hit on another (Redis); with Redis stopped mid-run, every
stream is still spoken to its end. Stalls and
seconds are timing: printed here, asserted by the command (docs/style.md: tests).

This test never skips: without haproxy, redis-server or prometheus it fails and says to run
`bash deploy/fleet/install-deps.sh` (.ci/run does).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from loadtest.lib.fleet_scenarios import SCENARIOS, Report, Settings, run

pytestmark = [pytest.mark.fleet, pytest.mark.asyncio]


async def test_fleet_behind_haproxy(tmp_path: Path) -> None:
    missing = [t for t in ("haproxy", "redis-server", "prometheus") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"fleet test prerequisites missing: {', '.join(missing)}. Run "
                    "`bash deploy/fleet/install-deps.sh` (apt-get install haproxy "
                    "redis-server prometheus).", pytrace=False)
    lines: list[str] = []
    report: Report = await run(list(SCENARIOS), Settings(), tmp_path, say=lines.append)
    for check in report.checks:
        print(f"{'PASS' if check.ok else 'FAIL'}{' (timing)' if check.timing else ''}  "
              f"{check.name}: {check.detail}")
    print("\n".join(report.figures))
    failed = [f"{c.name}: {c.detail}" for c in report.checks if not c.timing and not c.ok]
    assert not failed, "\n".join(failed)
    assert {c.name.split(":")[0] for c in report.checks} == set(SCENARIOS)
