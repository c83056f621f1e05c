"""A fake clock for the pure modules and the server: time moves only when a test says."""

from __future__ import annotations


class FakeClock:
    """A monotonic clock that moves only when told: `now` in seconds, `advance(s)` to move it."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        """Move forward by `seconds` (never back) and return the new time."""
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go back")
        self.now += seconds
        return self.now

    def __call__(self) -> float:
        """Stand in for time.monotonic."""
        return self.now
