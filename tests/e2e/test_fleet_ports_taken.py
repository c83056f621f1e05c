"""`up` refuses a base port whose fleet ports are taken, instead of seeming to start.

Found with two fleets on one base port (two state directories, as two checkouts have): the
second `up` reported its fleet up. Its HAProxy shared the public port with the first (HAProxy
binds with SO_REUSEPORT, so the kernel split new clients between the two fleets), its Redis and
Prometheus exited at once (port in use), and `up` did not notice, since it waits only until
each port answers, and the first fleet's parts answered.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from deploy.fleet import fleet


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def free_base() -> int:
    """A base port whose P..P+3 nothing listens on."""
    for base in range(18600, 18700, 10):
        if not any(listening(base + k) for k in range(4)):
            return base
    raise AssertionError("no free ports")


@pytest.mark.parametrize("offset,what", [(0, "haproxy"), (3, "redis")])
def test_up_refuses_a_taken_port_and_starts_nothing(tmp_path: Path, offset: int,
                                                    what: str) -> None:
    base = free_base()
    with socket.socket() as holder:
        # What HAProxy does: SO_REUSEPORT, which a second HAProxy would share silently.
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", base + offset))
        holder.listen()
        with pytest.raises(fleet.FleetError, match=rf"port {base + offset} \({what}\)"):
            started = fleet.Fleet.up(1, base_port=base, state_dir=tmp_path,
                                     replica_args=["--voice", "synthetic"], say=lambda *_: None)
            started.down(say=lambda *_: None)  # it seemed to start: stop what it started
    assert not (tmp_path / "state.json").exists()

