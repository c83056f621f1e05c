"""Can this process run the CUDA provider, and if not, why not (issue 17: the start-up log says).

Three things must hold, checked in this order, and the first that fails is the reason given:

1. An NVIDIA driver: ``/proc/driver/nvidia/version`` (Linux; a container sees the host's), else
   ``nvidia-smi``. None: "no NVIDIA driver".
2. A driver new enough for the CUDA major version this onnxruntime-gpu build was made with
   (CUDA 13 needs a Linux driver >= 580, CUDA 12 >= 525: NVIDIA's CUDA toolkit and driver
   compatibility table).
3. The CUDA and cuDNN libraries the provider loads: the driver's own ``libcuda.so.1``, the
   toolkit's runtime, cuBLAS, cuRAND and cuFFT, and cuDNN 9. ``pip install 'litestream[gpu]'``
   brings all but the driver's from PyPI (onnxruntime-gpu's ``cuda`` and ``cudnn`` extras);
   onnxruntime's ``preload_dlls`` finds them in the pip packages. Missing ones are named.

``diagnose`` is pure (facts in, verdict out); ``probe`` gathers the facts from the machine. Tests
pass fakes for the driver file, ``nvidia-smi`` and library loading.

``set_sync`` chooses how a thread waits for the GPU (the driver's scheduling flags): CUDA's
default spins a core per waiting thread, and the server has many.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger("litestream.engine")

NVIDIA_VERSION_FILE = Path("/proc/driver/nvidia/version")
# The oldest Linux driver (major version) each CUDA major version runs on.
MIN_DRIVER = {11: 450, 12: 525, 13: 580}
# cuFFT's soname version by CUDA major version (it is numbered on its own).
CUFFT_MAJOR = {11: 10, 12: 11, 13: 12}
GPU_EXTRA = "pip install 'litestream[gpu]'"

_DRIVER_RE = re.compile(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+(?:\.\d+)+)")
_VERSION_RE = re.compile(r"\b(\d{3,4}(?:\.\d+)+)\b")


@dataclass(frozen=True)
class CudaStatus:
    """The verdict: whether CUDA can run, and what the log says about it."""

    usable: bool
    reason: str  # why not ("" when usable)
    driver: str | None = None  # "580.65.06", when found
    cuda_major: int | None = None  # the CUDA major version this onnxruntime build wants

    def describe(self) -> str:
        if self.usable:
            return f"NVIDIA driver {self.driver}, CUDA {self.cuda_major}"
        return f"CUDA not used: {self.reason}"


def parse_driver_version(text: str) -> str | None:
    """The driver version in /proc/driver/nvidia/version or nvidia-smi's output, or None.

    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun Jul 27 ..." and
    "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.82.07  Release Build ..." ->
    "580.65.06", "580.82.07"; a bare "550.54.15" (nvidia-smi's query) -> "550.54.15"."""
    found = _DRIVER_RE.search(text) or _VERSION_RE.search(text)
    return found.group(1) if found else None


def needed_libraries(cuda_major: int) -> list[str]:
    """The shared libraries the CUDA provider and cuDNN load, for this CUDA major version."""
    return [
        "libcuda.so.1",  # the driver's user-space half: absent in a container without it
        f"libcudart.so.{cuda_major}",
        f"libcublasLt.so.{cuda_major}",
        f"libcublas.so.{cuda_major}",
        "libcurand.so.10",
        f"libcufft.so.{CUFFT_MAJOR.get(cuda_major, cuda_major - 1)}",
        "libcudnn.so.9",
    ]


def diagnose(*, offered: bool, cuda_major: int, driver: str | None,
             missing: Sequence[str] | None) -> CudaStatus:
    """The verdict from the facts. ``missing``: libraries that did not load (None: not
    looked for, because an earlier check failed)."""
    if not offered:
        return CudaStatus(False, "this onnxruntime has no CUDA provider (plain onnxruntime "
                                 "installed over onnxruntime-gpu? see DEVELOPERS.md)",
                          driver, cuda_major)
    if driver is None:
        return CudaStatus(False, "no NVIDIA driver (no /proc/driver/nvidia/version, no "
                                 "nvidia-smi)", None, cuda_major)
    needs = MIN_DRIVER.get(cuda_major)
    major = int(driver.split(".")[0])
    if needs is not None and major < needs:
        return CudaStatus(False, f"NVIDIA driver {driver} is too old for CUDA {cuda_major} "
                                 f"(needs >= {needs})", driver, cuda_major)
    if missing:
        return CudaStatus(False, f"CUDA {cuda_major} libraries missing: {', '.join(missing)}"
                                 f" ({GPU_EXTRA})", driver, cuda_major)
    return CudaStatus(True, "", driver, cuda_major)


def read_driver(version_file: Path = NVIDIA_VERSION_FILE,
                smi: str | None = None,
                run: Callable[[list[str]], str] | None = None) -> str | None:
    """The NVIDIA driver's version: the kernel module's file, else nvidia-smi; None if neither.
    ``smi`` defaults to nvidia-smi on PATH; ``run`` runs it and returns its output."""
    try:
        found = parse_driver_version(version_file.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        found = None
    if found is not None:
        return found
    smi = smi if smi is not None else shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = (run or _run)([smi, "--query-gpu=driver_version", "--format=csv,noheader"])
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("%s failed: %s", smi, exc)
        return None
    return parse_driver_version(out)


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True).stdout


def missing_libraries(names: Sequence[str], load: Callable[[str], object] = ctypes.CDLL,
                      preload: Callable[[], None] | None = None) -> list[str]:
    """Those of ``names`` that do not load. ``preload`` (onnxruntime's preload_dlls by
    default) first loads what pip's nvidia-* packages hold, by path; once loaded, a library
    loads by its soname from anywhere in the process."""
    (preload or _preload_quietly)()
    missing = []
    for name in names:
        try:
            load(name)
        except OSError:
            missing.append(name)
    return missing


def _preload_quietly() -> None:
    """onnxruntime.preload_dlls, its prints about what it could not find swallowed."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            preload()
    except Exception as exc:  # any failure here only means the loads below decide
        logger.debug("onnxruntime.preload_dlls failed: %s", exc)


def build_cuda_major() -> int:
    """The CUDA major version this onnxruntime-gpu was built with (13 when it does not say)."""
    try:
        from onnxruntime.capi import build_and_package_info as build_info

        return int(str(getattr(build_info, "cuda_version", "") or "13").split(".")[0])
    except (ImportError, ValueError):
        return 13


def probe(*, offered: bool, cuda_major: int | None = None,
          version_file: Path = NVIDIA_VERSION_FILE, smi: str | None = None,
          run: Callable[[list[str]], str] | None = None,
          load: Callable[[str], object] = ctypes.CDLL,
          preload: Callable[[], None] | None = None) -> CudaStatus:
    """Gather the facts from this machine (the arguments replace parts of it in tests) and
    give the verdict. Libraries are looked for only once a driver that fits is found."""
    major = build_cuda_major() if cuda_major is None else cuda_major
    driver = read_driver(version_file, smi, run) if offered else None
    verdict = diagnose(offered=offered, cuda_major=major, driver=driver, missing=None)
    if verdict.usable:  # every check but the libraries passed
        missing = missing_libraries(needed_libraries(major), load, preload)
        verdict = diagnose(offered=offered, cuda_major=major, driver=driver, missing=missing)
    return verdict


# How a host thread waits for the GPU: the CUDA driver's CU_CTX_SCHED_* flags of a context
# (the runtime's cudaDeviceSchedule* have the same values). "auto" is CUDA's own choice, which
# spins whenever the process has fewer active contexts than the machine has cores: on any
# one-GPU host, every thread that waits for a result polls a core at 100% for the whole run.
SYNC_FLAGS = {"auto": 0, "spin": 1, "yield": 2, "blocking": 4}
_SCHED_MASK = 0x7


def set_sync(mode: str, device: int = 0,
             load: Callable[[str], object] = ctypes.CDLL) -> str:
    """Make threads of this process wait for ``device`` as ``mode`` says (SYNC_FLAGS).

    The flags belong to the device's primary context, the one ONNX Runtime's CUDA provider
    uses through the CUDA runtime; they are set through the driver API (``libcuda.so.1``,
    the driver's own library), which may do it before or after the context exists. Other
    flags of the context are kept. Never raises: what was done, or why nothing was, comes back
    for the start-up log, and CUDA's own default stays when it fails."""
    if mode not in SYNC_FLAGS:
        raise ValueError(f"cuda sync must be one of {', '.join(SYNC_FLAGS)}, not {mode!r}")
    try:
        lib: Any = load("libcuda.so.1")
    except OSError as exc:
        return f"CUDA sync left as CUDA's default: libcuda.so.1 did not load ({exc})"
    dev = ctypes.c_int(0)
    flags = ctypes.c_uint(0)
    active = ctypes.c_int(0)
    get_state = lib.cuDevicePrimaryCtxGetState
    set_flags = getattr(lib, "cuDevicePrimaryCtxSetFlags_v2", None) or \
        lib.cuDevicePrimaryCtxSetFlags
    steps: list[tuple[str, Callable[[], int]]] = [
        ("cuInit", lambda: int(lib.cuInit(0))),
        ("cuDeviceGet", lambda: int(lib.cuDeviceGet(ctypes.byref(dev), device))),
        ("cuDevicePrimaryCtxGetState",
         lambda: int(get_state(dev, ctypes.byref(flags), ctypes.byref(active)))),
        ("cuDevicePrimaryCtxSetFlags",
         lambda: int(set_flags(dev, (flags.value & ~_SCHED_MASK) | SYNC_FLAGS[mode]))),
    ]
    for name, call in steps:
        result = call()
        if result != 0:
            return f"CUDA sync left as CUDA's default: {name} returned CUresult {result}"
    return f"CUDA threads wait for the GPU by {mode}" + (
        " (CUDA's own choice: spin while fewer contexts than cores)" if mode == "auto" else "")
