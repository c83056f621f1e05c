"""Voices: the one engine interface (base.Voice), Piper and Kokoro models, the catalogue."""

from __future__ import annotations

from litestream.engine.base import Latent, Voice, VoiceDescription
from litestream.engine.catalog import VoiceInfo, list_voices, select_providers
from litestream.engine.piper.voice import PiperVoice
from litestream.engine.registry import describe_voices, load_voices

__all__ = [
    "Latent",
    "PiperVoice",
    "Voice",
    "VoiceDescription",
    "VoiceInfo",
    "describe_voices",
    "list_voices",
    "load_voices",
    "select_providers",
]
