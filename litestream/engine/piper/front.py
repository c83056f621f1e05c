"""The front pass in batches of fixed shapes, for a GPU.

On a GPU every new tensor shape costs a cuDNN algorithm search (100-250 ms on an H200), and the
whole front's shapes follow each sentence's length in frames, so there it ran on the CPU: about
0.5 ms of CPU per character, 10-12 ms per second of audio, which at 1,000 listeners is ten host
cores (docs/operations.md, "What each part could carry"). The prior part of the front
(``split.prior_part``: text encoder and duration predictor, up to the prior's phoneme-long
tensors) has no frame-long tensor. Its rows are padded to one of a few lengths
(``PRIOR_LENGTHS``) and their count rounded up to a power of two, so a batch of sentences runs
in one GPU run on a shape warmed at start; each row's prior is then spread over its frames
here, as the graph's own expansion does (``expand``), and the noise drawn here too.

The padding changes nothing a listener hears: the encoder and the duration predictor mask
every position past a row's length, so a padded row's outputs match the unpadded ones to
float rounding (under 1e-5 on the bundled voice; tests/e2e/engine/piper/test_front.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from litestream.engine.piper.split import PriorCut

# The row lengths (phoneme ids) a batch is padded to; the last is the most one front run takes
# (voice.MAX_FRONT_IDS: a longer sentence runs in pieces). Seven lengths at seven row counts
# (1-64) are 49 shapes to warm.
PRIOR_LENGTHS = (64, 128, 192, 256, 384, 512, 800)
# The most rows one run takes: a larger batch runs in several.
MAX_PRIOR_ROWS = 64

# One row's front: (z_p [1, C, frames], y_mask [1, 1, frames], frames per id or None where the
# graph does not give them)
FrontRow = tuple[np.ndarray, np.ndarray, np.ndarray | None]


def padded_length(ids: int) -> int:
    """The row length a sentence of ``ids`` phoneme ids runs at."""
    for length in PRIOR_LENGTHS:
        if ids <= length:
            return length
    raise ValueError(f"{ids} ids: more than one front run takes ({PRIOR_LENGTHS[-1]})")


def row_count(rows: int) -> int:
    """Rows rounded up to a power of two (at most MAX_PRIOR_ROWS)."""
    if not 1 <= rows <= MAX_PRIOR_ROWS:
        raise ValueError(f"rows must be 1..{MAX_PRIOR_ROWS}, not {rows}")
    return 1 << (rows - 1).bit_length()


def expand(mean: np.ndarray, log_scale: np.ndarray, durations: np.ndarray,
           noise_scale: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One row's prior over its frames: (z_p [1, C, frames], y_mask [1, 1, frames]).

    ``mean`` and ``log_scale`` are [ids, C], ``durations`` frames per id (whole numbers). Each
    id's column repeats for its frames (VITS's monotonic path), then
    ``z_p = mean + randn * exp(log_scale) * noise_scale``. A row of no frames is one frame of
    zero mean and unit scale, as the graph's ``clamp_min(frames, 1)`` leaves it."""
    repeats = np.asarray(durations, dtype=np.int64)
    if int(repeats.sum()) < 1:
        channels = mean.shape[1]
        mean, log_scale = (np.zeros((1, channels), dtype=np.float32),) * 2
        repeats = np.ones(1, dtype=np.int64)
    # [frames, C], then transposed in the copy below. The scale is taken per id, before it is
    # repeated: exp of a repeated value is the repeated exp, for a third of the work.
    z_p: np.ndarray = np.repeat(mean, repeats, axis=0)
    if noise_scale:
        scale = np.repeat(np.exp(log_scale) * np.float32(noise_scale), repeats, axis=0)
        noise = rng.standard_normal(z_p.shape, dtype=np.float32)
        noise *= scale
        z_p = z_p + noise
    z_p = z_p.T
    frames = z_p.shape[1]
    return (np.ascontiguousarray(z_p[None], dtype=np.float32),
            np.ones((1, 1, frames), dtype=np.float32))


class BatchedFront:
    """Runs the prior part over many phoneme id rows at once, on fixed shapes.

    ``run`` is a session's run (``session.run``-like: outputs, feeds, run options); the
    caller owns the session and its thread-safety (ONNX Runtime's ``run`` is thread-safe)."""

    def __init__(self, run: Callable[[list[str], dict[str, np.ndarray], Any], list[Any]],
                 cut: PriorCut, speaker_feeds: Callable[[int], Mapping[str, np.ndarray]]) -> None:
        self._run = run
        self._outputs = [cut.mean, cut.log_scale, cut.durations]
        self._speaker_feeds = speaker_feeds
        self._rng = np.random.default_rng()  # one per voice instance: one per worker thread

    def run(self, rows: Sequence[Sequence[int]], scales: np.ndarray,
            run_options: Any = None) -> list[FrontRow]:
        """Each row's (z_p, y_mask, frames per id), in order. ``scales`` is Piper's
        (noise_scale, length_scale, noise_w) for every row."""
        results: list[FrontRow] = []
        for start in range(0, len(rows), MAX_PRIOR_ROWS):
            results.extend(self._run_once(rows[start:start + MAX_PRIOR_ROWS], scales,
                                          run_options))
        return results

    def _run_once(self, rows: Sequence[Sequence[int]], scales: np.ndarray,
                  run_options: Any) -> list[FrontRow]:
        length = padded_length(max(len(row) for row in rows))
        count = row_count(len(rows))
        ids = np.zeros((count, length), dtype=np.int64)
        lengths = np.empty(count, dtype=np.int64)
        for index in range(count):
            # Rows past the batch repeat its first: a real row, so no row is all padding.
            row = rows[index] if index < len(rows) else rows[0]
            ids[index, : len(row)] = row
            lengths[index] = len(row)
        feeds = {"input": ids, "input_lengths": lengths, "scales": scales,
                 **self._speaker_feeds(count)}
        mean, log_scale, durations = self._run(self._outputs, feeds, run_options)
        noise_scale = float(scales[0])
        out: list[FrontRow] = []
        for index, row in enumerate(rows):
            n = len(row)
            per_id = np.rint(np.asarray(durations[index], dtype=np.float64).reshape(-1)[:n])
            per_id = per_id.astype(np.int64)
            z_p, y_mask = expand(mean[index, :n], log_scale[index, :n], per_id, noise_scale,
                                 self._rng)
            out.append((z_p, y_mask, per_id))
        return out
