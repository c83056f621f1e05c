"""litestream: realtime text-to-speech streaming over WebSocket.

Every stream's sent audio races its listener's playback clock; one deadline-ordered, fair
scheduler decides which text chunk a fixed set of inference threads synthesizes next.
"""

from __future__ import annotations

__version__ = "0.1.0"
