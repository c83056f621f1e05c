"""``python -m litestream``: the same command as ``litestream``."""

from __future__ import annotations

from litestream.cli import main

raise SystemExit(main())
