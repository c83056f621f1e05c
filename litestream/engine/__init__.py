"""Voices: the one engine interface (base.Voice), Piper (piper/) and Kokoro (kokoro/) models,
the synthetic stand-in (synthetic.py), the catalogue of voices by id (registry.py), espeak-ng
(phonemize.py) and ONNX Runtime plumbing (onnx.py, cuda.py)."""

from __future__ import annotations

from litestream.engine.base import Latent, Voice, VoiceDescription
from litestream.engine.piper.voice import PiperVoice
from litestream.engine.registry import describe_voices, load_voices

__all__ = [
    "Latent",
    "PiperVoice",
    "Voice",
    "VoiceDescription",
    "describe_voices",
    "load_voices",
]
