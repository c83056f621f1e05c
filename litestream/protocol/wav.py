"""16-bit mono WAV out of float32 or int16 audio (the CLI, tests and load tools use it)."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import BinaryIO

import numpy as np

from litestream.protocol.v1 import to_s16


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """int16 samples: float audio is clipped to [-1, 1] and scaled; int16 passes through."""
    if audio.dtype == np.int16:
        return audio
    # The same conversion as the wire's, so `say` and `say --server` give the same samples.
    return to_s16(np.asarray(audio, dtype=np.float32)).astype(np.int16)


def write_wav(target: str | Path | BinaryIO, audio: np.ndarray, sample_rate: int) -> None:
    """Write mono 16-bit PCM WAV to a path or a binary file object."""
    pcm = to_pcm16(np.asarray(audio).reshape(-1))
    # wave closes only what it opened, so a caller's file object stays open.
    with wave.open(str(target) if isinstance(target, str | Path) else target, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.astype("<i2").tobytes())


def read_wav(source: str | Path | BinaryIO) -> tuple[int, np.ndarray]:
    """(sample_rate, int16 mono samples) from a 16-bit mono WAV; ValueError otherwise."""
    with wave.open(str(source) if isinstance(source, str | Path) else source, "rb") as wav:
        if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            raise ValueError("expected 16-bit mono WAV")
        frames = wav.readframes(wav.getnframes())
        return wav.getframerate(), np.frombuffer(frames, dtype="<i2").astype(np.int16)
