"""Shared fixtures. Loading the real voice takes seconds, so it happens once per session."""

from __future__ import annotations

import pytest

from litestream.engine import PiperVoice


@pytest.fixture(scope="session")
def voice() -> PiperVoice:
    """The bundled voice, deterministic (no noise): identical input gives identical audio."""
    return PiperVoice.load(deterministic=True)
