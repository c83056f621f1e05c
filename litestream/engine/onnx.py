"""ONNX Runtime plumbing that every model shares: which execution provider runs a session (CUDA
when `cuda.py` says it can run here, with our options), and the options every session is
built with."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import onnxruntime as ort

from litestream.engine.cuda import SYNC_FLAGS, CudaStatus, probe, set_sync
from litestream.errors import ConfigError

logger = logging.getLogger("litestream.engine")

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")
# cuDNN's convolution algorithm search (the CUDA provider's cudnn_conv_algo_search).
CUDA_CONV_SEARCHES = ("exhaustive", "heuristic", "default")
CUDA_FRONTS = ("gpu", "cpu")
# An ONNX Runtime provider as InferenceSession takes it: a name, or (name, options).
Provider = str | tuple[str, dict[str, str]]


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    # Parallelism comes from worker threads, each with its own session; inter-op threads
    # would only compete with them for the same cores.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only; the provider choice is logged by us
    # No CPU arena: it keeps the largest shapes it has ever seen. One sentence of unusual
    # Unicode (spelled out by espeak, ~3,000 phonemes) grew a session by over 1 GB for good;
    # without the arena, tensors go back to malloc and the worker trims after each run
    # (synthesis/workers.release_memory; figures in docs/operations.md).
    options.enable_cpu_mem_arena = False
    return options


_provider_lock = threading.Lock()
_cuda: CudaStatus | None = None
_cuda_conv_search = "heuristic"  # Config.cuda_conv_search
_cuda_sync = "blocking"  # Config.cuda_sync
_cuda_front = "gpu"  # Config.cuda_front
_cuda_sync_set = False  # set_sync runs once, when CUDA is first chosen
_logged_choices: set[tuple[str, ...]] = set()


def cuda_status() -> CudaStatus:
    """Whether CUDA runs here, and why not (engine/cuda.py; probed once per process)."""
    global _cuda
    with _provider_lock:
        if _cuda is None:
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
    global _cuda_sync_set
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
        if providers[0] == CUDA_PROVIDER and not _cuda_sync_set:
            _cuda_sync_set = True  # before the first CUDA session, so that it holds for all
            logger.info("%s", set_sync(_cuda_sync))
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


def set_cuda_sync(mode: str) -> None:
    """How inference threads wait for the GPU (engine/cuda.py, SYNC_FLAGS): process-wide, set
    once from the Config before voices load, applied when CUDA is first chosen."""
    global _cuda_sync
    if mode not in SYNC_FLAGS:
        raise ConfigError(f"cuda sync must be one of {', '.join(SYNC_FLAGS)}, not {mode!r}")
    _cuda_sync = mode


def set_cuda_front(mode: str) -> None:
    """Where a voice's front pass runs when its decoder runs on CUDA (Config.cuda_front):
    process-wide, set once from the Config before voices load."""
    global _cuda_front
    if mode not in CUDA_FRONTS:
        raise ConfigError(f"cuda front must be one of {', '.join(CUDA_FRONTS)}, not {mode!r}")
    _cuda_front = mode


def cuda_front() -> str:
    """``set_cuda_front``'s choice: "gpu" or "cpu"."""
    return _cuda_front


def with_options(providers: Sequence[str]) -> list[Provider]:
    """``providers`` as an InferenceSession takes them, CUDA with our options."""
    return [(name, {"cudnn_conv_algo_search": _cuda_conv_search.upper()})
            if name == CUDA_PROVIDER else name for name in providers]
