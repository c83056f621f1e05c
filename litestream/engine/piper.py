"""A Piper (VITS) voice on ONNX Runtime: phoneme ids in, float32 audio out, batched.

The pipeline is Piper's: phonemize -> phoneme ids -> one ``session.run``. What we add is
batching: the exported graph pads every item to the longest one and returns no per-item length,
so at load time we expose the graph's own frame count per item (``y_lengths``) as an extra
output and trim each item to ``y_lengths * hop`` samples.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from litestream.engine.catalog import (
    BUNDLED_PACKAGE,
    VoiceConfig,
    VoiceInfo,
    bundled_voice_paths,
    read_voice_config,
    select_providers,
    voice_info,
)
from litestream.engine.phonemize import phonemes_to_ids, phonemize
from litestream.errors import SynthesisError, VoiceError

logger = logging.getLogger("litestream.engine")

# Fallback trimming when the graph has no recognisable y_lengths: samples below this are
# treated as padding silence at the tail of an item.
_SILENCE_ABS = 1e-4
_warned_no_lengths = threading.Event()

WARMUP_TEXT = "Hello."


@dataclass(frozen=True)
class _Model:
    """What every session of one voice shares: bytes to build a session from, and layout."""

    model_bytes: bytes
    lengths_output: str | None  # name of the [B, 1] frames-per-item output we added
    input_names: frozenset[str]


def _find_lengths_output(graph: Any) -> str | None:
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


def _prepare_model(model_path: Path) -> _Model:
    """Load the .onnx, add the lengths output when the pattern is there, serialize."""
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
    lengths = _find_lengths_output(graph)
    if lengths is not None and lengths not in {o.name for o in graph.output}:
        graph.output.append(
            onnx.helper.make_tensor_value_info(lengths, onnx.TensorProto.FLOAT, None)
        )
    elif lengths is None:
        logger.debug("no Ceil->ReduceSum->Clip in %s; batches trimmed by silence", model_path)
    return _Model(model.SerializeToString(), lengths, input_names)


def _session_options(intra_op_threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    # Parallelism comes from worker threads, each with its own session; inter-op threads
    # would only compete with them for the same cores.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # No CPU arena: it keeps the largest shapes it has ever seen. One chunk of unusual Unicode
    # (spelled out by espeak, ~3,000 phonemes) grew a session by ~1.6 GB for good; without the
    # arena, tensors go back to malloc and the worker trims after each run (issue 10; figures
    # in docs/operations.md).
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 3  # errors only; the provider choice is logged by us
    return options


def _trim_silence(audio: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > _SILENCE_ABS)
    return audio[: int(loud[-1]) + 1] if loud.size else audio[:0]


class PiperVoice:
    """One Piper voice with one InferenceSession. Not for concurrent use by many threads
    unless you mean to share the session: give each worker ``new_session()``."""

    info: VoiceInfo
    sample_rate: int
    provider: str

    def __init__(
        self,
        info: VoiceInfo,
        config: VoiceConfig,
        model: _Model,
        *,
        intra_op_threads: int,
        device: str,
        noise_scale: float,
        noise_w: float,
    ) -> None:
        self.info = info
        self.config = config
        self.sample_rate = config.sample_rate_hz
        self.noise_scale = noise_scale
        self.noise_w = noise_w
        self.intra_op_threads = intra_op_threads
        self.device = device
        self._model = model
        providers = select_providers(device)
        try:
            self._session = ort.InferenceSession(
                model.model_bytes, sess_options=_session_options(intra_op_threads),
                providers=providers,
            )
        except Exception as exc:
            raise VoiceError(f"cannot create a session for {info.model_path}: {exc}") from exc
        self.provider = self._session.get_providers()[0]
        if self.provider != providers[0]:
            # onnxruntime fell back despite our checks: say so, capacity differs a lot.
            logger.warning("asked for %s but the session runs on %s", providers[0],
                           self.provider)
        self._outputs = ["output"] + ([model.lengths_output] if model.lengths_output else [])

    @classmethod
    def load(
        cls,
        model_path: Path | None = None,
        config_path: Path | None = None,
        *,
        intra_op_threads: int = 1,
        device: str = "auto",
        noise_scale: float | None = None,
        noise_w: float | None = None,
        deterministic: bool = False,
        warmup: bool = True,
    ) -> PiperVoice:
        """Load a voice (default: the bundled one). VoiceError when files are missing/bad."""
        if model_path is None:
            bundled = bundled_voice_paths()
            if bundled is None:
                raise VoiceError(f"no voice given and package {BUNDLED_PACKAGE} not installed")
            model_path, default_config = bundled
            config_path = config_path or default_config
            info = voice_info(model_path, config_path, source=f"package {BUNDLED_PACKAGE}")
        else:
            info = voice_info(Path(model_path), config_path)
        if intra_op_threads < 1:
            raise VoiceError(f"intra_op_threads must be >= 1, not {intra_op_threads}")
        config = read_voice_config(info.config_path)
        if deterministic:
            noise_scale, noise_w = 0.0, 0.0
        voice = cls(
            info,
            config,
            _prepare_model(info.model_path),
            intra_op_threads=intra_op_threads,
            device=device,
            noise_scale=config.noise_scale if noise_scale is None else noise_scale,
            noise_w=config.noise_w if noise_w is None else noise_w,
        )
        if warmup:
            voice.warmup()
        return voice

    def new_session(self) -> PiperVoice:
        """Same voice, config and phoneme map, its own InferenceSession (one per worker)."""
        voice = PiperVoice(
            self.info,
            self.config,
            self._model,
            intra_op_threads=self.intra_op_threads,
            device=self.device,
            noise_scale=self.noise_scale,
            noise_w=self.noise_w,
        )
        voice.warmup()
        return voice

    def warmup(self) -> None:
        """One short synthesis: the first run allocates and plans, slow enough to miss a
        deadline if a listener paid for it."""
        self.synthesize(WARMUP_TEXT)

    def phoneme_ids(self, text: str) -> list[int]:
        """Piper phoneme ids for ``text``; espeak runs under the one process-wide lock."""
        return phonemes_to_ids(phonemize(text, self.config.espeak_voice),
                               self.config.phoneme_id_map)

    def synthesize(self, text: str, speed: float = 1.0) -> np.ndarray:
        """Float32 mono audio in [-1, 1] for one chunk of text."""
        return self.synthesize_ids([self.phoneme_ids(text)], speed)[0]

    def synthesize_ids(
        self, batch: Sequence[Sequence[int]], speed: float = 1.0, *,
        run_options: ort.RunOptions | None = None,
    ) -> list[np.ndarray]:
        """One ``session.run`` for the whole batch; each item trimmed to its own length.

        ``run_options``: a fresh ``ort.RunOptions`` per run; another thread (the watchdog) may
        set its ``terminate`` to stop the run, which then raises SynthesisError."""
        if not batch:
            return []
        if not speed > 0:
            raise SynthesisError(f"speed must be > 0, not {speed}")
        lengths = np.array([len(ids) for ids in batch], dtype=np.int64)
        if lengths.min() < 1:
            raise SynthesisError("empty phoneme id sequence")
        pad_id = self.config.phoneme_id_map["_"][0]
        ids = np.full((len(batch), int(lengths.max())), pad_id, dtype=np.int64)
        for row, item in enumerate(batch):
            ids[row, : len(item)] = item
        scales = np.array(
            [self.noise_scale, self.config.length_scale / speed, self.noise_w], dtype=np.float32
        )
        feeds: dict[str, np.ndarray] = {"input": ids, "input_lengths": lengths, "scales": scales}
        if "sid" in self._model.input_names:
            feeds["sid"] = np.zeros(len(batch), dtype=np.int64)  # first speaker
        try:
            outputs = self._session.run(self._outputs, feeds, run_options)
        except Exception as exc:
            raise SynthesisError(f"inference failed: {exc}") from exc
        audio = np.asarray(outputs[0], dtype=np.float32).reshape(len(batch), -1)
        np.clip(audio, -1.0, 1.0, out=audio)
        if len(outputs) > 1:
            frames = np.asarray(outputs[1]).reshape(len(batch)).astype(np.int64)
            # Samples per frame (the vocoder's hop, 256 for Piper voices): the padded output
            # is exactly max(frames) frames long.
            hop = audio.shape[1] // max(int(frames.max()), 1)
            return [audio[row, : int(frames[row]) * hop].copy() for row in range(len(batch))]
        if len(batch) == 1:
            return [audio[0].copy()]  # nothing padded, nothing to trim
        if not _warned_no_lengths.is_set():
            _warned_no_lengths.set()
            logger.warning("voice %s exposes no item lengths; trimming batches by silence",
                           self.info.id)
        return [_trim_silence(audio[row]) for row in range(len(batch))]
