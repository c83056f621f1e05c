"""Plain HTTP answers of the server: responses, handshake refusals, the player's static files.

Everything here builds an `Answer` (status, headers, body), which the transport writes;
nothing here holds server state or knows the HTTP library. What a refusal says (status, code,
Retry-After) is decided in `security`; this module writes it.
"""

from __future__ import annotations

import dataclasses
import http
import json
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestream.engine import Voice
from litestream.protocol.openai import ApiError
from litestream.security import Refusal, refusal_body, refusal_headers


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole HTTP response (the transport adds Content-Length and its own framing)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def response(status: http.HTTPStatus, body: bytes, content_type: str) -> Answer:
    return Answer(status.value, (("Content-Type", content_type), ("Cache-Control", "no-store")),
                  body)


def text(status: http.HTTPStatus, body: str) -> Answer:
    return response(status, body.encode(), "text/plain; charset=utf-8")


def json_doc(status: http.HTTPStatus, doc: object) -> Answer:
    return response(status, json.dumps(doc).encode(), "application/json")


def not_found() -> Answer:
    return text(http.HTTPStatus.NOT_FOUND, "not found\n")


def refusal(refused: Refusal) -> Answer:
    """protocol-v1: Endpoint. Status, JSON body and headers (Retry-After) from `security`."""
    return Answer(refused.status, tuple(refusal_headers(refused)), refusal_body(refused))


def api_error(error: ApiError) -> Answer:
    """An OpenAI-shaped error (protocol/openai.py): status, JSON body, Retry-After if any."""
    return Answer(error.status, (*error.headers(), ("Cache-Control", "no-store")), error.body())


def voices_doc(voices: Mapping[str, Voice], default: str) -> dict[str, Any]:
    """GET /v1/voices: every voice's catalogue row (id, model, language, rate, gender, source)."""
    return {
        "default": default,
        "voices": [dataclasses.asdict(v.description) for v in voices.values()],
    }


def default_static_dir() -> Path | None:
    """The browser player: clients/browser in a source checkout (and in the Docker image)."""
    here = Path(__file__).resolve().parent.parent  # the litestream package
    for candidate in (here / "static", here.parent / "clients" / "browser"):
        if (candidate / "index.html").is_file():
            return candidate
    return None


def static(static_dir: Path | None, path: str) -> Answer:
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
