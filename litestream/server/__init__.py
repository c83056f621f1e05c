"""The asyncio layer (aiohttp): the only package that imports aiohttp.

`app.py` holds `LitestreamServer` (start order, admission, drain, close) and `serve`;
`websocket.py` one WebSocket's socket loops, `speech.py` one `POST /v1/audio/speech`,
`routes.py` the plain HTTP answers, `encoders.py` the speech body encoders, `startup.py` what
is settled once at start-up.
"""

from __future__ import annotations

from litestream.server.app import LitestreamServer, serve

__all__ = ["LitestreamServer", "serve"]
