"""Decode windows of a split Piper sentence: context margins, frame ranges, what they cost.

A split voice (``split``) decodes a sentence one window at a time, running flow and
decoder over the window plus a margin of context each side, so that windows joined in order
equal the sentence decoded at once. This module owns those margins (``ContextFrames``), the
frame ranges one window runs over (``plan_window``), the latent state that carries the flow's
inputs (``Prior``) and the counters of what windows cost (``DecodeCounters``). Pure: no ONNX
Runtime, no clock; ``engine.piper`` runs the sessions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from litestream.engine.base import DecodeWindow
from litestream.errors import SynthesisError

# Context each side of a window, in frames. Measured on the bundled voice (issue 8; figures in
# docs/benchmarks.md, "Engine windows", from `python -m loadtest.experiments.engine_windows`):
# HiFi-GAN's receptive field is ~10 frames (8 frames: 3e-3 max abs error against the one-shot
# decode, 10: 3e-5, 12: 1e-6), and the flow's error at its margin is absorbed by the decoder's
# (flow 16: 1e-5, 20: 8e-6). A little over the knee on both: stitched windows equal the one-shot
# decode to float noise.
DECODER_CONTEXT_FRAMES = 12
FLOW_CONTEXT_FRAMES = 20
# Window sizes the scheduler is expected to use; warmup runs them (any size works).
WINDOW_FRAMES = (16, 24, 32, 48, 64, 96, 128, 192, 256)


@dataclass(frozen=True)
class ContextFrames:
    """Frames of context each side of a decode window (more: exact; fewer: cheaper)."""

    decoder: int = DECODER_CONTEXT_FRAMES  # around the window, into HiFi-GAN
    flow: int = FLOW_CONTEXT_FRAMES  # around the decoder's input, into the flow


@dataclass(frozen=True, eq=False)
class Prior:
    """A split voice's latent: the flow's inputs for the whole sentence, noise already drawn."""

    z_p: np.ndarray  # [1, channels, frames] float32
    y_mask: np.ndarray  # [1, 1, frames] float32


@dataclass
class DecodeCounters:
    """Per session, since load or ``reset``: what decode windows cost, context included.

    A window's flow and decoder run over more frames than it outputs (its context margins);
    ``context_share`` is the part of flow+decoder time spent on those extra frames.
    """

    encodes: int = 0
    front_s: float = 0.0
    windows: int = 0
    runs: int = 0  # flow+decoder run pairs; a batch of equal windows is one
    output_frames: int = 0  # frames of audio returned
    flow_frames: int = 0  # frames the flow computed (output + context), summed over rows
    decoder_frames: int = 0  # frames the decoder computed (output + context)
    flow_s: float = 0.0
    decoder_s: float = 0.0

    def context_share(self) -> float:
        """Share of flow+decoder compute spent on context, each part's time taken as
        proportional to its frames (true to within a few % above ~32 frames)."""
        spent = self.flow_s + self.decoder_s
        if spent <= 0:
            return 0.0
        context_s = 0.0
        if self.flow_frames:
            context_s += self.flow_s * (1 - self.output_frames / self.flow_frames)
        if self.decoder_frames:
            context_s += self.decoder_s * (1 - self.output_frames / self.decoder_frames)
        return context_s / spent

    def reset(self) -> None:
        for name, value in DecodeCounters().__dict__.items():
            setattr(self, name, value)


@dataclass(frozen=True)
class WindowPlan:
    """Frame ranges of one window: its output, the decoder's input, the flow's input."""

    start: int
    end: int
    dec_start: int
    dec_end: int
    flow_start: int
    flow_end: int

    @property
    def shape_key(self) -> tuple[int, int, int]:
        """Windows with equal keys stack into one run with no padding."""
        return (self.flow_end - self.flow_start, self.dec_start - self.flow_start,
                self.dec_end - self.dec_start)


def plan_window(window: DecodeWindow, context: ContextFrames) -> WindowPlan:
    """The frame ranges ``window`` runs over with ``context`` each side; SynthesisError when
    the window is not inside its sentence."""
    total = window.latent.frames
    if not 0 <= window.start_frame < total or window.frames < 1:
        raise SynthesisError(f"window of {window.frames} frames at {window.start_frame} is "
                             f"outside a sentence of {total} frames")
    start, end = window.start_frame, min(total, window.start_frame + window.frames)
    # Clipped at the sentence's ends: there the one-shot decode sees the same zero padding.
    dec_start = max(0, start - context.decoder)
    dec_end = min(total, end + context.decoder)
    return WindowPlan(start, end, dec_start, dec_end,
                      max(0, dec_start - context.flow),
                      min(total, dec_end + context.flow))


def stable_width(frames: int, total: int, context: ContextFrames,
                 ladder: tuple[int, ...] = WINDOW_FRAMES) -> int | None:
    """The ladder width rows of a window of ``frames`` use in a sentence of ``total`` frames:
    the largest ladder size no longer than the window whose decoder input (the width and the
    decoder context each side) fits inside the sentence. None when none fits: the sentence is
    shorter than the smallest ladder size with its context."""
    fitting = [w for w in ladder if w + 2 * context.decoder <= total]
    if not fitting:
        return None
    within = [w for w in fitting if w <= frames]
    return max(within) if within else min(fitting)


def plan_rows(window: DecodeWindow, context: ContextFrames,
              ladder: tuple[int, ...] = WINDOW_FRAMES) -> list[WindowPlan]:
    """The window as rows of fixed shapes, for a GPU, where every new input shape costs a
    cuDNN algorithm search (100-250 ms on an H200: docs/benchmarks.md, "On a GPU").

    Each row outputs at most ``width`` frames (``stable_width``). Its decoder input is always
    ``width + 2 x decoder context`` real frames of the sentence, shifted inward at the
    sentence's ends, so a row near an end has more context on its inner side instead of less
    input; the flow's input is that range plus the flow context each side, and may reach past
    the sentence, where ``pad_frames`` fills it with zero latent under a zero mask, exactly
    what the one-shot flow sees there (every coupling layer multiplies by the mask). So rows
    equal the one-shot decode as ``plan_window``'s do, and a sentence's windows meet one
    shape per ladder width. A sentence shorter than the smallest width with its context is one
    row of its own length, as ``plan_window`` gives.
    """
    whole = plan_window(window, context)
    total = window.latent.frames
    width = stable_width(window.frames, total, context, ladder)
    if width is None:
        return [whole]
    span = width + 2 * context.decoder
    rows = []
    for start in range(whole.start, whole.end, width):
        end = min(whole.end, start + width)
        dec_start = min(max(0, start - context.decoder), total - span)
        rows.append(WindowPlan(start, end, dec_start, dec_start + span,
                               dec_start - context.flow, dec_start + span + context.flow))
    return rows


def pad_frames(array: np.ndarray, start: int, end: int) -> np.ndarray:
    """``array[0, :, start:end]`` of a [1, channels, frames] array, zeros where the range
    reaches past either end."""
    frames = array.shape[2]
    if start >= 0 and end <= frames:
        return array[0, :, start:end]
    out = np.zeros((array.shape[1], end - start), dtype=array.dtype)
    lo, hi = max(0, start), min(frames, end)
    out[:, lo - start:hi - start] = array[0, :, lo:hi]
    return out
