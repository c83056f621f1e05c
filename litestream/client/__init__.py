"""The Python client: imports the wire format only, never the server or the scheduler.

`stream.py` holds the SDK (`connect`, `ClientStream`, `EventDecoder`, `synthesize`), re-exported
here; `events.py` the events a client receives, `playback.py` a simulated real-time listener,
`unspoken.py` the text a stream was sent and has not spoken (to send again on a new stream),
`pipecat.py` the Pipecat TTS service (the [pipecat] extra; import it from there).
"""

from __future__ import annotations

from litestream.client.events import (
    Audio,
    Chunk,
    Cleared,
    Done,
    DoneStats,
    Error,
    Event,
    Flushed,
    Ready,
    Word,
    Words,
)
from litestream.client.playback import ChunkPlayback, HeardText, PlaybackClock, Stall
from litestream.client.stream import (
    BadRequest,
    ClientStream,
    EventDecoder,
    Forbidden,
    HandshakeRefused,
    RateLimited,
    StreamClosed,
    StreamError,
    Unauthorized,
    Unavailable,
    build_url,
    connect,
    synthesize,
)
from litestream.client.unspoken import Unspoken

__all__ = [
    "Audio",
    "BadRequest",
    "Chunk",
    "ChunkPlayback",
    "Cleared",
    "ClientStream",
    "Done",
    "DoneStats",
    "Error",
    "Event",
    "EventDecoder",
    "Flushed",
    "Forbidden",
    "HandshakeRefused",
    "HeardText",
    "PlaybackClock",
    "RateLimited",
    "Ready",
    "Stall",
    "StreamClosed",
    "StreamError",
    "Unauthorized",
    "Unavailable",
    "Unspoken",
    "Word",
    "Words",
    "build_url",
    "connect",
    "synthesize",
]
