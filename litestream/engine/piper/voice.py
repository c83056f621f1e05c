"""A Piper (VITS) voice on ONNX Runtime: phoneme ids in, float32 audio out, streamed by window.

The pipeline is Piper's: phonemize -> phoneme ids -> ONNX. What we add:

- Streaming inside a sentence (``litestream.engine.base.Voice``). At load the graph is split
  into front / flow / decoder (``split``). ``encode`` runs the front once per sentence: it
  samples the noise and fixes the length in frames. ``decode`` runs flow and decoder on one
  window of frames plus a margin of context each side, so windows joined in order equal the
  sentence decoded at once (to ~1e-5; the margins were measured, see ``windows``).
  A graph that cannot be split is synthesized whole in ``encode``; ``decode`` slices it.
- Batching of whole sentences (``synthesize_ids``): the exported graph pads every item to the
  longest one and returns no per-item length, so at load time we expose the graph's own frame
  count per item (``y_lengths``) as an extra output and trim each item to ``y_lengths * hop``
  (``model``, which also owns the session options).

This module owns ``PiperVoice``: loading, warmup, and the order of the session runs.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from litestream.engine.base import (
    DecodeWindow,
    Latent,
    Phonemes,
    VoiceDescription,
    file_sha256,
    fingerprint_of,
)
from litestream.engine.onnx import CPU_PROVIDER, CUDA_PROVIDER, cuda_front, select_providers
from litestream.engine.phonemize import (
    READING,
    phonemes_to_ids,
    phonemize,
    phonemize_each,
    split_ids,
)
from litestream.engine.piper import files
from litestream.engine.piper.files import (
    BUNDLED_PACKAGE,
    VoiceConfig,
    VoiceInfo,
    bundled_voice_paths,
    read_voice_config,
    voice_info,
)
from litestream.engine.piper.front import MAX_PRIOR_ROWS, PRIOR_LENGTHS, BatchedFront, FrontRow
from litestream.engine.piper.model import (
    PreparedModel,
    create_session,
    prepare_model,
    run_session,
    unpad_batch,
)
from litestream.engine.piper.split import NotSplittable, SplitGraph, prior_part
from litestream.engine.piper.windows import (
    WINDOW_FRAMES,
    ContextFrames,
    DecodeCounters,
    Prior,
    WindowPlan,
    pad_frames,
    plan_rows,
    plan_window,
)
from litestream.engine.words import split_words, word_spans
from litestream.errors import SynthesisError, VoiceError

logger = logging.getLogger("litestream.engine")

WARMUP_TEXT = "Hello."
# Front-pass warmup: a short and a long sentence, so the largest shapes are allocated once.
WARMUP_TEXTS = (
    WARMUP_TEXT,
    "The next chunk is due before the listener runs dry, so we measure it carefully and often.",
)
# The most phoneme ids one front run takes. A sentence of max_chars (300) English characters is
# about 620 ids (and never cut); text that espeak-ng spells out (emoji, symbols) can reach
# thousands, and the front is quadratic in them, so past this it runs in pieces (split_ids).
MAX_FRONT_IDS = 800

# Piper's VITS hop (samples per frame); a split decoder's own upsampling is checked against it.
HOP_SAMPLES = 256
# On a GPU, decode runs are warmed at every power-of-two row count up to this one: a batch of
# up to 64 windows (--max-batch) meets no cold shape.
WARM_ROWS = 64


@dataclass(frozen=True)
class _Shared:
    """The sessions a GPU's workers share (one GPU runs them anyway, and each shape's cuDNN
    search is paid once): flow, decoder, and the batched front's prior part when it runs."""

    flow: ort.InferenceSession
    decoder: ort.InferenceSession
    prior: ort.InferenceSession | None = None
    prior_inputs: tuple[str, ...] = ()


def _joined_durations(parts: Sequence[np.ndarray | None], pieces: Sequence[Sequence[int]],
                      count: int, frames: int, head: int, tail: int) -> np.ndarray | None:
    """Frames per id of the whole sentence (``count`` ids) from its front pieces. A piece after
    the first repeats ``^ _`` and one before the last adds a ``$``; ``split_ids`` cuts after a
    word gap, so those extra ids' frames are the gap's: they go to the id before the cut.
    ``head`` and ``tail`` count the ids of ``^ _`` and of ``$``. The sum is the sentence's
    frames (Piper clamps an all-zero sum to one frame)."""
    if any(part is None or len(part) != len(piece) for part, piece in zip(parts, pieces,
                                                                          strict=True)):
        return None
    joined: list[int] = []
    last = len(parts) - 1
    for index, part in enumerate(parts):
        assert part is not None
        values = [int(v) for v in part]
        if index > 0:
            joined[-1] += sum(values[:head])
            values = values[head:]
        if index < last:
            extra = sum(values[-tail:])
            values = values[:-tail]
            values[-1] += extra
        joined.extend(values)
    if len(joined) != count:
        return None
    durations = np.asarray(joined, dtype=np.int64)
    short = frames - int(durations.sum())
    if short < 0:
        return None
    durations[-1] += short
    return durations


class PiperVoice:
    """One Piper voice with its own InferenceSessions (implements ``engine.base.Voice``).

    Not for concurrent use by many threads unless you mean to share the sessions: give each
    worker ``new_session()``.
    """

    info: VoiceInfo
    sample_rate: int
    provider: str
    stable_shapes: bool
    context: ContextFrames
    counters: DecodeCounters

    def __init__(
        self,
        info: VoiceInfo,
        config: VoiceConfig,
        model: PreparedModel,
        *,
        intra_op_threads: int,
        device: str,
        noise_scale: float,
        noise_w: float,
        context: ContextFrames | None = None,
        shared: _Shared | None = None,
        batched_front: bool | None = None,
    ) -> None:
        self.info = info
        self.config = config
        self.sample_rate = config.sample_rate_hz
        self.noise_scale = noise_scale
        self.noise_w = noise_w
        self.intra_op_threads = intra_op_threads
        self.device = device
        self.context = context or ContextFrames()
        if self.context.decoder < 0 or self.context.flow < 0:
            raise VoiceError(f"context frames must be >= 0, not {self.context}")
        self.counters = DecodeCounters()
        self._model = model
        providers = select_providers(device)
        # A split voice needs no whole-model session: synthesize_ids runs the three parts
        # over the whole batch, which is the same computation (one graph, cut in three).
        self._session: ort.InferenceSession | None = None
        self._front: ort.InferenceSession | None = None
        self._batched: BatchedFront | None = None
        self._prior: ort.InferenceSession | None = None
        self._prior_inputs: tuple[str, ...] = ()
        # Whether this voice made its flow and decoder (and prior) sessions, or shares a warm set.
        self._owns_decoder = shared is None
        self._owns_prior = False
        self._flow: ort.InferenceSession | None = None
        self._decoder: ort.InferenceSession | None = None
        if model.split is None:
            self._session = self._new_session(model.model_bytes, providers)
            first = self._session
        else:
            on_gpu = providers[0] == CUDA_PROVIDER
            if shared is not None:
                self._flow, self._decoder = shared.flow, shared.decoder
            else:
                self._flow = self._new_session(model.split.flow, providers)
                self._decoder = self._new_session(model.split.decoder, providers)
            first = self._decoder
            # The front: on a GPU (``cuda_front`` "gpu"; ``batched_front`` forces it either way)
            # the batched prior part, sentences padded to fixed shapes (engine/piper/front.py);
            # else the whole front per sentence. On CUDA that one runs on the CPU: its shapes
            # follow each sentence's length in frames, and every new shape cost a cuDNN search
            # (122-653 ms a front pass on an H200, 9.5 ms on a length already seen; docs/
            # benchmarks.md, "On a GPU").
            if batched_front is None:
                batched_front = on_gpu and cuda_front() == "gpu"
            if batched_front:
                self._use_batched_front(model.split, providers, shared)
            if self._batched is None:
                self._front = self._new_session(model.split.front,
                                                [CPU_PROVIDER] if on_gpu else providers)
        self.provider = first.get_providers()[0]
        # Decode in rows of fixed shapes (``plan_rows``) on a GPU, where a new shape costs a
        # cuDNN search; on a CPU a new shape costs nothing more, so windows run as they are.
        self.stable_shapes = model.split is not None and self.provider == CUDA_PROVIDER
        if self.provider != providers[0]:
            # onnxruntime fell back despite our checks: say so, capacity differs a lot.
            logger.warning("asked for %s but the session runs on %s", providers[0],
                           self.provider)
        self._outputs = ["output"] + ([model.lengths_output] if model.lengths_output else [])

    @property
    def fingerprint(self) -> str:
        """The model and config files' checksums, the noise scales and how text is read before
        espeak-ng (`phonemize.READING`) (engine.base.Voice)."""
        return fingerprint_of("piper", file_sha256(self.info.model_path),
                              file_sha256(self.info.config_path),
                              f"{self.noise_scale!r}:{self.noise_w!r}",
                              f"reading:{READING}")

    def _use_batched_front(self, split: SplitGraph, providers: list[str],
                           shared: _Shared | None) -> None:
        """Run the front batched (engine/piper/front.py), on the shared prior session or a new
        one; a graph without the prior cut keeps its whole front (logged)."""
        if shared is not None and shared.prior is not None:
            prior, inputs = shared.prior, shared.prior_inputs
        else:
            try:
                part, inputs = prior_part(split)
            except NotSplittable as exc:
                logger.info("%s: the front runs whole, one sentence a run: %s", self.info.id, exc)
                return
            prior = self._new_session(part, providers)
            self._owns_prior = True
        cut = split.prior_cut
        assert cut is not None  # prior_part found it
        self._prior, self._prior_inputs = prior, inputs
        self._batched = BatchedFront(functools.partial(run_session, prior), cut,
                                     lambda rows: self._speaker_feeds(rows, inputs))

    @property
    def batches_fronts(self) -> bool:
        """Whether ``encode_batch`` runs its sentences' front passes as one run (a GPU), so a
        batch of encode steps costs like one step, not their sum."""
        return self._batched is not None

    def _new_session(self, model_bytes: bytes, providers: list[str]) -> ort.InferenceSession:
        return create_session(model_bytes, providers, intra_op_threads=self.intra_op_threads,
                              model_path=self.info.model_path)

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
        context: ContextFrames | None = None,
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
            prepare_model(info.model_path),
            intra_op_threads=intra_op_threads,
            device=device,
            noise_scale=config.noise_scale if noise_scale is None else noise_scale,
            noise_w=config.noise_w if noise_w is None else noise_w,
            context=context,
        )
        if warmup:
            voice.warmup()
        return voice

    def new_session(self) -> PiperVoice:
        """Same voice, config and phoneme map, its own InferenceSessions (one per worker).

        On a GPU the workers share the flow and decoder sessions (``InferenceSession.run`` is
        thread-safe): one GPU runs them anyway, and a shape's cuDNN search is paid once, not
        once per worker. They share the batched front's prior part too; a front that runs
        whole, on the CPU, is each worker's own."""
        shared = None
        if self.stable_shapes and self._flow is not None and self._decoder is not None:
            shared = _Shared(self._flow, self._decoder, self._prior, self._prior_inputs)
        voice = PiperVoice(
            self.info,
            self.config,
            self._model,
            intra_op_threads=self.intra_op_threads,
            device=self.device,
            noise_scale=self.noise_scale,
            noise_w=self.noise_w,
            context=self.context,
            shared=shared,
            batched_front=self.batches_fronts,
        )
        voice.warmup()
        return voice

    # --- what the catalogue and the server see -------------------------------------------

    @property
    def description(self) -> VoiceDescription:
        split = self._model.split
        exact = split is not None and split.cuts.durations is not None
        return files.description(self.info, "exact" if exact else "estimated")

    @property
    def language(self) -> str:
        return self.info.language

    @property
    def streaming(self) -> bool:
        """True when the graph was split: ``decode`` runs flow and decoder per window."""
        return self._model.split is not None

    @property
    def context_frames(self) -> int:
        """A window's context, priced in decoder frames. The flow runs over the window plus
        ``flow + decoder`` frames each side, the decoder over ``decoder`` each side, and a flow
        frame costs about a third of a decoder frame (issue 8's figures: 0.22 vs 0.66 ms per
        frame), so the weighted margin is ``(3 x decoder + flow + decoder) / 4`` per side."""
        if not self.streaming:
            return 0
        return (3 * self.context.decoder + self.context.flow + self.context.decoder) // 4

    def warmup(self) -> None:
        """Run every session on the shapes it will meet, so a listener never pays for it.

        Whole-sentence synthesis, the front on a short and a long sentence, then flow and
        decoder. On a CPU, the largest and the smallest window, as a first window and with
        context on both sides, largest first so the memory arena grows once: there a new
        shape's first run costs what the next ones do (measured, docs/benchmarks.md), and each
        worker's start-up stays short. On a GPU every shape ``plan_rows`` makes: each ladder
        width at each power-of-two row count up to ``WARM_ROWS``, and each sentence length
        shorter than the smallest width with its context (a new shape's first run took
        100-250 ms there); once, by the voice that owns the shared flow and decoder. A batched
        front on a GPU: each padded length at each power-of-two row count, by its owner.
        """
        self.synthesize(WARMUP_TEXT)
        if self._model.split is None:
            return
        if self._batched is not None and self._owns_prior and self.stable_shapes:
            base = self.phoneme_ids(WARMUP_TEXTS[-1])
            scales = self._scales(1.0)
            for length in reversed(PRIOR_LENGTHS):
                row = (base * (length // len(base) + 1))[:length]
                for count in reversed(range(MAX_PRIOR_ROWS.bit_length())):
                    self._batched.run([row] * (1 << count), scales)
        latents = [self.encode(self.phoneme_ids(text)) for text in reversed(WARMUP_TEXTS)]
        prior = latents[0].state
        assert isinstance(prior, Prior)
        sizes = sorted(WINDOW_FRAMES, reverse=True)
        margin = self.context.decoder + self.context.flow
        frames = sizes[0] + 2 * margin
        channels = prior.z_p.shape[1]

        def silence(length: int) -> Latent:
            # Silence in the latent space: real shapes, no need for a sentence that long.
            return Latent(frames=length, samples_per_frame=self._hop, speed=1.0, state=Prior(
                z_p=np.zeros((1, channels, length), dtype=np.float32),
                y_mask=np.ones((1, 1, length), dtype=np.float32)))

        if not self.stable_shapes:
            dummy = silence(frames)
            for size in [sizes[0], sizes[-1]]:
                self.decode(dummy, 0, size)
                self.decode(dummy, margin, size)
        elif self._owns_decoder:
            dummy = silence(frames)
            rows = [1 << k for k in range(WARM_ROWS.bit_length()) if 1 << k <= WARM_ROWS]
            for size in sizes:
                for count in reversed(rows):
                    self.decode_batch([DecodeWindow(dummy, margin, size)] * count)
            for length in range(1, sizes[-1] + 2 * self.context.decoder):
                self.decode(silence(length), 0, length)
        self.counters.reset()

    # --- synthesis ---------------------------------------------------------------------------

    def phoneme_ids(self, text: str) -> list[int]:
        """Piper phoneme ids for ``text``; espeak runs under the one process-wide lock."""
        return phonemes_to_ids(phonemize(text, self.config.espeak_voice),
                               self.config.phoneme_id_map)

    def phonemes(self, text: str) -> Phonemes:
        """The ids of ``phoneme_ids``, with each word's (engine/words.py)."""
        espeak_voice = self.config.espeak_voice
        sentence = phonemize(text, espeak_voice)
        sources: list[int] = []
        ids = phonemes_to_ids(sentence, self.config.phoneme_id_map, sources)
        spans = split_words(text)
        isolated = phonemize_each([text[start:end] for start, end in spans], espeak_voice)
        return Phonemes(ids, word_spans(text, spans, sentence, isolated, sources))

    @property
    def _hop(self) -> int:
        split = self._model.split
        return split.hop_samples if split is not None and split.hop_samples else HOP_SAMPLES

    def _scales(self, speed: float) -> np.ndarray:
        if not speed > 0:
            raise SynthesisError(f"speed must be > 0, not {speed}")
        return np.array(
            [self.noise_scale, self.config.length_scale / speed, self.noise_w], dtype=np.float32
        )

    def _speaker_feeds(self, rows: int, wanted: Collection[str]) -> dict[str, np.ndarray]:
        # Multi-speaker voices: the first speaker (as synthesize_ids does).
        return {"sid": np.zeros(rows, dtype=np.int64)} if "sid" in wanted else {}

    def encode(self, ids: Sequence[int], speed: float = 1.0, *,
               run_options: Any = None) -> Latent:
        """The sentence's front pass: noise drawn, length in frames fixed.

        A voice that cannot be split synthesizes the whole sentence here instead; its latent
        holds the audio, padded with silence to a whole number of frames.
        """
        return self.encode_batch([ids], speed, run_options=run_options)[0]

    def encode_batch(self, batch: Sequence[Sequence[int]], speed: float = 1.0, *,
                     run_options: Any = None) -> list[Latent]:
        """``encode`` of each sentence; with a batched front (``batches_fronts``) all their
        front passes are one run (several past ``MAX_PRIOR_ROWS`` rows), else one by one."""
        batch = [list(ids) for ids in batch]
        if any(not ids for ids in batch):
            raise SynthesisError("empty phoneme id sequence")
        split = self._model.split
        if split is None or (self._front is None and self._batched is None):
            return [self._whole_latent(ids, speed, run_options) for ids in batch]
        began = time.perf_counter()
        # A sentence that phonemizes very long (spelled-out symbols) runs the front in pieces
        # cut at word gaps: the front is quadratic in its ids. The latent is their join.
        id_map = self.config.phoneme_id_map
        pieces = [split_ids(ids, id_map, MAX_FRONT_IDS) for ids in batch]
        rows = [piece for sentence in pieces for piece in sentence]
        if self._batched is not None:
            fronts = self._batched.run(rows, self._scales(speed), run_options)
        else:
            fronts = [self._front_pass(row, speed, run_options) for row in rows]
        latents = []
        first = 0
        for ids, sentence in zip(batch, pieces, strict=True):
            latents.append(self._latent(ids, sentence, fronts[first:first + len(sentence)],
                                        speed))
            first += len(sentence)
        self.counters.encodes += len(batch)
        self.counters.front_s += time.perf_counter() - began
        return latents

    def _whole_latent(self, ids: Sequence[int], speed: float, run_options: Any) -> Latent:
        """An unsplit voice's latent: the whole sentence's audio, padded to whole frames."""
        audio = self._synthesize_batch([ids], speed, run_options)[0]
        hop = self._hop
        frames = max(1, -(-len(audio) // hop))
        padded = np.zeros(frames * hop, dtype=np.float32)
        padded[: len(audio)] = audio
        return Latent(frames=frames, samples_per_frame=hop, speed=speed, audio=padded)

    def _latent(self, ids: Sequence[int], pieces: Sequence[Sequence[int]],
                parts: Sequence[FrontRow], speed: float) -> Latent:
        """One sentence's latent from its pieces' fronts."""
        z_p, y_mask = parts[0][:2] if len(parts) == 1 else (
            np.concatenate([part[0] for part in parts], axis=2),
            np.concatenate([part[1] for part in parts], axis=2))
        frames = int(z_p.shape[2])
        id_map = self.config.phoneme_id_map
        durations = _joined_durations([part[2] for part in parts], pieces, len(ids), frames,
                                      head=len(id_map["^"]) + len(id_map["_"]),
                                      tail=len(id_map["$"]))
        prior = Prior(z_p=np.ascontiguousarray(z_p, dtype=np.float32),
                      y_mask=np.ascontiguousarray(y_mask, dtype=np.float32))
        return Latent(frames=frames, samples_per_frame=self._hop, speed=speed,
                      state=prior, durations=durations)

    def _front_pass(self, ids: Sequence[int], speed: float,
                    run_options: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(z_p, y_mask, frames per id or None) of one front run over ``ids``."""
        split = self._model.split
        assert split is not None and self._front is not None
        feeds: dict[str, np.ndarray] = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": self._scales(speed),
            **self._speaker_feeds(1, split.front_inputs),
        }
        cuts = split.cuts
        wanted = [cuts.z_p, cuts.y_mask] + ([cuts.durations] if cuts.durations else [])
        out = run_session(self._front, wanted, feeds, run_options)
        durations = None
        if len(out) > 2:
            durations = np.rint(np.asarray(out[2], dtype=np.float64).reshape(-1)).astype(
                np.int64)
        return out[0], out[1], durations

    def decode(self, latent: Latent, start_frame: int, frames: int, *,
               run_options: Any = None) -> np.ndarray:
        """Float32 audio for frames [start_frame, start_frame + frames) of ``latent``, context
        margins included inside: ``frames * hop`` samples, fewer only past the end."""
        return self.decode_batch([DecodeWindow(latent, start_frame, frames)],
                                 run_options=run_options)[0]

    def decode_batch(self, windows: Sequence[DecodeWindow], *,
                     run_options: Any = None) -> list[np.ndarray]:
        """Each window's audio, as ``decode`` gives it. Rows whose inputs have the same shape
        (same size and same clipping at the sentence's ends) share one flow run and one
        decoder run, stacked. On a GPU a window is rows of fixed shapes (``plan_rows``), and
        a run's row count is rounded up to a power of two with copies of its first row, so
        runs meet a few dozen shapes, all warmed at start. Speed is already in each latent."""
        plan = plan_rows if self.stable_shapes else (
            lambda window, context: [plan_window(window, context)])
        pieces: list[list[np.ndarray]] = [[] for _ in windows]
        groups: dict[tuple[int, int, int], list[tuple[int, int, WindowPlan, Prior]]] = {}
        for index, window in enumerate(windows):
            latent = window.latent
            rows = plan(window, self.context)
            if latent.audio is not None:  # a whole-sentence latent: slice it
                hop = latent.samples_per_frame
                pieces[index].append(latent.audio[rows[0].start * hop: rows[-1].end * hop])
                continue
            if not isinstance(latent.state, Prior) or self._model.split is None:
                raise SynthesisError("latent was not encoded by a split Piper voice")
            pieces[index] = [np.empty(0, dtype=np.float32)] * len(rows)
            for order, row in enumerate(rows):
                groups.setdefault(row.shape_key, []).append((index, order, row, latent.state))
        for items in groups.values():
            audio = self._decode_group([(row, prior) for _, _, row, prior in items], run_options)
            for (index, order, _, _), piece in zip(items, audio, strict=True):
                pieces[index][order] = piece
        return [parts[0].copy() if len(parts) == 1 else np.concatenate(parts)
                for parts in pieces]

    def _decode_group(self, items: list[tuple[WindowPlan, Prior]],
                      run_options: Any) -> list[np.ndarray]:
        split = self._model.split
        assert split is not None and self._flow is not None and self._decoder is not None
        plans = [plan for plan, _ in items]
        rows = len(items)
        runs = rows if not self.stable_shapes else 1 << (rows - 1).bit_length()
        chosen = items + [items[0]] * (runs - rows)  # padding rows: outputs dropped
        z_p = np.stack([pad_frames(prior.z_p, p.flow_start, p.flow_end) for p, prior in chosen])
        y_mask = np.stack([pad_frames(prior.y_mask, p.flow_start, p.flow_end)
                           for p, prior in chosen])
        flow_feeds = {split.cuts.z_p: z_p, split.cuts.y_mask: y_mask,
                      **self._speaker_feeds(runs, split.flow_inputs)}
        began = time.perf_counter()
        (z,) = run_session(self._flow, [split.cuts.z], flow_feeds, run_options)
        flowed = time.perf_counter()
        first = plans[0]
        offset = first.dec_start - first.flow_start
        dec_frames = first.dec_end - first.dec_start
        dec_feeds = {split.cuts.z: np.ascontiguousarray(z[:, :, offset:offset + dec_frames]),
                     **self._speaker_feeds(runs, split.decoder_inputs)}
        (audio,) = run_session(self._decoder, ["output"], dec_feeds, run_options)
        done = time.perf_counter()
        hop = self._hop
        audio = np.asarray(audio, dtype=np.float32).reshape(runs, -1)
        if audio.shape[1] != dec_frames * hop:
            raise SynthesisError(f"decoder gave {audio.shape[1]} samples for {dec_frames} "
                                 f"frames; expected a hop of {hop}")
        np.clip(audio, -1.0, 1.0, out=audio)
        counters = self.counters
        counters.windows += rows
        counters.runs += 1
        counters.output_frames += sum(p.end - p.start for p in plans)
        counters.flow_frames += runs * (first.flow_end - first.flow_start)
        counters.decoder_frames += runs * dec_frames
        counters.flow_s += flowed - began
        counters.decoder_s += done - flowed
        return [audio[row, (p.start - p.dec_start) * hop:(p.end - p.dec_start) * hop]
                for row, p in enumerate(plans)]

    def synthesize(self, text: str, speed: float = 1.0) -> np.ndarray:
        """Float32 mono audio in [-1, 1] for one chunk of text, the whole model at once."""
        return self.synthesize_ids([self.phoneme_ids(text)], speed)[0]

    def synthesize_ids(
        self, batch: Sequence[Sequence[int]], speed: float = 1.0, *, run_options: Any = None
    ) -> list[np.ndarray]:
        """The whole model over the whole batch at once; each item trimmed to its own length."""
        return self._synthesize_batch(batch, speed, run_options)

    def _synthesize_batch(self, batch: Sequence[Sequence[int]], speed: float,
                          run_options: Any) -> list[np.ndarray]:
        if not batch:
            return []
        split = self._model.split
        if split is not None and self._batched is not None:
            # The batched front's latents (it checks for empty ids), padded to the longest.
            latents = self.encode_batch(batch, speed, run_options=run_options)
            frames = max(latent.frames for latent in latents)
            priors = [latent.state for latent in latents if isinstance(latent.state, Prior)]
            z_p = np.stack([pad_frames(prior.z_p, 0, frames) for prior in priors])
            y_mask = np.stack([pad_frames(prior.y_mask, 0, frames) for prior in priors])
            return self._flow_decode(split, z_p, y_mask, run_options)
        scales = self._scales(speed)
        lengths = np.array([len(ids) for ids in batch], dtype=np.int64)
        if lengths.min() < 1:
            raise SynthesisError("empty phoneme id sequence")
        pad_id = self.config.phoneme_id_map["_"][0]
        ids = np.full((len(batch), int(lengths.max())), pad_id, dtype=np.int64)
        for row, item in enumerate(batch):
            ids[row, : len(item)] = item
        feeds: dict[str, np.ndarray] = {"input": ids, "input_lengths": lengths, "scales": scales}
        if split is not None:
            return self._synthesize_split(split, feeds, run_options)
        feeds.update(self._speaker_feeds(len(batch), self._model.input_names))
        assert self._session is not None
        outputs = run_session(self._session, self._outputs, feeds, run_options)
        return unpad_batch(outputs, len(batch), self.info.id)

    def _synthesize_split(self, split: SplitGraph, feeds: dict[str, np.ndarray],
                          run_options: Any) -> list[np.ndarray]:
        """Front, flow and decoder over the padded batch, as the whole graph would run them;
        the frame mask gives each item's length."""
        assert self._front is not None and self._flow is not None and self._decoder is not None
        rows = len(feeds["input"])
        z_p, y_mask = run_session(self._front, [split.cuts.z_p, split.cuts.y_mask],
                                  {**feeds, **self._speaker_feeds(rows, split.front_inputs)},
                                  run_options)
        return self._flow_decode(split, z_p, y_mask, run_options)

    def _flow_decode(self, split: SplitGraph, z_p: np.ndarray, y_mask: np.ndarray,
                     run_options: Any) -> list[np.ndarray]:
        """Flow and decoder over whole sentences, padded to the longest: ``y_mask`` gives each
        row's length."""
        assert self._flow is not None and self._decoder is not None
        rows = len(z_p)
        (z,) = run_session(self._flow, [split.cuts.z],
                           {split.cuts.z_p: z_p, split.cuts.y_mask: y_mask,
                            **self._speaker_feeds(rows, split.flow_inputs)}, run_options)
        (audio,) = run_session(self._decoder, ["output"],
                               {split.cuts.z: z, **self._speaker_feeds(rows, split.decoder_inputs)},
                               run_options)
        audio = np.asarray(audio, dtype=np.float32).reshape(rows, -1)
        np.clip(audio, -1.0, 1.0, out=audio)
        frames = np.asarray(y_mask).reshape(rows, -1).sum(axis=1).round().astype(np.int64)
        hop = self._hop
        return [audio[row, : int(frames[row]) * hop].copy() for row in range(rows)]
