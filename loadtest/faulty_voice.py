"""The fault-injecting engine: a real voice whose runs fail on demand, and a server to run it.

`FaultyVoice` wraps the bundled voice and injects the `Fault` that a marker word in a chunk's
text names (`MARKERS`: `Faultraise`, `Faulthang`, `Faultslow`, `Faultwedge`, `Faultdie`);
`FaultPlan`, shared by its sessions, counts what was injected. `faulty_server` starts an
in-process server on a free loopback port with that voice and short watchdog limits. Used by
the scenarios in loadtest/faults.py and by tests/test_workers.py.
"""

from __future__ import annotations

import contextlib
import enum
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from litestream.errors import SynthesisError

# ---------------------------------------------------------------- the fault-injecting engine

class Fault(enum.Enum):
    RAISE = "raise"  # the engine raises (a bad input, an ORT error)
    HANG = "hang"    # a run that never finishes on its own; the real ORT terminate stops it
    SLOW = "slow"    # the run takes 3x as long as it should
    WEDGE = "wedge"  # stuck outside ORT, deaf to terminate: the worker must be replaced
    DIE = "die"      # the worker thread itself dies


MARKERS: dict[Fault, str] = {fault: "Fault" + fault.value for fault in Fault}


class WorkerKilled(BaseException):
    """Escapes every `except Exception`: the worker thread dies of it."""


class FaultPlan:
    """Which faults to inject (by marker word in a chunk's text) and what was injected.

    Shared by every session of a FaultyVoice; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = threading.local()  # the fault marked by this thread's last text
        self.injected: dict[Fault, int] = dict.fromkeys(Fault, 0)
        self.released = threading.Event()  # frees wedged runs (at shutdown)
        # Cleared: new sessions (a replacement worker's) wait, so a test can see the pool
        # with one worker fewer before the replacement is warm.
        self.sessions_allowed = threading.Event()
        self.sessions_allowed.set()

    def mark(self, text: str) -> None:
        faults = [fault for fault, marker in MARKERS.items() if marker in text]
        if faults:
            self._pending.fault = faults[0]

    def take(self) -> Fault | None:
        fault: Fault | None = getattr(self._pending, "fault", None)
        self._pending.fault = None
        if fault is not None:
            with self._lock:
                self.injected[fault] += 1
        return fault

    def release(self) -> None:
        self.released.set()
        self.sessions_allowed.set()


class FaultyVoice:
    """A real voice whose runs fail on demand. Everything not overridden is the real one's."""

    def __init__(self, inner: Any, plan: FaultPlan) -> None:
        self._inner = inner
        self.plan = plan

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @property
    def sample_rate(self) -> int:
        return int(self._inner.sample_rate)

    def phoneme_ids(self, text: str) -> list[int]:
        self.plan.mark(text)
        ids: list[int] = self._inner.phoneme_ids(text)
        return ids

    def encode(self, ids: Sequence[int], speed: float = 1.0, *, run_options: Any = None) -> Any:
        """A sentence's front pass: where a marked sentence's fault strikes."""
        fault = self.plan.take()
        if fault is Fault.RAISE:
            raise SynthesisError("injected: the engine raised")
        if fault is Fault.DIE:
            raise WorkerKilled("injected: the worker thread dies")
        if fault is Fault.WEDGE:
            # Stuck where ORT's terminate cannot reach (a native call, a lock).
            self.plan.released.wait()
            raise SynthesisError("injected: wedged run released")
        if fault is Fault.HANG:
            # A run that does not end on its own: run the real model over and over with the
            # caller's RunOptions, until ORT itself refuses because terminate was set.
            while True:
                self._inner.encode(ids, speed, run_options=run_options)
                self._inner.synthesize_ids([ids], speed, run_options=run_options)
        started = time.perf_counter()
        latent = self._inner.encode(ids, speed, run_options=run_options)
        if fault is Fault.SLOW:
            time.sleep(2 * (time.perf_counter() - started))
        return latent

    def synthesize(self, text: str, speed: float = 1.0) -> np.ndarray:
        audio: np.ndarray = self._inner.synthesize(text, speed)
        return audio

    def new_session(self) -> FaultyVoice:
        self.plan.sessions_allowed.wait()
        return FaultyVoice(self._inner.new_session(), self.plan)

    def warmup(self) -> None:
        self._inner.warmup()


# ---------------------------------------------------------------- in-process server

FAULT_SERVER_SETTINGS: dict[str, Any] = {
    # Short limits so a scenario takes seconds: a hung run is stopped after the floor (3 s:
    # above any honest chunk on a loaded 2-core box), a wedged worker replaced after the
    # grace, a client that stops reading cut after 2 s.
    "watchdog_floor_s": 3.0,
    "watchdog_grace_s": 1.0,
    "slow_reader_timeout_s": 2.0,
    "lookahead_s": 2.0,
    "max_lookahead_s": 4.0,
    # No sentence cache: bystanders repeat their text from scenario to scenario, and a hit
    # would spare the workers the very load a fault must not disturb.
    "cache_bytes": 0,
}


@contextlib.asynccontextmanager
async def faulty_server(plan: FaultPlan, **overrides: Any) -> Any:
    """A real server on a free loopback port whose voice is the bundled one in a FaultyVoice."""
    from litestream import config as config_mod
    from litestream.engine import PiperVoice
    from litestream.server import LitestreamServer

    settings = {**FAULT_SERVER_SETTINGS, "workers": 2, "deterministic": True, **overrides}
    config = config_mod.build(environ={}, host="127.0.0.1", port=free_port(), **settings)
    voice = PiperVoice.load(deterministic=settings["deterministic"])
    server = LitestreamServer(config, voices={voice.info.id: FaultyVoice(voice, plan)})  # type: ignore[dict-item]
    await server.start()
    try:
        yield server
    finally:
        plan.release()
        await server.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
