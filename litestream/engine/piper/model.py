"""A Piper voice's graph made ready for ONNX Runtime once, and the sessions built from it.

``prepare_model`` loads the .onnx, cuts it into front / flow / decoder (``split``) and
exposes the graph's own frame count per item (``y_lengths``) as an extra output: the exported
graph pads every item of a batch to the longest one and returns no per-item length, so
``unpad_batch`` trims each item to ``y_lengths * hop`` (or, for a graph without that pattern,
by silence). The ``PreparedModel`` is shared by every session of one voice; ``create_session``
builds one session with our options and ``run_session`` runs one, any failure a
SynthesisError. ``engine.piper`` drives them.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from litestream.engine.onnx import session_options, with_options
from litestream.engine.piper.split import NotSplittable, SplitGraph, split_graph
from litestream.errors import SynthesisError, VoiceError

logger = logging.getLogger("litestream.engine")

# Fallback trimming when the graph has no recognisable y_lengths: samples below this are
# treated as padding silence at the tail of an item.
_SILENCE_ABS = 1e-4
_warned_no_lengths = threading.Event()


@dataclass(frozen=True)
class PreparedModel:
    """What every session of one voice shares: bytes to build sessions from, and layout."""

    model_bytes: bytes  # the whole graph; empty when split (the parts are in ``split``)
    lengths_output: str | None  # name of the [B, 1] frames-per-item output we added
    input_names: frozenset[str]
    split: SplitGraph | None  # None: the graph cannot be split, whole-sentence synthesis


def find_lengths_output(graph: Any) -> str | None:
    """The output of the Clip in ``Ceil -> ReduceSum -> Clip``: frames per item, [B, 1].

    In Piper's VITS export this is ``y_lengths = clamp_min(sum(ceil(durations)), 1)``.
    """
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in graph.node:
        if node.op_type != "Ceil":
            continue
        for reduce in consumers.get(node.output[0], []):
            if reduce.op_type != "ReduceSum":
                continue
            for clip in consumers.get(reduce.output[0], []):
                if clip.op_type == "Clip":
                    return str(clip.output[0])
    return None


def prepare_model(model_path: Path) -> PreparedModel:
    """Load the .onnx, split it, add the lengths output when the pattern is there, serialize."""
    import onnx

    try:
        model = onnx.load(str(model_path))
    except FileNotFoundError as exc:
        raise VoiceError(f"voice model not found: {model_path}") from exc
    except Exception as exc:  # onnx raises DecodeError and friends for a bad file
        raise VoiceError(f"cannot load voice model {model_path}: {exc}") from exc
    graph = model.graph
    input_names = frozenset(i.name for i in graph.input)
    if not {"input", "input_lengths", "scales"} <= input_names:
        raise VoiceError(f"{model_path} is not a Piper voice (inputs: {sorted(input_names)})")
    split: SplitGraph | None
    try:
        split = split_graph(model)
    except NotSplittable as exc:
        # Once per load (new_session reuses this model): the voice works, without streaming.
        logger.warning("voice %s cannot be split into front/flow/decoder (%s); it will be "
                       "synthesized a whole sentence at a time", model_path.name, exc)
        split = None
    lengths = find_lengths_output(graph)
    if lengths is not None and lengths not in {o.name for o in graph.output}:
        graph.output.append(
            onnx.helper.make_tensor_value_info(lengths, onnx.TensorProto.FLOAT, None)
        )
    elif lengths is None:
        logger.debug("no Ceil->ReduceSum->Clip in %s; batches trimmed by silence", model_path)
    # A split voice never builds a whole-model session: keep only the parts' bytes.
    whole = model.SerializeToString() if split is None else b""
    return PreparedModel(whole, lengths, input_names, split)


def create_session(model_bytes: bytes, providers: list[str], *, intra_op_threads: int,
                   model_path: Path) -> ort.InferenceSession:
    """One InferenceSession of a graph (or part) of the voice at ``model_path``; VoiceError
    when ONNX Runtime refuses it."""
    try:
        return ort.InferenceSession(
            model_bytes, sess_options=session_options(intra_op_threads),
            providers=with_options(providers),
        )
    except Exception as exc:
        raise VoiceError(f"cannot create a session for {model_path}: {exc}") from exc


def run_session(session: ort.InferenceSession, outputs: list[str],
                feeds: dict[str, np.ndarray], run_options: Any) -> list[Any]:
    """``session.run``; any ORT failure, a watchdog's ``terminate`` included, is a
    SynthesisError (the worker fails that step; the stream goes on)."""
    try:
        return list(session.run(outputs, feeds, run_options))
    except Exception as exc:
        if run_options is not None and getattr(run_options, "terminate", False):
            raise SynthesisError("inference stopped (run terminated)") from exc
        raise SynthesisError(f"inference failed: {exc}") from exc


def trim_silence(audio: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > _SILENCE_ABS)
    return audio[: int(loud[-1]) + 1] if loud.size else audio[:0]


def unpad_batch(outputs: list[Any], rows: int, voice_id: str) -> list[np.ndarray]:
    """A whole-graph run's outputs (audio, then the lengths output if the model has one) as
    one clipped float32 array per item, each trimmed to its own length."""
    audio = np.asarray(outputs[0], dtype=np.float32).reshape(rows, -1)
    np.clip(audio, -1.0, 1.0, out=audio)
    if len(outputs) > 1:
        frames = np.asarray(outputs[1]).reshape(rows).astype(np.int64)
        # Samples per frame (the vocoder's hop, 256 for Piper voices): the padded output
        # is exactly max(frames) frames long.
        hop = audio.shape[1] // max(int(frames.max()), 1)
        return [audio[row, : int(frames[row]) * hop].copy() for row in range(rows)]
    if rows == 1:
        return [audio[0].copy()]  # nothing padded, nothing to trim
    if not _warned_no_lengths.is_set():
        _warned_no_lengths.set()
        logger.warning("voice %s exposes no item lengths; trimming batches by silence",
                       voice_id)
    return [trim_silence(audio[row]) for row in range(rows)]
