"""Voices: phonemize (espeak-ng, one lock), phoneme ids, ONNX session, batches."""

from __future__ import annotations

from litestream.engine.catalog import VoiceInfo, list_voices, select_providers
from litestream.engine.piper import PiperVoice

__all__ = ["PiperVoice", "VoiceInfo", "list_voices", "select_providers"]
