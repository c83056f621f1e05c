"""An offline bundle of wheels for a GPU host with no network, in parts, and its checks.

    python -m loadtest.gpu.bundle build              # -> .bundle/: parts + SHA256SUMS
    python -m loadtest.gpu.bundle join --parts DIR --out bundle.tar    # on the host
    python -m loadtest.gpu.bundle install --bundle bundle.tar --target /tmp/site

The command line only; what it measures and how is in loadtest/lib/bundle.py.
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
