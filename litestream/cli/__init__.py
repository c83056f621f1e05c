"""`litestream serve|say|voices|bench`: the commands (commands.py) and the engine benchmark
(bench.py)."""

from __future__ import annotations

from litestream.cli.commands import main

__all__ = ["main"]
