"""litestream's tests: unit/ (plain calls) and e2e/ (real model, server, processes)."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # the repository's root
