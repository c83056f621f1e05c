"""Plain HTTP answers of the server: responses, handshake refusals, the player's static files.

Everything here builds a `websockets.http11.Response`; nothing here holds server state. What a
refusal says (status, code, Retry-After) is decided in `security`; this module writes it.
"""

from __future__ import annotations

import dataclasses
import http
import json
import mimetypes
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from websockets.datastructures import Headers
from websockets.http11 import Response

from litestream.engine import Voice
from litestream.security import Refusal, refusal_body, refusal_headers


def response(status: http.HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers()
    headers["Content-Type"] = content_type
    headers["Content-Length"] = str(len(body))
    headers["Cache-Control"] = "no-store"
    return Response(status.value, status.phrase, headers, body)


def text(status: http.HTTPStatus, body: str) -> Response:
    return response(status, body.encode(), "text/plain; charset=utf-8")


def json_doc(status: http.HTTPStatus, doc: object) -> Response:
    return response(status, json.dumps(doc).encode(), "application/json")


def not_found() -> Response:
    return text(http.HTTPStatus.NOT_FOUND, "not found\n")


def refusal(refused: Refusal) -> Response:
    """protocol-v1: Endpoint. Status, JSON body and headers (Retry-After) from `security`."""
    status = http.HTTPStatus(refused.status)
    body = refusal_body(refused)
    headers = Headers(refusal_headers(refused))
    headers["Content-Length"] = str(len(body))
    return Response(status.value, status.phrase, headers, body)


def voices_doc(voices: Mapping[str, Voice], default: str) -> dict[str, Any]:
    """GET /v1/voices: every voice's catalogue row (id, model, language, rate, gender, source)."""
    return {
        "default": default,
        "voices": [dataclasses.asdict(v.description) for v in voices.values()],
    }


def default_static_dir() -> Path | None:
    """The browser player: clients/browser in a source checkout (and in the Docker image)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "static", here.parent / "clients" / "browser"):
        if (candidate / "index.html").is_file():
            return candidate
    return None


def static(static_dir: Path | None, path: str) -> Response:
    """`/` and `/static/<file>`: only files directly in the static directory are served."""
    if static_dir is None:
        return not_found()
    if path in ("/", "/index.html"):
        target = static_dir / "index.html"
    elif path.startswith("/static/"):
        name = path[len("/static/"):]
        target = (static_dir / name).resolve()
        # No path traversal, and no subfolders (the player's test tooling lives in one).
        if target.parent != static_dir.resolve():
            return not_found()
    else:
        return not_found()
    if not target.is_file():
        return not_found()
    content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if target.suffix in (".js", ".mjs"):
        content_type = "text/javascript"
    return response(http.HTTPStatus.OK, target.read_bytes(), content_type)
