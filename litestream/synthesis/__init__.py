"""The runtime between sessions, the scheduler and the engine: the dispatcher (dispatcher.py),
the inference threads (workers.py) and the sentence cache (cache.py). Threads, no aiohttp."""

from __future__ import annotations

from litestream.synthesis.dispatcher import Deliver, StreamLink, Synthesis, scheduler_config

__all__ = ["Deliver", "StreamLink", "Synthesis", "scheduler_config"]
