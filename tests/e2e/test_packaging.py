"""The GPU build of onnxruntime must be the one installed (DEVELOPERS.md: Traps)."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests import REPO

ROOT = REPO


def test_plain_onnxruntime_not_installed() -> None:
    # Plain `onnxruntime` installs the same module and silently replaces the GPU build.
    # Fix: pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("onnxruntime")


def test_onnxruntime_gpu_installed() -> None:
    dist = importlib.metadata.distribution("onnxruntime-gpu")
    import onnxruntime

    assert onnxruntime.__version__ == dist.version


def test_the_gpu_extra_is_onnxruntime_gpu_with_its_cuda_libraries() -> None:
    # `pip install 'litestream[gpu]'`: CUDA and cuDNN from PyPI; never plain onnxruntime.
    with (ROOT / "pyproject.toml").open("rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    (requirement,) = extras["gpu"]
    assert requirement.startswith("onnxruntime-gpu[cuda,cudnn]>=")
    assert not any(r.split("[")[0].split(">")[0].strip() == "onnxruntime"
                   for group in extras.values() for r in group)


def make_serve_plan(**variables: str) -> str:
    """What `make serve` would run (make -n), with the driver checks pointed at fakes."""
    argv = ["make", "-n", "-C", str(ROOT), "serve", *(f"{k}={v}" for k, v in variables.items())]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_serve_installs_the_gpu_extra_only_on_a_host_with_a_driver(tmp_path: Path) -> None:
    driver = tmp_path / "version"
    driver.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06\n")
    absent = str(tmp_path / "absent")
    assert "'.[gpu]'" in make_serve_plan(NVIDIA_DRIVER=str(driver), NVIDIA_SMI=absent)
    assert "'.[gpu]'" in make_serve_plan(NVIDIA_DRIVER=absent, NVIDIA_SMI="true")  # nvidia-smi
    cpu = make_serve_plan(NVIDIA_DRIVER=absent, NVIDIA_SMI=absent)
    assert "'.[gpu]'" not in cpu and "litestream serve" in cpu
