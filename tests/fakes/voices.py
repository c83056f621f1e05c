"""Fake voices: a tiny Piper-shaped model made on the fly, a voice that only has a shape, and the
fault-injecting engine (a real voice whose runs fail on demand) with a server to run it.

`FaultyVoice` wraps the bundled voice and injects the `Fault` that a marker word in a chunk's
text names (`MARKERS`: `Faultraise`, `Faulthang`, `Faultslow`, `Faultwedge`, `Faultdie`);
`FaultPlan`, shared by its sessions, counts what was injected. `faulty_server` starts an
in-process server on a free loopback port with that voice and short watchdog limits. Used by
the scenarios in loadtest/faults.py and by tests/e2e/synthesis/test_workers.py.
"""

from __future__ import annotations

import contextlib
import enum
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from litestream.engine.phonemize import phonemize
from litestream.errors import SynthesisError
from tests.serverutil import free_port

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

    def phonemes(self, text: str) -> Any:
        self.plan.mark(text)
        return self._inner.phonemes(text)

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


def make_tiny_piper(directory: Path, *, name: str = "de_DE-tiny-x_low",
                    espeak_voice: str = "de", language: str = "de_DE") -> Path:
    """A Piper-shaped ONNX model (inputs input, input_lengths, scales; output [B, 1, T x 256])
    whose audio is each id, held for 256 samples, and its .onnx.json naming another language."""
    nodes = [
        helper.make_node("Cast", ["input"], ["ids_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["ids_f", "gain"], ["scaled"]),
        helper.make_node("Unsqueeze", ["scaled", "axis2"], ["col"]),
        helper.make_node("Tile", ["col", "repeats"], ["held"]),
        helper.make_node("Reshape", ["held", "shape"], ["output"]),
    ]
    inits = [
        helper.make_tensor("gain", TensorProto.FLOAT, [], [0.001]),
        helper.make_tensor("axis2", TensorProto.INT64, [1], [2]),
        helper.make_tensor("repeats", TensorProto.INT64, [3], [1, 1, TINY_HOP]),
        helper.make_tensor("shape", TensorProto.INT64, [3], [0, 1, -1]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_piper",
        [helper.make_tensor_value_info("input", TensorProto.INT64, ["B", "T"]),
         helper.make_tensor_value_info("input_lengths", TensorProto.INT64, ["B"]),
         helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["B", 1, "S"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = directory / f"{name}.onnx"
    onnx.save(model, str(path))
    # Its phoneme map covers what espeak says for the test text in its language.
    symbols = sorted(set(phonemize(GERMAN, espeak_voice)) | set("abcdefghijklmnopqrstuvwxyz"))
    id_map = {"_": [0], "^": [1], "$": [2], **{s: [i + 3] for i, s in enumerate(symbols)}}
    config = {"audio": {"sample_rate": TINY_RATE}, "espeak": {"voice": espeak_voice},
              "language": {"code": language}, "inference": {}, "num_speakers": 1,
              "phoneme_id_map": id_map}
    path.with_name(path.name + ".json").write_text(json.dumps(config), encoding="utf-8")
    return path


TINY_HOP = 256


TINY_RATE = 16_000


GERMAN = "Guten Tag. Wie geht es dir heute?"


@dataclass(frozen=True)
class FakeVoice:
    """What the scheduler side asks of a voice it never runs (tests with a fake worker pool):
    its id, sample rate and context margin."""

    id: str = "fake"
    sample_rate: int = 22050
    context_frames: int = 17
    language: str = "en_US"
    fingerprint: str = "fake"
    batches_fronts: bool = False
