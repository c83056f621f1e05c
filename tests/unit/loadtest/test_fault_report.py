"""What a fault scenario's report says (loadtest/lib/fault_scenarios.py): plain calls."""

from __future__ import annotations

from loadtest.lib.fault_scenarios import Outcome
from loadtest.lib.recorder import StreamResult

REFUSED = "ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 9)"


def test_a_stream_that_never_connected_is_reported_so_not_as_closed_normally() -> None:
    outcome = Outcome("malformed", "fuzzed frames",
                      faulted=[StreamResult(0, 0.0, connect_error=REFUSED)],
                      bystanders=[StreamResult(100, 0.0, connect_error=REFUSED),
                                  StreamResult(101, 0.0, connect_error=REFUSED)])
    report = outcome.report()
    assert f"faulted #0  not connected: {REFUSED}" in report
    assert "close normal" not in report
    assert f"not connected 2 ({REFUSED})" in report
    assert not outcome.bystanders_ok and "== malformed: FAIL" in report
