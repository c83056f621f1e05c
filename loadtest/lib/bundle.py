"""An offline bundle of wheels for a GPU host with no network, in parts, and its checks: the
library behind `python -m loadtest.gpu.bundle` (its command line is loadtest/gpu/bundle.py).

`build` downloads, for a Linux x86-64 host with CPython 3.12 (`--python`), litestream's own
wheel and every runtime dependency (onnxruntime-gpu, the bundled voice's package, ...), leaves
out what the host's image already has (`--host-has`: by default the lent CUDA + PyTorch
image, loadtest/gpu/host-cuda-image.txt), recompresses each wheel with LZMA (still a valid
wheel: a zip whose members are LZMA-compressed, which pip reads; the CUDA provider library
shrinks from 231 to 186 MB), packs them with a manifest into one uncompressed tar, and cuts
it into parts of at most `--part-mb` MB with SHA-256 sums of each part and of the whole.

`join` checks each part against SHA256SUMS, joins them and checks the whole; `install`
unpacks the wheels and installs them with pip, no index, no network, into `--target`.
Only the standard library is used, so the host needs nothing of ours to join and install."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOST_IMAGE = ROOT / "loadtest" / "gpu" / "host-cuda-image.txt"
BUNDLE_NAME = "litestream-gpu-bundle.tar"
SUMS_NAME = "SHA256SUMS"
MANIFEST_NAME = "manifest.json"
PART_MB = 60
# pip matches manylinux tags exactly: every tag a CPython 3.12 x86-64 host accepts that
# our dependencies use.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux_2_5_x86_64", "manylinux1_x86_64", "any")


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_name(path: Path) -> str:
    return normalize(path.name.split("-", 1)[0])


def read_host_has(path: Path) -> set[str]:
    names: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0]
        names.update(normalize(word.split("==", 1)[0]) for word in line.split())
    return names


def runtime_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    with pyproject.open("rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- build

def recompress(wheel: Path, cache: Path) -> Path:
    """The same wheel with every member LZMA-compressed (same names, bytes and RECORD),
    kept in `cache` under the original's SHA-256 (LZMA takes minutes on the big ones)."""
    target = cache / sha256(wheel) / wheel.name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(
            partial, "w", compression=zipfile.ZIP_LZMA) as dst:
        for info in src.infolist():
            copy = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            copy.external_attr = info.external_attr
            copy.compress_type = zipfile.ZIP_LZMA
            dst.writestr(copy, src.read(info))
    partial.rename(target)
    return target


def pack(wheels: Sequence[Path], manifest: dict[str, object], bundle: Path) -> None:
    """One uncompressed, reproducible tar: wheels/<name> for each wheel, then the manifest."""

    def add(tar: tarfile.TarFile, name: str, data: bytes | None, path: Path | None) -> None:
        info = tarfile.TarInfo(name)
        info.mtime = 0
        info.mode = 0o644
        if path is not None:
            info.size = path.stat().st_size
            with path.open("rb") as f:
                tar.addfile(info, f)
        else:
            assert data is not None
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

    with tarfile.open(bundle, "w", format=tarfile.PAX_FORMAT) as tar:
        for wheel in sorted(wheels, key=lambda p: p.name):
            add(tar, f"wheels/{wheel.name}", None, wheel)
        add(tar, MANIFEST_NAME, json.dumps(manifest, indent=1).encode(), None)


def split(bundle: Path, out_dir: Path, part_bytes: int) -> list[Path]:
    """Cut `bundle` into NAME.000, NAME.001, ... of at most `part_bytes` each, and write
    SHA256SUMS (each part, then the whole bundle) beside them."""
    if part_bytes < 1:
        raise ValueError("part size must be positive")
    parts: list[Path] = []
    with bundle.open("rb") as f:
        while block := f.read(part_bytes):
            part = out_dir / f"{bundle.name}.{len(parts):03d}"
            part.write_bytes(block)
            parts.append(part)
    lines = [f"{sha256(p)}  {p.name}" for p in parts] + [f"{sha256(bundle)}  {bundle.name}"]
    (out_dir / SUMS_NAME).write_text("\n".join(lines) + "\n", encoding="ascii")
    return parts


def _commit() -> str | None:
    """The tree the litestream wheel was built from (a `-dirty` suffix: uncommitted edits)."""
    try:
        return subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def build(out_dir: Path, *, python: str, host_has: set[str], omit: set[str],
          part_mb: float) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob(f"{BUNDLE_NAME}*"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        downloads = Path(tmp, "downloads")
        downloads.mkdir()
        _pip("wheel", "--quiet", "--no-deps", "-w", str(downloads),
             str(ROOT))
        platform_args = [arg for tag in PLATFORMS for arg in ("--platform", tag)]
        _pip("download", "--quiet", "--only-binary=:all:", "--python-version", python,
             "--implementation", "cp", *platform_args, "-d", str(downloads),
             *runtime_requirements())
        chosen, left_out = [], []
        for wheel in sorted(downloads.glob("*.whl")):
            name = wheel_name(wheel)
            (left_out if name in host_has or name in omit else chosen).append(wheel)
        manifest = {
            "python": python, "platforms": list(PLATFORMS), "commit": _commit(),
            "wheels": [{"file": w.name, "sha256": sha256(w)} for w in chosen],
            "left_out": sorted(w.name for w in left_out),
            "requirements": runtime_requirements(),
        }
        for wheel in chosen:
            print(f"  {wheel.name}: {wheel.stat().st_size / 1e6:.1f} MB", flush=True)
        wheels = [recompress(w, out_dir / "cache") for w in chosen]
        bundle = Path(tmp, BUNDLE_NAME)
        pack(wheels, manifest, bundle)
        parts = split(bundle, out_dir, int(part_mb * 1_000_000))
        print(f"bundle {bundle.stat().st_size / 1e6:.1f} MB ({len(chosen)} wheels; left out "
              f"as on the host: {', '.join(sorted(wheel_name(w) for w in left_out))}) in "
              f"{len(parts)} parts of at most {part_mb:g} MB under {out_dir}")
    return parts


# ---------------------------------------------------------------- on the host

class BundleError(Exception):
    pass


@dataclass(frozen=True)
class Sums:
    parts: list[tuple[str, str]]  # (sha256, file name) of each part, in order
    whole: tuple[str, str]  # (sha256, file name) of the joined bundle


def read_sums(path: Path) -> Sums:
    rows = [line.split(None, 1) for line in path.read_text(encoding="ascii").splitlines()
            if line.strip()]
    entries = [(digest, name.strip()) for digest, name in rows]
    if len(entries) < 2:
        raise BundleError(f"{path}: needs each part's sum and the whole bundle's")
    return Sums(parts=entries[:-1], whole=entries[-1])


def join(parts_dir: Path, out: Path) -> Path:
    """Check every part, join them in order into `out`, check the whole; BundleError on any
    missing or damaged part."""
    sums = read_sums(parts_dir / SUMS_NAME)
    for digest, name in sums.parts:
        part = parts_dir / name
        if not part.is_file():
            raise BundleError(f"part {name} is missing")
        if sha256(part) != digest:
            raise BundleError(f"part {name} is damaged (SHA-256 differs)")
    with out.open("wb") as f:
        for _, name in sums.parts:
            with (parts_dir / name).open("rb") as part:
                shutil.copyfileobj(part, f, 1 << 20)
    if sha256(out) != sums.whole[0]:
        raise BundleError("the joined bundle's SHA-256 differs from the one recorded")
    return out


def unpack(bundle: Path, into: Path) -> list[Path]:
    """The bundle's wheels, checked against its manifest, written under `into`."""
    with tarfile.open(bundle) as tar:
        manifest = json.loads(tar.extractfile(MANIFEST_NAME).read())  # type: ignore[union-attr]
        wheels: list[Path] = []
        for entry in manifest["wheels"]:
            member = tar.extractfile(f"wheels/{entry['file']}")
            if member is None:
                raise BundleError(f"{entry['file']} is missing from the bundle")
            path = into / entry["file"]
            path.write_bytes(member.read())
            wheels.append(path)
    return wheels


def install(bundle: Path, target: Path) -> list[str]:
    """pip install every wheel of the bundle into `target`: no index, no network."""
    with tempfile.TemporaryDirectory() as tmp:
        wheels = unpack(bundle, Path(tmp))
        _pip("install", "--quiet", "--no-index", "--no-deps", "--no-compile", "--upgrade",
             "--target", str(target), *map(str, wheels))
    return [w.name for w in wheels]


# ---------------------------------------------------------------- CLI
