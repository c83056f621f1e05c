"""Docs that must stay true to the code: every metric in the operations table, no path outside
the repository cited anywhere."""

from __future__ import annotations

import re

from litestream.metrics import Metrics
from tests import REPO


def test_the_metrics_table_lists_every_metric() -> None:
    table = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(litestream_\w+)", table, re.MULTILINE))
    exported = set()
    for family in Metrics().registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        exported.add(name)
    assert exported - listed == set(), "add to docs/operations.md, Metrics"
    assert listed - exported == set(), "no such metric (any more)"


def test_nothing_cites_a_path_outside_the_repository() -> None:
    outside = re.compile(r"/work/|shared/(?:spec|design|style)|BRIEF\.md|\.\./shared")
    wrong = []
    for path in sorted(REPO.rglob("*")):
        if (path.suffix not in {".py", ".md", ".toml", ".yaml", ".yml", ".sh", ".js", ".html"}
                and path.name not in {"Makefile", "Dockerfile"}):
            continue
        parts = set(path.relative_to(REPO).parts)
        if parts & {".venv", ".git", "node_modules", "build", ".mypy_cache", ".ruff_cache"}:
            continue
        if path == REPO / "tests" / "unit" / "test_docs.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if outside.search(line):
                wrong.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not wrong, "\n".join(wrong)
