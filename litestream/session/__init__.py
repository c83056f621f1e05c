"""One stream's protocol-v1 rules, sans I/O: `StreamSession` (session.py) and the items that go
in and out of it, its ports and limits (interface.py)."""

from __future__ import annotations

from litestream.session.interface import (
    ChunkAudio,
    ChunkFailed,
    ChunkPlanned,
    ClientFrame,
    Close,
    Disconnected,
    GoingAway,
    Lifecycle,
    Outgoing,
    RateCheck,
    ReceiveTimeout,
    SendAudio,
    SendMessage,
    SendTimeout,
    SessionInput,
    SessionLimits,
    SessionObserver,
    StreamState,
    SynthesisLink,
    SynthesisResult,
    TimedWord,
)
from litestream.session.session import StreamSession

__all__ = [
    "ChunkAudio",
    "ChunkFailed",
    "ChunkPlanned",
    "ClientFrame",
    "Close",
    "Disconnected",
    "GoingAway",
    "Lifecycle",
    "Outgoing",
    "RateCheck",
    "ReceiveTimeout",
    "SendAudio",
    "SendMessage",
    "SendTimeout",
    "SessionInput",
    "SessionLimits",
    "SessionObserver",
    "StreamSession",
    "StreamState",
    "SynthesisLink",
    "SynthesisResult",
    "TimedWord",
]
