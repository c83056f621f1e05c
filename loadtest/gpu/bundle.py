"""An offline bundle of wheels for a GPU host with no network, in parts, and its checks.

    python -m loadtest.gpu.bundle build              # -> .bundle/: parts + SHA256SUMS
    python -m loadtest.gpu.bundle join --parts DIR --out bundle.tar    # on the host
    python -m loadtest.gpu.bundle install --bundle bundle.tar --target /tmp/site

`build` downloads, for a Linux x86-64 host with CPython 3.12 (`--python`), litestream's own
wheel and every runtime dependency (onnxruntime-gpu, the bundled voice's package, ...), leaves
out what the host's image already has (`--host-has`: by default the lent CUDA + PyTorch
image, loadtest/gpu/host-cuda-image.txt), recompresses each wheel with LZMA (still a valid
wheel: a zip whose members are LZMA-compressed, which pip reads; the CUDA provider library
shrinks from 231 to 186 MB), packs them with a manifest into one uncompressed tar, and cuts
it into parts of at most `--part-mb` MB with SHA-256 sums of each part and of the whole.

`join` checks each part against SHA256SUMS, joins them and checks the whole; `install`
unpacks the wheels and installs them with pip, no index, no network, into `--target`.
Only the standard library is used, so the host needs nothing of ours to join and install.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from loadtest.lib.bundle import (
    HOST_IMAGE,
    PART_MB,
    ROOT,
    BundleError,
    build,
    install,
    join,
    normalize,
    read_host_has,
)


def _names(values: Iterable[str]) -> set[str]:
    return {normalize(v) for value in values for v in value.split(",") if v.strip()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.gpu.bundle", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build", help="download, pack and split the bundle")
    b.add_argument("--out", type=Path, default=ROOT / ".bundle")
    b.add_argument("--python", default="3.12", help="the host's CPython version")
    b.add_argument("--host-has", type=Path, default=HOST_IMAGE,
                   help="names of packages the host has (pip list --format freeze works)")
    b.add_argument("--omit", action="append", default=[],
                   help="leave out these distributions too (comma list)")
    b.add_argument("--part-mb", type=float, default=PART_MB)
    j = commands.add_parser("join", help="check the parts and join them")
    j.add_argument("--parts", type=Path, required=True)
    j.add_argument("--out", type=Path, required=True)
    i = commands.add_parser("install", help="install a joined bundle's wheels, offline")
    i.add_argument("--bundle", type=Path, required=True)
    i.add_argument("--target", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            build(args.out, python=args.python, host_has=read_host_has(args.host_has),
                  omit=_names(args.omit), part_mb=args.part_mb)
        elif args.command == "join":
            join(args.parts, args.out)
            print(f"joined {args.out} ({args.out.stat().st_size / 1e6:.1f} MB), every SHA-256 "
                  "as recorded")
        else:
            names = install(args.bundle, args.target)
            print(f"installed {len(names)} wheels into {args.target}")
    except BundleError as exc:
        print(f"bundle: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
