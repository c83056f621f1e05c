"""The GPU build of onnxruntime must be the one installed (DEVELOPERS.md: Traps)."""

from __future__ import annotations

import importlib.metadata

import pytest


def test_plain_onnxruntime_not_installed() -> None:
    # Plain `onnxruntime` installs the same module and silently replaces the GPU build.
    # Fix: pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("onnxruntime")


def test_onnxruntime_gpu_installed() -> None:
    dist = importlib.metadata.distribution("onnxruntime-gpu")
    import onnxruntime

    assert onnxruntime.__version__ == dist.version
