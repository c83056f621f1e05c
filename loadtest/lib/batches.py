"""Batch sizes from a server's /metrics: how many steps each engine run carried (issue 17).

The server observes every run it hands a worker in ``litestream_batch_size{kind}`` (a
histogram: encode steps, or decode windows in one ``decode_batch``), and each step's compute
in ``litestream_step_seconds{kind}`` (read back as a mean per step). A load run scrapes
/metrics before and after, and reports the difference:

    before = parse(scrape())
    ... the run ...
    for report in since(before, parse(scrape())).values():
        print(report.line())

Pure: text in, figures out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

METRIC = "litestream_batch_size"
STEP_METRIC = "litestream_step_seconds"  # each step's compute, by kind


@dataclass(frozen=True)
class BatchReport:
    """One kind's runs: how many, how many steps, and how many of each size."""

    kind: str
    runs: int = 0
    steps: int = 0
    # Runs per size bucket: upper bound (steps) -> runs with size in (previous bound, bound].
    # The server's buckets are exact up to 8 steps (litestream/metrics.py BATCH_BUCKETS).
    by_size: dict[float, int] = field(default_factory=dict)
    timed: int = 0  # steps whose compute was observed (litestream_step_seconds)
    compute_s: float = 0.0  # their compute in all

    @property
    def mean_step_ms(self) -> float:
        """A step's mean compute on its worker (a decode run's time shared among its
        windows), ms; 0 with none observed."""
        return self.compute_s * 1000.0 / self.timed if self.timed else 0.0

    @property
    def single(self) -> int:
        """Runs of one step."""
        return self.by_size.get(1.0, 0)

    @property
    def share_batched(self) -> float:
        """The share of runs that carried more than one step (0 with no runs)."""
        return (self.runs - self.single) / self.runs if self.runs else 0.0

    @property
    def mean_size(self) -> float:
        return self.steps / self.runs if self.runs else 0.0

    def line(self) -> str:
        sizes = ", ".join(f"{_bound(b)}: {n}" for b, n in sorted(self.by_size.items()) if n)
        timed = (f"; compute per step {self.mean_step_ms:.1f} ms (mean of {self.timed})"
                 if self.timed else "")
        return (f"{self.kind} runs {self.runs} ({self.steps} steps, mean {self.mean_size:.2f}), "
                f"batched {self.share_batched:.1%}; runs by size {{{sizes}}}{timed}")


def _bound(bound: float) -> str:
    return "more" if math.isinf(bound) else f"<={bound:g}"


def parse(text: str) -> dict[str, BatchReport]:
    """Each kind's report from one /metrics scrape (totals since the server started)."""
    cumulative: dict[str, dict[float, float]] = {}
    runs: dict[str, float] = {}
    steps: dict[str, float] = {}
    timed: dict[str, float] = {}
    compute: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == STEP_METRIC:
            for sample in family.samples:
                kind = sample.labels.get("kind", "")
                if sample.name == STEP_METRIC + "_count":
                    timed[kind] = sample.value
                elif sample.name == STEP_METRIC + "_sum":
                    compute[kind] = sample.value
            continue
        if family.name != METRIC:
            continue
        for sample in family.samples:
            kind = sample.labels.get("kind", "")
            if sample.name == METRIC + "_bucket":
                bound = float(sample.labels["le"])
                cumulative.setdefault(kind, {})[bound] = sample.value
            elif sample.name == METRIC + "_count":
                runs[kind] = sample.value
            elif sample.name == METRIC + "_sum":
                steps[kind] = sample.value
    reports = {}
    for kind, buckets in cumulative.items():
        by_size: dict[float, int] = {}
        below = 0.0
        for bound in sorted(buckets):
            by_size[bound] = round(buckets[bound] - below)
            below = buckets[bound]
        reports[kind] = BatchReport(kind, round(runs.get(kind, below)),
                                    round(steps.get(kind, 0.0)), by_size,
                                    timed=round(timed.get(kind, 0.0)),
                                    compute_s=compute.get(kind, 0.0))
    return reports


def since(before: dict[str, BatchReport], after: dict[str, BatchReport]) -> dict[str, BatchReport]:
    """What happened between two scrapes of the same server."""
    out = {}
    for kind, late in after.items():
        early = before.get(kind, BatchReport(kind))
        out[kind] = BatchReport(
            kind, late.runs - early.runs, late.steps - early.steps,
            {b: n - early.by_size.get(b, 0) for b, n in late.by_size.items()},
            timed=late.timed - early.timed, compute_s=late.compute_s - early.compute_s)
    return out


def total(servers: Iterable[dict[str, BatchReport]]) -> dict[str, BatchReport]:
    """Several servers' reports (replicas of one service) added up, per kind."""
    out: dict[str, BatchReport] = {}
    for reports in servers:
        for kind, r in reports.items():
            seen = out.get(kind, BatchReport(kind))
            by_size = dict(seen.by_size)
            for bound, n in r.by_size.items():
                by_size[bound] = by_size.get(bound, 0) + n
            out[kind] = BatchReport(kind, seen.runs + r.runs, seen.steps + r.steps, by_size,
                                    timed=seen.timed + r.timed,
                                    compute_s=seen.compute_s + r.compute_s)
    return out
