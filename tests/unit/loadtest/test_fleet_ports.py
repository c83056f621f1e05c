"""The fleet harness's ports lie below the kernel's ephemeral range."""

from __future__ import annotations

import socket

from loadtest.lib.fleet_scenarios import _ephemeral_low, free_port_block


def test_a_fleets_ports_are_free_and_below_the_ephemeral_range() -> None:
    # A port inside the range can be taken by any outgoing connection's local end before the
    # replica binds it (CI once failed with "replica r5: address already in use").
    low = _ephemeral_low()
    for _ in range(20):
        base = free_port_block(20)
        assert base >= 10000 and base + 20 <= low
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", base + 19))  # free
    with socket.socket() as sock:  # and where a bind to port 0 lands: inside the range
        sock.bind(("127.0.0.1", 0))
        assert sock.getsockname()[1] >= low
