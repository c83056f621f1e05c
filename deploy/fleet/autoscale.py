"""python -m deploy.fleet.autoscale: scale a local fleet on litestream's own load signal.

    python -m deploy.fleet.autoscale [--target 0.7] [--min 1] [--max 3] [--interval-s 1]
                                     [--down-window-s 300] [--state-dir .fleet]

The Kubernetes HPA's rule, applied to Prometheus' value of `litestream_load` (each replica's
admitted load over its capacity, 0..1; 1 when it refuses new streams):

    desired = ceil(current x mean(litestream_load over the serving replicas) / target)

within [min, max], and no change while |mean / target - 1| <= tolerance (0.1, the HPA's).
Scale-up acts at once: new replicas are started and join HAProxy (runtime API `add server`)
once their /readyz is green; the next decision waits until Prometheus has a sample from every
serving replica. Scale-down takes the largest recommendation of the last `--down-window-s`
(the HPA's stabilization window, 300 s by default, so a dip does not drain replicas that are
needed again a minute later; the replicas found at the start count as one recommendation, as
the HPA's do) and drains the replicas with the fewest open streams: HAProxy
sends them nothing new, SIGTERM, they exit when their streams are done, then they leave
HAProxy. Without a figure from Prometheus it holds the replica count and says so once.

Every decision is printed as one line (with --json, one JSON object).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy.fleet.fleet import DEFAULT_STATE_DIR, Fleet, FleetError

LOAD_QUERY = 'litestream_load{job="litestream"}'
UP_RETRY_S = 10.0  # after a scale-up whose replica did not start, wait this long to try again


def desired_replicas(current: int, mean_load: float, target: float, tolerance: float,
                     lo: int, hi: int) -> int:
    """The HPA's formula: ceil(current x metric / target), unchanged inside the tolerance,
    clamped to [lo, hi]."""
    if current <= 0:
        return lo
    ratio = mean_load / target
    if abs(ratio - 1.0) <= tolerance:
        return max(lo, min(hi, current))
    return max(lo, min(hi, math.ceil(current * ratio)))


class DownWindow:
    """The HPA's scale-down stabilization: the highest recommendation of the last window."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._seen: deque[tuple[float, int]] = deque()

    def add(self, now: float, desired: int, current: int | None = None) -> int:
        """Record `desired` at `now`; the highest of the window. The first call also records
        `current`, the replicas found, at `now`, as the HPA does (recordInitialRecommendation):
        so a started or restarted autoscaler drains nothing for a window, where it drained an
        idle replica at its first decision."""
        if not self._seen and current is not None:
            self._seen.append((now, current))
        self._seen.append((now, desired))
        while self._seen and self._seen[0][0] < now - self.window_s:
            self._seen.popleft()
        return max(d for _, d in self._seen)


@dataclass
class Decision:
    at_s: float
    current: int
    mean_load: float | None
    loads: dict[str, float]
    recommended: int
    desired: int
    action: str  # hold | up | down | no-metric | wait-samples | up-retry-wait | fleet-gone

    def line(self) -> str:
        load = "-" if self.mean_load is None else f"{self.mean_load:.2f}"
        per = " ".join(f"{k}={v:.2f}" for k, v in sorted(self.loads.items()))
        return (f"t={self.at_s:6.1f}s replicas={self.current} load={load} [{per}] "
                f"recommended={self.recommended} desired={self.desired} {self.action}")


class Autoscaler:
    def __init__(self, fleet: Fleet, *, target: float, lo: int, hi: int, tolerance: float,
                 down_window_s: float, say: Callable[[str], None]) -> None:
        self.fleet = fleet
        self.target = target
        self.lo = lo
        self.hi = hi
        self.tolerance = tolerance
        self.window = DownWindow(down_window_s)
        self.say = say
        self.draining: set[str] = set()
        self._lock = threading.Lock()
        self._t0 = time.monotonic()
        self._no_metric_said = False
        self._up_after = 0.0  # monotonic: no scale-up before this, after one that failed

    def serving(self) -> list[str]:
        with self._lock:
            return sorted((n for n in self.fleet.state.replicas if n not in self.draining),
                          key=lambda n: self.fleet.state.replicas[n].index)

    def loads(self) -> dict[str, float]:
        """Prometheus' newest litestream_load per replica (a warming or draining replica
        exports no sample, so it has none here)."""
        return {labels.get("replica", ""): value
                for labels, value in self.fleet.prometheus_query(LOAD_QUERY)}

    def step(self) -> Decision:
        now = time.monotonic() - self._t0
        # The replicas as the state file says: `scale` may have changed them meanwhile.
        if not self.fleet.reload():
            self.say(f"t={now:6.1f}s the fleet was stopped (its state file is gone)")
            return Decision(now, 0, None, {}, 0, 0, "fleet-gone")
        # A replica that died is no longer serving: forget it, or it would be counted (and
        # waited for, since it exports no sample) forever and never replaced.
        for name in self.fleet.reap(self.serving()):
            self.say(f"t={now:6.1f}s {name}: its process is gone; removed from the fleet")
        serving = self.serving()
        try:
            loads = {n: v for n, v in self.loads().items() if n in serving}
        except (OSError, FleetError, ValueError) as exc:
            if not self._no_metric_said:
                self.say(f"t={now:6.1f}s no figure from Prometheus ({exc}); holding at "
                         f"{len(serving)} replicas")
                self._no_metric_said = True
            return Decision(now, len(serving), None, {}, len(serving), len(serving), "no-metric")
        self._no_metric_said = False
        if set(loads) != set(serving):
            # A replica that just joined has not been scraped yet: decide on every replica.
            return Decision(now, len(serving), None, loads, len(serving), len(serving),
                            "wait-samples")
        mean = sum(loads.values()) / len(loads) if loads else 0.0
        current = len(serving)
        recommended = desired_replicas(current, mean, self.target, self.tolerance,
                                       self.lo, self.hi)
        stabilized = self.window.add(now, recommended, current)
        if recommended > current and time.monotonic() < self._up_after:
            decision = Decision(now, current, mean, loads, recommended, current, "up-retry-wait")
        elif recommended > current:
            decision = Decision(now, current, mean, loads, recommended, recommended, "up")
            self.say(decision.line())
            self.scale_up(recommended - current)
        elif stabilized < current:
            decision = Decision(now, current, mean, loads, recommended, stabilized, "down")
            self.say(decision.line())
            self.scale_down(current - stabilized)
        else:
            decision = Decision(now, current, mean, loads, recommended, current, "hold")
        return decision

    def scale_up(self, count: int) -> None:
        t0 = time.monotonic()
        try:
            started = self.fleet.add_replicas(count)
        except (FleetError, OSError) as exc:
            # A replica that exited at start (a bad flag, no memory) or never turned ready
            # has been stopped and forgotten; the others joined. The autoscaler goes on, and
            # tries again after a pause, not every second.
            self._up_after = time.monotonic() + UP_RETRY_S
            self.say(f"t={time.monotonic() - self._t0:6.1f}s up: failed, trying again in "
                     f"{UP_RETRY_S:.0f} s: {exc}")
            return
        self.say(f"t={time.monotonic() - self._t0:6.1f}s up: "
                 f"{', '.join(r.name for r in started)} ready and in HAProxy after "
                 f"{time.monotonic() - t0:.1f} s")

    def scale_down(self, count: int) -> None:
        """Drain the replicas with the fewest open streams (the newest on a tie), each in
        its own thread, so the loop goes on deciding while they finish their streams."""
        sessions = self.fleet.server_sessions()
        serving = self.serving()
        chosen = sorted(serving, key=lambda n: (sessions.get(n, 0),
                                                -self.fleet.state.replicas[n].index))[:count]
        for name in chosen:
            with self._lock:
                self.draining.add(name)
            threading.Thread(target=self._drain, args=(name, sessions.get(name, 0)),
                             daemon=True).start()

    def _drain(self, name: str, streams: int) -> None:
        t0 = time.monotonic()
        self.say(f"t={t0 - self._t0:6.1f}s down: draining {name} ({streams} open streams)")
        self.fleet.drain(name)
        with self._lock:
            self.draining.discard(name)
        self.say(f"t={time.monotonic() - self._t0:6.1f}s down: {name} drained and stopped "
                 f"after {time.monotonic() - t0:.1f} s")

    def run(self, interval_s: float, stop: threading.Event, log_every: bool) -> None:
        while not stop.is_set():
            decision = self.step()
            if decision.action == "fleet-gone":
                break
            if log_every and decision.action not in ("up", "down"):
                self.say(decision.line())
            stop.wait(interval_s)
        while self.draining:  # let drains in flight finish
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.fleet.autoscale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--target", type=float, default=0.7, help="litestream_load to hold")
    parser.add_argument("--tolerance", type=float, default=0.1)
    parser.add_argument("--min", dest="lo", type=int, default=1)
    parser.add_argument("--max", dest="hi", type=int, default=3)
    parser.add_argument("--interval-s", type=float, default=1.0)
    parser.add_argument("--down-window-s", type=float, default=300.0,
                        help="scale-down stabilization window (the HPA's default: 300 s)")
    parser.add_argument("--verbose", action="store_true", help="print every decision")
    args = parser.parse_args(argv)
    if not 0 < args.target <= 1 or not 1 <= args.lo <= args.hi:
        parser.error("need 0 < target <= 1 and 1 <= min <= max")
    try:
        fleet = Fleet.load(args.state_dir)
    except FleetError as exc:
        print(f"autoscale: {exc}", file=sys.stderr)
        return 1

    def say(line: str) -> None:
        print(line, flush=True)

    scaler = Autoscaler(fleet, target=args.target, lo=args.lo, hi=args.hi,
                        tolerance=args.tolerance, down_window_s=args.down_window_s, say=say)
    say(json.dumps({"autoscale": {"target": args.target, "min": args.lo, "max": args.hi,
                                  "down_window_s": args.down_window_s,
                                  "replicas": scaler.serving()}}))
    stop = threading.Event()
    import signal
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    scaler.run(args.interval_s, stop, args.verbose)
    say("autoscale: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
