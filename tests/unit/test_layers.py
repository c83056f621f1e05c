"""The layers of litestream hold: who may import whom (docs/architecture.md, "Layers").

Every import of every module under litestream/ is read with `ast` (module level, inside
functions and under TYPE_CHECKING alike) and checked against one table of allowed directions
between the top-level parts. Then: no cycles among modules at import time; no module imports
its own package's __init__ (only its siblings); the pure cores import no I/O; and, in a fresh
interpreter, importing the session, the wire format or the client pulls in nothing it must not.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import REPO

ROOT = REPO
PACKAGE = ROOT / "litestream"

# part -> the parts it may import. A part is a top-level module or package of litestream
# (engine's subpackages belong to engine). This table is docs/architecture.md's, in code.
ALLOWED: dict[str, frozenset[str]] = {
    "errors": frozenset(),
    "logs": frozenset(),
    "protocol": frozenset({"errors", "text"}),
    "config": frozenset({"errors", "protocol"}),
    "security": frozenset({"errors", "config"}),
    "text": frozenset({"errors"}),
    "scheduler": frozenset(),
    "engine": frozenset({"errors", "text"}),
    "session": frozenset({"errors", "logs", "protocol", "text"}),
    "client": frozenset({"errors", "protocol"}),
    "metrics": frozenset({"errors", "config", "security"}),
    "synthesis": frozenset({"errors", "logs", "config", "protocol", "engine", "metrics",
                            "scheduler", "session", "text"}),
    "server": frozenset({"errors", "logs", "config", "security", "protocol", "text", "scheduler",
                         "engine", "session", "metrics", "synthesis"}),
    "cli": frozenset({"errors", "logs", "config", "protocol", "text", "engine", "client",
                      "server"}),
    "__main__": frozenset({"cli"}),
    "__init__": frozenset(),
}

# Third-party and standard-library modules only some parts may import.
ONLY_IN: dict[str, frozenset[str]] = {
    "aiohttp": frozenset({"server"}),  # the one HTTP/WebSocket server library
    "prometheus_client": frozenset({"metrics"}),
    "websockets": frozenset({"client"}),
    "onnxruntime": frozenset({"engine", "synthesis"}),  # synthesis: a run's RunOptions
    "pipecat": frozenset({"client"}),
    "redis": frozenset({"synthesis"}),  # the shared sentence cache (shared_cache.py)
}
# The pure cores: no event loop, no threads, no clock (the caller passes `now`), no sockets.
PURE = ("scheduler", "session", "text", "protocol", "security", "errors", "config")
NOT_IN_PURE = ("asyncio", "threading", "time", "socket", "aiohttp", "websockets")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # what it imports: a module, or a package's __init__
    line: int
    runtime: bool  # at import time: module level, not under TYPE_CHECKING


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(dotted: str) -> bool:
    rel = Path(*dotted.split("."))
    return (ROOT / rel).with_suffix(".py").is_file() or (ROOT / rel / "__init__.py").is_file()


def part(dotted: str) -> str:
    names = dotted.split(".")
    return names[1] if len(names) > 1 else "__init__"


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(path: Path) -> Iterator[Import]:
    module = module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))

    def walk(nodes: list[ast.stmt], runtime: bool) -> Iterator[Import]:
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(module, alias.name, node.lineno, runtime)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    target = sub if is_module(sub) else node.module
                    yield Import(module, target, node.lineno, runtime)
            elif isinstance(node, ast.If) and _type_checking(node):
                yield from walk(node.body, False)
                yield from walk(node.orelse, runtime)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                yield from walk(node.body, runtime and isinstance(node, ast.ClassDef))
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    children = getattr(node, field, None)
                    if isinstance(children, list):
                        yield from walk([c for c in children if isinstance(c, ast.stmt)] +
                                        [s for h in children if isinstance(h, ast.ExceptHandler)
                                         for s in h.body], runtime)

    yield from walk(tree.body, True)


IMPORTS = [imp for path in sorted(PACKAGE.rglob("*.py")) for imp in imports_of(path)]
OURS = [imp for imp in IMPORTS if imp.target.split(".")[0] == "litestream"]


def test_every_part_is_in_the_table() -> None:
    parts = {part(module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert {"scheduler", "session", "server"} <= parts  # the walk found the package
    assert parts <= set(ALLOWED), f"add to ALLOWED and docs/architecture.md: {parts - set(ALLOWED)}"


def test_parts_import_only_in_the_allowed_directions() -> None:
    wrong = sorted({
        f"{imp.module}:{imp.line} imports {imp.target}"
        for imp in OURS
        if part(imp.target) != part(imp.module) and part(imp.target) != "__init__"
        and part(imp.target) not in ALLOWED[part(imp.module)]
    })
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_its_own_packages_init() -> None:
    # Siblings import siblings (`from litestream.engine.piper.files import ...`), never the
    # package they are being imported by: that works only by import order.
    wrong = sorted({
        f"{imp.module}:{imp.line} imports {imp.target}"
        for imp in OURS
        if imp.target != imp.module and (imp.module + ".").startswith(imp.target + ".")
        and (PACKAGE.parent / Path(*imp.target.split(".")) / "__init__.py").is_file()
    })
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("runtime_only", [True, False], ids=["at-import-time", "any-import"])
def test_no_import_cycles(runtime_only: bool) -> None:
    # Edges: what a module imports, including the packages above a target that the importer is
    # not itself inside (importing a.b.c runs a's and a.b's __init__ first). At import time:
    # module level, not under TYPE_CHECKING. Any import: in functions and for types too, so two
    # modules never know each other.
    graph: dict[str, set[str]] = {}
    for imp in OURS:
        if runtime_only and not imp.runtime:
            continue
        names = imp.target.split(".")
        for i in range(2, len(names) + 1):
            target = ".".join(names[:i])
            if not (imp.module + ".").startswith(target + "."):
                graph.setdefault(imp.module, set()).add(target)
    seen: dict[str, int] = {}  # 1: on the path, 2: done
    cycles: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        seen[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if seen.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in seen:
                visit(nxt, [*path, nxt])
        seen[node] = 2

    for node in sorted(graph):
        if node not in seen:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("library", sorted(ONLY_IN))
def test_libraries_stay_in_their_parts(library: str) -> None:
    wrong = sorted(f"{imp.module}:{imp.line}" for imp in IMPORTS
                   if imp.target.split(".")[0] == library
                   and part(imp.module) not in ONLY_IN[library])
    assert not wrong, f"{library} imported outside {sorted(ONLY_IN[library])}: {wrong}"


def test_the_pure_cores_import_no_io() -> None:
    wrong = sorted(f"{imp.module}:{imp.line} imports {imp.target}" for imp in IMPORTS
                   if part(imp.module) in PURE and imp.target.split(".")[0] in NOT_IN_PURE)
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("module,absent", [
    ("litestream.session", ("asyncio", "prometheus_client", "aiohttp", "litestream.metrics",
                            "litestream.scheduler", "litestream.server")),
    ("litestream.protocol", ("asyncio", "litestream.scheduler", "litestream.server",
                             "litestream.security")),
    ("litestream.client", ("aiohttp", "litestream.scheduler", "litestream.server",
                           "litestream.synthesis", "litestream.engine")),
    ("litestream.scheduler", ("asyncio", "threading", "litestream.protocol",
                              "litestream.session")),
])
def test_what_an_import_pulls_in(module: str, absent: tuple[str, ...]) -> None:
    # In a fresh interpreter: the whole chain of imports, third-party ones included.
    code = (f"import sys, {module}; "
            f"print(sorted({{m.split('.')[0] if not m.startswith('litestream.') else "
            f"'.'.join(m.split('.')[:2]) for m in sys.modules}}))")
    loaded = set(eval(subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                                     capture_output=True, text=True).stdout))
    assert not loaded & set(absent)


def test_tests_import_no_command_module() -> None:
    # loadtest/lib/ is the tools' library; loadtest/*.py and loadtest/experiments/ are commands
    # (something one runs), which tests never import (loadtest/README.md).
    wrong = sorted({
        f"{imp.module}:{imp.line} imports {imp.target}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for imp in imports_of(path)
        if imp.target.split(".")[0] == "loadtest" and not imp.target.startswith("loadtest.lib")
    })
    assert not wrong, "\n".join(wrong)


def test_the_architecture_doc_states_the_same_table() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = doc[doc.index("| part | may import"):]
    stated: dict[str, frozenset[str]] = {}
    for line in section.splitlines()[2:]:
        if not line.startswith("| `"):
            break
        first, second = (cell.strip() for cell in line.strip("|").split("|")[:2])
        ours = re.sub(r"\(.*?\)", "", second.split(";")[0])
        allowed = frozenset(name.strip() for name in ours.split(",")
                            if name.strip() and name.strip() != "nothing of litestream")
        for name in re.findall(r"`(\w+)`", first):
            stated[name] = allowed
    expected = {k: v for k, v in ALLOWED.items() if k not in ("__main__", "__init__")}
    assert stated == expected


def test_every_package_ships_in_the_wheel() -> None:
    # pyproject lists packages by name (the browser player maps in as litestream.static): a new
    # package left out of the list would import in a checkout and be missing when installed.
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"])
    found = {module_name(init.parent / "__init__.py") for init in PACKAGE.rglob("__init__.py")}
    assert found | {"litestream.static"} == listed
