"""``python -m litestream.cli``: the same command as ``litestream``."""

from __future__ import annotations

from litestream.cli.commands import main

raise SystemExit(main())
