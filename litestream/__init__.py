"""litestream: realtime text-to-speech streaming over WebSocket.

Every stream's sent audio races its listener's playback clock; one deadline-ordered, fair
scheduler decides which synthesis step (a sentence's encode step, or one of its decode windows)
a fixed set of inference threads runs next. The packages are described in docs/architecture.md.
"""

from __future__ import annotations

__version__ = "0.1.0"
