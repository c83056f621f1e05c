"""Network helpers shared by the load tools and the tests."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port free on loopback now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
