"""engine/cuda.py: why CUDA runs or not, with fakes for what is outside the project (the
driver's version file, nvidia-smi, loading shared libraries)."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import pytest

from litestream.engine.cuda import (
    CudaStatus,
    diagnose,
    needed_libraries,
    parse_driver_version,
    probe,
    read_driver,
    set_sync,
)

PROC_580 = ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun Jul 27 06:54:38 "
            "UTC 2025\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
PROC_OPEN_570 = ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.133.20  Release "
                 "Build  (dvs-builder@U16-I3-B03-4-3)  Thu Mar 27 11:33:46 UTC 2025\n")
PROC_550 = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024"


class FakeLibraries:
    """Stands in for ctypes.CDLL: these sonames are not on the machine."""

    def __init__(self, absent: set[str]) -> None:
        self.absent = absent
        self.asked: list[str] = []
        self.preloaded = False

    def load(self, name: str) -> object:
        self.asked.append(name)
        if name in self.absent:
            raise OSError(f"{name}: cannot open shared object file: No such file or directory")
        return object()

    def preload(self) -> None:
        self.preloaded = True


def driver_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "version"
    path.write_text(text)
    return path


def test_driver_versions_are_read_from_either_format() -> None:
    assert parse_driver_version(PROC_580) == "580.65.06"
    assert parse_driver_version(PROC_OPEN_570) == "570.133.20"
    assert parse_driver_version("550.54.15\n") == "550.54.15"  # nvidia-smi's query
    assert parse_driver_version("no driver here, gcc 12.2.0") is None


def test_no_driver(tmp_path: Path) -> None:
    libs = FakeLibraries(set())
    status = probe(offered=True, cuda_major=13, version_file=tmp_path / "absent", smi="",
                   load=libs.load, preload=libs.preload)
    assert not status.usable and status.driver is None
    assert status.describe() == ("CUDA not used: no NVIDIA driver (no /proc/driver/nvidia/version,"
                                 " no nvidia-smi)")
    assert libs.asked == []  # nothing loaded without a driver


def test_a_driver_too_old_for_cuda_13(tmp_path: Path) -> None:
    for text, version in ((PROC_550, "550.54.15"), (PROC_OPEN_570, "570.133.20")):
        status = probe(offered=True, cuda_major=13, version_file=driver_file(tmp_path, text),
                       smi="", load=FakeLibraries(set()).load, preload=lambda: None)
        assert not status.usable
        assert status.reason == (f"NVIDIA driver {version} is too old for CUDA 13 "
                                 f"(needs >= 580)")
    # The same driver serves a CUDA 12 build.
    status = probe(offered=True, cuda_major=12, version_file=driver_file(tmp_path, PROC_550),
                   smi="", load=FakeLibraries(set()).load, preload=lambda: None)
    assert status.usable and status.describe() == "NVIDIA driver 550.54.15, CUDA 12"


def test_missing_libraries_are_named(tmp_path: Path) -> None:
    libs = FakeLibraries({"libcudnn.so.9", "libcublasLt.so.13"})
    status = probe(offered=True, cuda_major=13, version_file=driver_file(tmp_path, PROC_580),
                   smi="", load=libs.load, preload=libs.preload)
    assert libs.preloaded  # pip's nvidia-* packages are looked in first
    assert not status.usable and status.driver == "580.65.06"
    assert status.reason == ("CUDA 13 libraries missing: libcublasLt.so.13, libcudnn.so.9 "
                             "(pip install 'litestream[gpu]')")
    assert libs.asked == needed_libraries(13)


def test_everything_in_place(tmp_path: Path) -> None:
    status = probe(offered=True, cuda_major=13, version_file=driver_file(tmp_path, PROC_580),
                   smi="", load=FakeLibraries(set()).load, preload=lambda: None)
    assert status == CudaStatus(True, "", "580.65.06", 13)
    assert status.describe() == "NVIDIA driver 580.65.06, CUDA 13"


def test_nvidia_smi_when_there_is_no_proc_file(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def smi(argv: list[str]) -> str:
        calls.append(argv)
        return "580.82.07\n"

    assert read_driver(tmp_path / "absent", smi="/usr/bin/nvidia-smi", run=smi) == "580.82.07"
    assert calls[0][0] == "/usr/bin/nvidia-smi"

    def broken(argv: list[str]) -> str:
        raise OSError("nvidia-smi: NVML driver/library version mismatch")

    assert read_driver(tmp_path / "absent", smi="/usr/bin/nvidia-smi", run=broken) is None


def test_an_onnxruntime_without_cuda() -> None:
    status = diagnose(offered=False, cuda_major=13, driver="580.65.06", missing=None)
    assert not status.usable and "no CUDA provider" in status.reason


@pytest.mark.parametrize("major", [12, 13])
def test_the_libraries_looked_for(major: int) -> None:
    names = needed_libraries(major)
    assert names[0] == "libcuda.so.1" and "libcudnn.so.9" in names
    assert f"libcudart.so.{major}" in names and f"libcufft.so.{major - 1}" in names


class FakeDriver:
    """Stands in for libcuda.so.1's driver API: one device whose primary context holds
    ``flags``; a call named in ``fail`` returns that CUresult."""

    def __init__(self, flags: int = 0, fail: dict[str, int] | None = None) -> None:
        self.flags = flags
        self.fail = fail or {}
        self.calls: list[str] = []

    def _result(self, name: str) -> int:
        self.calls.append(name)
        return self.fail.get(name, 0)

    def cuInit(self, flags: int) -> int:  # the driver API's names
        assert flags == 0
        return self._result("cuInit")

    def cuDeviceGet(self, device: Any, ordinal: int) -> int:
        ctypes.cast(device, ctypes.POINTER(ctypes.c_int)).contents.value = 7 + ordinal
        return self._result("cuDeviceGet")

    def cuDevicePrimaryCtxGetState(self, dev: ctypes.c_int, flags: Any,
                                   active: Any) -> int:
        assert dev.value == 7
        ctypes.cast(flags, ctypes.POINTER(ctypes.c_uint)).contents.value = self.flags
        return self._result("cuDevicePrimaryCtxGetState")

    def cuDevicePrimaryCtxSetFlags_v2(self, dev: ctypes.c_int, flags: int) -> int:
        assert dev.value == 7
        result = self._result("cuDevicePrimaryCtxSetFlags")
        if result == 0:
            self.flags = flags
        return result


@pytest.mark.parametrize(("mode", "sched"), [("blocking", 4), ("spin", 1), ("yield", 2),
                                             ("auto", 0)])
def test_sync_sets_the_scheduling_flag_and_keeps_the_others(mode: str, sched: int) -> None:
    driver = FakeDriver(flags=0x10 | 0x1)  # LMEM_RESIZE_TO_MAX, and spin set before
    said = set_sync(mode, load=lambda name: driver if name == "libcuda.so.1" else None)
    assert driver.flags == 0x10 | sched
    assert driver.calls == ["cuInit", "cuDeviceGet", "cuDevicePrimaryCtxGetState",
                            "cuDevicePrimaryCtxSetFlags"]
    assert said.startswith(f"CUDA threads wait for the GPU by {mode}")


def test_sync_without_a_driver_library_says_so_and_does_not_raise() -> None:
    def absent(name: str) -> object:
        raise OSError(f"{name}: cannot open shared object file")

    said = set_sync("blocking", load=absent)
    assert "left as CUDA's default" in said and "libcuda.so.1 did not load" in said


def test_sync_stops_at_the_first_driver_error_and_names_it() -> None:
    driver = FakeDriver(flags=0x1, fail={"cuDeviceGet": 100})  # CUDA_ERROR_NO_DEVICE
    said = set_sync("blocking", load=lambda name: driver)
    assert said == "CUDA sync left as CUDA's default: cuDeviceGet returned CUresult 100"
    assert driver.calls == ["cuInit", "cuDeviceGet"] and driver.flags == 0x1


def test_sync_modes_are_checked() -> None:
    with pytest.raises(ValueError, match="blocking"):
        set_sync("sleep", load=lambda name: FakeDriver())
