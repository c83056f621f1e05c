"""The scheduler: deadline-ordered, fair, pure (the caller passes `now`).

The public API is here; `scheduler.py` holds the `Scheduler` and the call sequence, `types.py`
its public types, `costmodel.py` how a step's cost is predicted and learned. The modules whose
names start with `_` are its private parts; nothing outside this package imports them.
"""

from __future__ import annotations

from litestream.scheduler.costmodel import CostModel, CostPriors, StepKind, VoiceCost
from litestream.scheduler.scheduler import Scheduler
from litestream.scheduler.types import (
    Admission,
    AdmissionReason,
    Pace,
    Priority,
    SchedulerConfig,
    SchedulerStats,
    SynthesisStep,
)

__all__ = [
    "Admission",
    "AdmissionReason",
    "CostModel",
    "CostPriors",
    "Pace",
    "Priority",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerStats",
    "StepKind",
    "SynthesisStep",
    "VoiceCost",
]
