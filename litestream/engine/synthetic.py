"""A GPU-shaped synthetic voice, for benchmarks and tests only (``--voice synthetic``).

It stands in for the bundled Piper voice on a GPU, so that the control plane (event loop,
scheduler, sessions, sockets) can be measured at GPU scale on a machine without one: 1,000
listeners on two CPU cores would need a GPU's worth of synthesis. It implements
``engine.base.Voice`` as the real split voice does (encode steps, decode windows,
``decode_batch``, ``streaming`` and the same ``context_frames``), and differs in three ways:

- **Lengths from a fit, not the model.** espeak-ng phonemizes each sentence as for the real
  voice (the one lock in ``phonemize``; ~0.3 ms of CPU per sentence); its frames are then a sum
  of frames per phoneme symbol fit to the real voice (``synthetic_lengths``, written by
  ``python -m loadtest.synthetic_fit``, which also prints how close it is). The real front pass
  would cost 0.6 ms of CPU per character here. A sentence's length is exact once encoded, and
  every window is exactly ``frames x 256`` samples at 22.05 kHz, like the real voice's.
- **Audio is a quiet tone**, not speech: a sine whose period (a prime number of samples, 37 to
  127: 174-596 Hz) is chosen per sentence from its phonemes, continuous in phase across windows
  and batches (sample n of a sentence is the same whatever window it falls in). A frame lost,
  repeated or out of order breaks the phase, and a sentence played in another's place has the
  wrong pitch. ``SyntheticVoice.synthesize`` gives the whole sentence to compare against.
- **Cost is slept, from a table** (``SyntheticCost``): a decode run costs ``a + b x frames``
  (the frames the run computes, context margins included, over every window of the batch) and an
  encode ``c + d x characters`` (phoneme symbols: about one per text character). The defaults
  are the bundled voice's figures measured on an H200 (see ``SyntheticCost``); another table
  comes in with ``--synthetic-cost``. The worker thread sleeps (the GIL is free), once per
  run: the fixed part as host-side launch overhead (workers overlap in it), the per-frame part
  in its turn on the voice's device (one run at a time per GPU, as kernels queue on one
  device; the turn is booked, not waited for apart). No heavy Python
  work runs: the tone is a slice of a precomputed table.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
import unicodedata
import zlib
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from litestream.engine import synthetic_lengths
from litestream.engine.base import (
    DecodeWindow,
    Latent,
    Phonemes,
    VoiceDescription,
    fingerprint_of,
)
from litestream.engine.phonemize import phonemize, phonemize_each
from litestream.engine.words import split_words, word_spans
from litestream.errors import ConfigError, SynthesisError

NAME = "synthetic"  # --voice synthetic
VOICE_ID = "synthetic-gpu"
PROVIDER = "SyntheticGPU"  # not an ONNX Runtime provider: nothing runs but a sleep
LANGUAGE = "en_US"
ESPEAK_VOICE = "en-us"  # the bundled voice's espeak-ng voice, which the lengths were fit to
SAMPLE_RATE = 22050
HOP_SAMPLES = 256
# As PiperVoice.context_frames with the default margins (engine/piper/windows.py: decoder 12,
# flow 20 -> (3 x 12 + 20 + 12) // 4), so the scheduler prices windows as for the real voice.
CONTEXT_FRAMES = 17
AMPLITUDE = 0.05  # -26 dBFS: quiet, but far from silence in s16 (1,638 steps)
# Periods in samples: primes, so that a frame (256 samples) or any run of fewer than 37 frames
# lost or repeated never lands back in phase.
PERIODS = tuple(p for p in range(37, 128) if all(p % d for d in range(2, int(p ** 0.5) + 1)))
# Tone tables are kept up to this many samples (the largest window, 256 frames, with room for
# any phase); longer requests (whole sentences, `synthesize`) are built on the spot.
_TABLE_SAMPLES = 256 * HOP_SAMPLES + PERIODS[-1]
_SLEEP_SLICE_S = 0.05  # a terminate request is honoured within this


def _hold_gil(seconds: float) -> None:
    """Busy Python for ``seconds`` of this thread's CPU time: it holds the GIL as Python code
    does (the interpreter hands it over every switch interval when another thread asks)."""
    if seconds <= 0:
        return
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


@dataclass(frozen=True)
class SyntheticCost:
    """What a run costs on the GPU the voice stands in for, in seconds (slept, not computed).

    A run is a fixed part (host side: ONNX Runtime launching the graph's kernels; runs of
    several workers overlap in it) and a part per frame or character (device side: one run at a
    time per device, the others wait for it, as kernels queue on one GPU).

    The defaults are the bundled voice on one NVIDIA H200 (driver 580, CUDA 13, onnxruntime-gpu
    1.31, TF32, cuDNN's heuristic algorithm search), from the engine grid of issue 17's GPU
    runs (docs/benchmarks.md, "On a GPU"; raw results in docs/gpu-runs/), fit to a + b x frames
    computed (window plus 17 frames of context each side):
    - decode_batch, seconds of audio per second: 32 x 1: 110-158 (2.4-3.4 ms a run; 66 frames
      computed); 128 x 8: 1,637-1,824 (6.5-7.3 ms; 1,296 frames); 128 x 32: 2,744-2,809
      (17 ms; 5,184 frames); 256 x 64: 2,266-3,228 (59-84 ms; 18,560 frames). Hence
      a = 2.5 ms, b = 3.5 us per frame (a little above the fit's 3.3: the largest batch varied
      most between runs). One device makes at most ~2,900 s of audio per second in large
      batches, as measured.
    - The front pass on the GPU, on a sentence length it has already seen: 9.5 ms a sentence
      (a new length pays cuDNN's search, 100-250 ms). Hence c = 9 ms (launch-bound: host
      side), d = 5 us per character. The server on CUDA now runs a batch of sentences' fronts
      as one run on fixed shapes (`--cuda-front gpu`, engine/piper/front.py), which
      `encode_batch=1` models: one c per run, d for every character of the batch (an
      estimate: a batched run was not yet measured on a GPU). To model fronts on the host's
      CPU cores (`--cuda-front cpu`), put their cost in `encode_run_ms` (host side: workers
      overlap in it) and set `encode_char_us=0,encode_batch=0`.
    With these, one listener's 32-frame first window (49 frames computed: no left margin at a
    sentence's start) costs 2.7 ms. At 1,000 paragraph listeners the device is ~45% busy, and
    the host parts (9 ms a sentence, 2.5 ms a decode run, slept in the worker threads: about
    3 worker-seconds a second) need several workers: run the server with `--workers 8` or
    more, as on the GPU host. What this does not model: the host threads' own contention on a
    real GPU host (the GIL, threads spinning while they wait for CUDA), which the GPU runs
    found to be the limit there.
    """

    decode_run_s: float = 0.0025  # a: fixed (host) cost of one decode run: flow + decoder
    decode_frame_s: float = 3.5e-6  # b: device time per frame computed (margins included)
    encode_run_s: float = 0.009  # c: fixed (host) cost of one front pass
    encode_char_s: float = 5e-6  # d: device time per character (phoneme symbol)
    devices: int = 1  # device-side parts that may run at once (GPUs); 0: no limit
    # 1: a batch of encode steps is one run, c + d x all its characters (the server's default
    # on CUDA, --cuda-front gpu: engine/piper/front.py); 0: one front pass after another.
    encode_batch: int = 1
    # Python the worker runs per decode run and per sentence encoded, holding the GIL (a busy
    # loop, not a sleep): the real voice's own Python around its ONNX Runtime runs (feeds,
    # padding, the prior spread over frames, PCM), which the sleeps leave out. 0 by default;
    # docs/benchmarks.md, "What the real voice's Python costs the control plane".
    decode_python_s: float = 0.0
    encode_python_s: float = 0.0

    # The text form's keys (units in their names) -> field, factor to seconds.
    _KEYS: ClassVar[dict[str, tuple[str, float]]] = {
        "decode_run_ms": ("decode_run_s", 1e-3), "decode_frame_us": ("decode_frame_s", 1e-6),
        "encode_run_ms": ("encode_run_s", 1e-3), "encode_char_us": ("encode_char_s", 1e-6),
        "devices": ("devices", 1.0), "encode_batch": ("encode_batch", 1.0),
        "decode_python_us": ("decode_python_s", 1e-6),
        "encode_python_us": ("encode_python_s", 1e-6)}

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"synthetic cost {f.name} must be a number >= 0, not {value!r}")

    def decode_s(self, frames_computed: int) -> tuple[float, float]:
        """(host, device) seconds of one decode run computing this many frames."""
        return self.decode_run_s, self.decode_frame_s * frames_computed

    def encode_s(self, chars: int) -> tuple[float, float]:
        """(host, device) seconds of one front pass over this many characters."""
        return self.encode_run_s, self.encode_char_s * chars

    def describe(self) -> str:
        return (f"decode {1e3 * self.decode_run_s:g} ms + {1e6 * self.decode_frame_s:g} us/frame,"
                f" encode {1e3 * self.encode_run_s:g} ms + {1e6 * self.encode_char_s:g} us/char,"
                f" {self.devices or 'unlimited'} device(s)"
                f"{', encode steps batched' if self.encode_batch else ''}"
                + (f", Python {1e6 * self.decode_python_s:g} us a decode run and "
                   f"{1e6 * self.encode_python_s:g} us a sentence"
                   if self.decode_python_s or self.encode_python_s else ""))

    @classmethod
    def parse(cls, spec: str) -> SyntheticCost:
        """The defaults with the given entries replaced. ``spec`` is empty (the defaults),
        ``decode_run_ms=4,decode_frame_us=14,encode_run_ms=3,encode_char_us=10,devices=1``
        (any subset), or the path of a JSON file holding an object of the same keys (a GPU
        run's output may nest it under "synthetic_cost"). ConfigError when malformed."""
        spec = spec.strip()
        if not spec:
            return cls()
        entries: Mapping[str, Any]
        if "=" not in spec:
            entries = _read_json(Path(spec))
        else:
            entries = {}
            for item in spec.split(","):
                key, sep, value = item.partition("=")
                if not sep:
                    raise ConfigError(f"synthetic cost: {item!r} is not key=value")
                entries = {**entries, key.strip(): value.strip()}
        changes: dict[str, float | int] = {}
        for key, raw in entries.items():
            if key not in cls._KEYS:
                raise ConfigError(f"synthetic cost: unknown key {key!r}; known: "
                                  f"{', '.join(cls._KEYS)}")
            name, scale = cls._KEYS[key]
            try:
                number = float(raw)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"synthetic cost: {key}={raw!r} is not a number") from exc
            if name == "encode_batch" and number not in (0, 1):
                raise ConfigError(f"synthetic cost: encode_batch={raw!r} is not 0 or 1")
            if name in ("devices", "encode_batch"):
                if number != int(number):
                    raise ConfigError(f"synthetic cost: {key}={raw!r} is not a whole number")
                changes[name] = int(number)
            else:
                changes[name] = number * scale
        return cls(**changes)  # type: ignore[arg-type]


def _read_json(path: Path) -> Mapping[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"synthetic cost: cannot read {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"synthetic cost: {path} is not JSON: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("synthetic_cost"), dict):
        data = data["synthetic_cost"]
    if not isinstance(data, dict):
        raise ConfigError(f"synthetic cost: {path} holds no object of cost entries")
    return data


class LengthModel:
    """A sentence's frames from its phoneme symbols (codepoints), fit to the real voice."""

    def __init__(self) -> None:
        self._weights = {ord(c): w for c, w in synthetic_lengths.FRAMES_PER_SYMBOL.items()}
        self._other = synthetic_lengths.FRAMES_OTHER_SYMBOL
        self._base = synthetic_lengths.FRAMES_BASE
        self._speeds = synthetic_lengths.SPEED_FACTORS

    def frames(self, ids: Sequence[int] | str, speed: float = 1.0) -> int:
        codes = [ord(c) for c in ids] if isinstance(ids, str) else ids
        weights, other = self._weights, self._other
        total = self._base + sum(weights.get(code, other) for code in codes)
        return max(1, round(total * self.speed_factor(speed)))

    def speed_factor(self, speed: float) -> float:
        """Frames at `speed` over frames at 1.0, interpolated between the measured speeds (and
        as 1/speed beyond them)."""
        table = self._speeds
        if speed <= table[0][0]:
            return table[0][1] * table[0][0] / speed
        if speed >= table[-1][0]:
            return table[-1][1] * table[-1][0] / speed
        for (s0, f0), (s1, f1) in itertools.pairwise(table):
            if s0 <= speed <= s1:
                return f0 + (f1 - f0) * (speed - s0) / (s1 - s0)
        raise AssertionError("unreachable: the table covers every speed between its ends")


@dataclass(frozen=True)
class Tone:
    """A synthetic sentence's latent state: the period of its tone, in samples."""

    period_samples: int

    @property
    def hz(self) -> float:
        return SAMPLE_RATE / self.period_samples


def period_for(ids: Sequence[int]) -> int:
    """The tone period of a sentence with these ids (a stable hash: same text, same pitch)."""
    return PERIODS[zlib.crc32(array("q", ids).tobytes()) % len(PERIODS)]


_tables: dict[int, np.ndarray] = {}


def _table(period: int) -> np.ndarray:
    """One period of the tone, repeated to _TABLE_SAMPLES: sample i is exactly sample i mod
    period, so a slice at any phase holds the same values as any other."""
    table = _tables.get(period)
    if table is None:  # two threads may both build it: the same values, one kept
        one = (AMPLITUDE * np.sin(2 * np.pi * np.arange(period) / period)).astype(np.float32)
        table = _tables[period] = np.tile(one, -(-_TABLE_SAMPLES // period))
    return table


def tone(period: int, start_sample: int, samples: int) -> np.ndarray:
    """Samples [start, start + samples) of a sentence's tone (a fresh float32 array)."""
    offset = start_sample % period
    table = _table(period)
    if offset + samples > len(table):  # longer than any window: a whole sentence
        return table[(np.arange(samples) + offset) % period]
    return table[offset:offset + samples].copy()


class _Device:
    """The GPU a voice's sessions share: each run's device part queues on it, in the order the
    runs reach it (kernels launched on one GPU run one after another), on the one of `slots`
    devices free soonest (0: no limit, every run its own device).

    A run books its device time when it starts and then sleeps once, to the end of its turn:
    one release and one reacquisition of the GIL per run, as for an ONNX Runtime run on CUDA.
    (Sleeping the host part, then waiting for the device, then sleeping the device part cost
    three: at hundreds of runs a second each waited for the GIL again, and the cost model
    learned those waits as compute.)"""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._free_at = [-math.inf] * slots  # when each device's booked work ends
        self._lock = threading.Lock()

    def book(self, ready_s: float, seconds: float) -> float:
        """Queue `seconds` of device work that can start at `ready_s` (the run's host part
        done); returns when it ends."""
        if self.slots <= 0:
            return ready_s + seconds
        with self._lock:
            free_at = self._free_at
            slot = min(range(self.slots), key=free_at.__getitem__)
            end = free_at[slot] = max(ready_s, free_at[slot]) + seconds
        return end


class SyntheticVoice:
    """The GPU-shaped stand-in for the bundled Piper voice (implements ``engine.base.Voice``).

    ``sleep`` is what spends a run's cost (``time.sleep``: it releases the GIL) and ``clock``
    what it books the device against (``time.monotonic``); tests pass a recorder and its clock
    to see the cost without waiting for it."""

    def __init__(self, cost: SyntheticCost | None = None, *,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 _device: _Device | None = None) -> None:
        self.cost = cost or SyntheticCost()
        self.sleep = sleep
        self.clock = clock
        self.lengths = LengthModel()
        self._device = _device or _Device(self.cost.devices)

    @classmethod
    def load(cls, cost: str | SyntheticCost = "", *, warmup: bool = True) -> SyntheticVoice:
        """The voice with a cost table (SyntheticCost.parse's forms); ConfigError if bad."""
        voice = cls(cost if isinstance(cost, SyntheticCost) else SyntheticCost.parse(cost))
        if warmup:
            voice.warmup()
        return voice

    def new_session(self) -> SyntheticVoice:
        """Another worker's session: the same cost and the same device (one GPU, one queue)."""
        return SyntheticVoice(self.cost, sleep=self.sleep, clock=self.clock,
                              _device=self._device)

    # --- what the catalogue and the server see -------------------------------------------

    @property
    def description(self) -> VoiceDescription:
        return VoiceDescription(
            id=VOICE_ID, model="synthetic", language=LANGUAGE, sample_rate=SAMPLE_RATE,
            gender=None,
            source=f"synthetic: benchmarks and tests only, a tone with the bundled voice's "
                   f"lengths; sleeps {self.cost.describe()}")

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def fingerprint(self) -> str:
        """Its audio is a tone of the bundled voice's lengths, whatever its cost."""
        return fingerprint_of("synthetic", VOICE_ID, str(SAMPLE_RATE))

    @property
    def language(self) -> str:
        return LANGUAGE

    @property
    def provider(self) -> str:
        return PROVIDER

    @property
    def streaming(self) -> bool:
        return True

    @property
    def context_frames(self) -> int:
        return CONTEXT_FRAMES

    def warmup(self) -> None:
        """Build every tone table now, and espeak-ng's backend (its first use costs ~60 ms), so
        that neither a listener nor start-up calibration pays for them."""
        phonemize("Hello.", ESPEAK_VOICE)
        for period in PERIODS:
            _table(period)

    # --- synthesis ---------------------------------------------------------------------------

    def phoneme_ids(self, text: str) -> list[int]:
        """The NFD codepoints of the sentence's espeak-ng phonemes (what the lengths are fit
        on); espeak runs under the one process-wide lock, as for the real voice."""
        return [ord(c) for c in unicodedata.normalize("NFD", phonemize(text, ESPEAK_VOICE))]

    def phonemes(self, text: str) -> Phonemes:
        """The ids, with each word's, found as for the real voice; the tone has no durations,
        so word times are estimated (the chunk's length spread over its ids)."""
        sentence = phonemize(text, ESPEAK_VOICE)
        ids = [ord(c) for c in unicodedata.normalize("NFD", sentence)]
        spans = split_words(text)
        isolated = phonemize_each([text[start:end] for start, end in spans], ESPEAK_VOICE)
        return Phonemes(ids, word_spans(text, spans, sentence, isolated,
                                              list(range(len(ids)))))

    def encode(self, ids: Sequence[int], speed: float = 1.0, *,
               run_options: Any = None) -> Latent:
        return self._encode_run([ids], speed, run_options)[0]

    @property
    def batches_fronts(self) -> bool:
        return bool(self.cost.encode_batch)

    def encode_batch(self, batch: Sequence[Sequence[int]], speed: float = 1.0, *,
                     run_options: Any = None) -> list[Latent]:
        """Each sentence's ``encode``; with ``SyntheticCost.encode_batch``, one run for all of
        them (one fixed part, every sentence's characters), else one run each."""
        if not self.batches_fronts:
            return [self.encode(ids, speed, run_options=run_options) for ids in batch]
        return self._encode_run(batch, speed, run_options)

    def _encode_run(self, batch: Sequence[Sequence[int]], speed: float,
                    run_options: Any) -> list[Latent]:
        """One front run over ``batch``: its cost slept once (every sentence's characters),
        then each sentence's latent."""
        if not speed > 0:
            raise SynthesisError(f"speed must be > 0, not {speed}")
        rows = [list(ids) for ids in batch]
        if not rows:
            return []
        self._spend(*self.cost.encode_s(sum(len(ids) for ids in rows)), run_options)
        _hold_gil(self.cost.encode_python_s * len(rows))
        return [Latent(frames=self.lengths.frames(ids, speed), samples_per_frame=HOP_SAMPLES,
                       speed=speed, state=Tone(period_for(ids))) for ids in rows]

    def decode(self, latent: Latent, start_frame: int, frames: int, *,
               run_options: Any = None) -> np.ndarray:
        return self.decode_batch([DecodeWindow(latent, start_frame, frames)],
                                 run_options=run_options)[0]

    def decode_batch(self, windows: Sequence[DecodeWindow], *,
                     run_options: Any = None) -> list[np.ndarray]:
        """One run for the whole batch: its cost is one fixed part plus every window's frames
        computed (its frames and the context margins that fit inside the sentence)."""
        computed = 0
        spans: list[tuple[int, int, int]] = []
        for window in windows:
            latent = window.latent
            if not isinstance(latent.state, Tone):
                raise SynthesisError("latent was not encoded by the synthetic voice")
            if window.frames < 1 or not 0 <= window.start_frame < latent.frames:
                raise SynthesisError(f"window [{window.start_frame}, +{window.frames}) is "
                                     f"outside a sentence of {latent.frames} frames")
            end = min(window.start_frame + window.frames, latent.frames)
            computed += (end - window.start_frame
                         + min(CONTEXT_FRAMES, window.start_frame)
                         + min(CONTEXT_FRAMES, latent.frames - end))
            spans.append((latent.state.period_samples, window.start_frame, end))
        if not spans:
            return []
        self._spend(*self.cost.decode_s(computed), run_options)
        _hold_gil(self.cost.decode_python_s)
        return [tone(period, start * HOP_SAMPLES, (end - start) * HOP_SAMPLES)
                for period, start, end in spans]

    def synthesize(self, text: str, speed: float = 1.0) -> np.ndarray:
        """The whole sentence at once: what its windows, joined in order, must equal."""
        latent = self.encode(self.phoneme_ids(text), speed)
        return self.decode(latent, 0, latent.frames)

    def _spend(self, host_s: float, device_s: float, run_options: Any) -> None:
        """Sleep a run's cost: its host part, then its device part in its turn on the device
        (`_Device.book`), as one sleep. In slices, so that the watchdog's terminate stops it
        as it stops an ONNX Runtime run."""
        now = self.clock()
        self._sleep_for(self._device.book(now + host_s, device_s) - now, run_options)

    def _sleep_for(self, seconds: float, run_options: Any) -> None:
        if seconds <= 0:
            return
        slices = max(1, math.ceil(seconds / _SLEEP_SLICE_S))
        for _ in range(slices):
            if run_options is not None and getattr(run_options, "terminate", False):
                raise SynthesisError("synthetic run terminated")
            self.sleep(seconds / slices)
