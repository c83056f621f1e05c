"""A fake event loop and worker pool: the dispatcher hands batches to workers that hold them
until the test completes them (no threads, no model)."""

from __future__ import annotations

from typing import Any

from litestream.scheduler import SynthesisStep


class FakeLoop:
    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Any, *args: Any) -> Any:
        return _Handle()  # wake-ups are replaced by the driver's ticks


class _Handle:
    def cancel(self) -> None:
        pass


class FakePool:
    """Workers that hold batches until the test completes them."""

    def __init__(self, workers: int) -> None:
        self.idle = workers
        self.running: list[list[SynthesisStep]] = []

    def dispatch(self, steps: list[SynthesisStep]) -> None:
        assert self.idle > 0, "dispatch to a busy pool"
        assert len({(s.kind, s.voice, s.speed, s.frames) for s in steps}) == 1, "mixed batch"
        self.idle -= 1
        self.running.append(list(steps))
