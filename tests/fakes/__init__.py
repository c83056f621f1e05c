"""The test-support fakes, in one place: a clock (clock.py), an event loop and worker pool
(workers.py), fake voices and the fault-injecting engine with its server (voices.py), and the
scheduler's playback simulator with its fake engine (simulator.py). Tests and the loadtest
tools that need one import it from here."""

from __future__ import annotations

from tests.fakes.clock import (
    FakeClock,
)
from tests.fakes.simulator import (
    APF,
    CONTEXT_FRAMES,
    DECODE_OVERHEAD_S,
    DECODE_PER_FRAME_S,
    ENCODE_OVERHEAD_S,
    ENCODE_PER_CHAR_S,
    FRAMES_PER_CHAR,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    VOICE,
    FakeEngine,
    Listener,
    SimResult,
    config,
    decode_cost_s,
    finish,
    price_step,
    run_step,
    sentence_frames,
    simulate,
)
from tests.fakes.voices import (
    FAULT_SERVER_SETTINGS,
    GERMAN,
    MARKERS,
    TINY_HOP,
    TINY_RATE,
    FakeVoice,
    Fault,
    FaultPlan,
    FaultyVoice,
    WorkerKilled,
    faulty_server,
    make_tiny_piper,
)
from tests.fakes.workers import (
    FakeLoop,
    FakePool,
)

__all__ = [
    "APF",
    "CONTEXT_FRAMES",
    "DECODE_OVERHEAD_S",
    "DECODE_PER_FRAME_S",
    "ENCODE_OVERHEAD_S",
    "ENCODE_PER_CHAR_S",
    "FAULT_SERVER_SETTINGS",
    "FRAMES_PER_CHAR",
    "GERMAN",
    "MARKERS",
    "SAMPLES_PER_FRAME",
    "SAMPLE_RATE",
    "TINY_HOP",
    "TINY_RATE",
    "VOICE",
    "FakeClock",
    "FakeEngine",
    "FakeLoop",
    "FakePool",
    "FakeVoice",
    "Fault",
    "FaultPlan",
    "FaultyVoice",
    "Listener",
    "SimResult",
    "WorkerKilled",
    "config",
    "decode_cost_s",
    "faulty_server",
    "finish",
    "make_tiny_piper",
    "price_step",
    "run_step",
    "sentence_frames",
    "simulate",
]
