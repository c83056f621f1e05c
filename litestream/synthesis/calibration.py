"""Start-up calibration: what a step costs on this machine, measured before the first stream.

The scheduler's cost model learns from every step as it goes, but a burst of streams at
start-up would be admitted and priced with its priors. So each voice (one per cost group: one
model file in one language, `engine.registry.cost_groups`) is measured once with every worker
busy at once, as under load: a sentence's encode, then its decode in windows, on each worker's
own sessions (`WorkerPool.on_every_idle_worker`). The measurements replace the voice's priors
(`CostModel.calibrate`, the cost model's side of this). All of calibration is here; the server
calls `calibrate` once, off the event loop, before it turns ready.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from litestream.engine import Voice, registry
from litestream.scheduler import CostModel
from litestream.synthesis.workers import WorkerPool, release_memory
from litestream.text import languages

log = logging.getLogger("litestream.startup")

# Calibration decodes its sentence (text/languages.py: one per language) in windows of a
# mid-range size.
CALIBRATION_WINDOW_FRAMES = 64


@dataclass(frozen=True)
class Calibration:
    """One worker's measurement of one voice: a sentence encoded, then decoded in windows."""

    chars: int
    encode_s: float
    frames: int  # the sentence's frames
    decode_s: float  # all its windows
    windows: int


def measure(voice: Voice, text: str,
            window_frames: int = CALIBRATION_WINDOW_FRAMES) -> Calibration:
    """Encode `text`, then decode it in windows of `window_frames` (on the calling thread)."""
    started = time.perf_counter()
    latent = voice.encode(voice.phoneme_ids(text))
    encoded = time.perf_counter()
    windows = 0
    for start in range(0, latent.frames, window_frames):
        voice.decode(latent, start, min(window_frames, latent.frames - start))
        windows += 1
    return Calibration(len(text), encoded - started, latent.frames,
                       time.perf_counter() - encoded, windows)


def _measure_on(voice_id: str, text: str, sessions: Mapping[str, Voice]) -> Calibration:
    return measure(sessions[voice_id], text)


def apply(model: CostModel, voice: str, runs: Sequence[Calibration]) -> None:
    """Replace the cost priors of `voice` with what every worker measured at once. A window
    computes its context margins too, on each side that lies inside the sentence: they count
    in the per-frame decode cost (CostModel.price)."""
    context = model.voice(voice).context_frames
    units = sum(r.frames + context * max(2 * r.windows - 2, 0) for r in runs)
    chars = sum(r.chars for r in runs)
    windows = sum(r.windows for r in runs)
    model.calibrate(
        voice,
        encode_per_char_s=sum(r.encode_s for r in runs) / chars,
        decode_per_frame_s=sum(r.decode_s for r in runs) / max(units, 1),
        frames_per_char=sum(r.frames for r in runs) / chars,
        chars=round(chars / len(runs)),
        frames=max(1, round(units / max(windows, 1))),
    )


def calibrate(pool: WorkerPool, voices: Mapping[str, Voice], model: CostModel) -> None:
    """Measure every cost group with every serving worker busy, and teach `model` the figures.
    Blocks: run it off the event loop."""
    for group in registry.cost_groups(voices):
        voice_id = group[0]  # voices of one model and language cost the same
        text = languages.calibration_text(voices[voice_id].language)
        try:
            runs = pool.on_every_idle_worker(partial(_measure_on, voice_id, text))
        except Exception:
            log.exception("calibration of voice %s failed; using the priors", voice_id)
            continue
        if not runs:
            continue
        for member in group:
            apply(model, member, runs)
        encode_ms = 1000 * sum(r.encode_s for r in runs) / len(runs)
        frames = sum(r.frames for r in runs)
        log.info("voices %s with %d workers busy: encode %.0f ms for %d chars, decode %.2f ms"
                 " per frame in %d-frame windows", ",".join(group), len(runs), encode_ms,
                 len(text), 1000 * sum(r.decode_s for r in runs) / max(frames, 1),
                 CALIBRATION_WINDOW_FRAMES)
    # Calibration's tensors are freed to malloc; hand them back to the OS now, before /readyz
    # turns green. Calibration runs on threads of its own, outside the workers' loops, and a
    # worker trims at most every workers.TRIM_BUSY_S while busy and once on going idle:
    # without this, the first stream's first step would pay for it.
    release_memory()
