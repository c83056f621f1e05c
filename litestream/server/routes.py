"""Plain HTTP answers of the server: responses, handshake refusals, the player's static files.

Everything here builds an `Answer` (status, headers, body), which the transport writes;
nothing here holds server state or knows the HTTP library. What a refusal says (status, code,
Retry-After) is decided in `security`; this module writes it, in protocol-v1's shape for the
WebSocket handshake and in OpenAI's shape for the speech endpoint, with the same headers.
"""

from __future__ import annotations

import dataclasses
import http
import json
import math
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litestream.engine import Voice
from litestream.protocol.openai import ApiError
from litestream.security import Refusal


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


def retry_after_header(retry_after_s: float) -> str:
    """HTTP Retry-After is whole delta-seconds; round up so a client never retries early."""
    return str(max(1, math.ceil(retry_after_s)))


def _retry_and_challenge(status: int, retry_after_s: float | None) -> list[tuple[str, str]]:
    """The headers both error shapes share: Retry-After (429, 503) and a 401's challenge."""
    headers: list[tuple[str, str]] = []
    if retry_after_s is not None:
        headers.append(("Retry-After", retry_after_header(retry_after_s)))
    if status == 401:
        # RFC 7235 section 3.1: a 401 must carry a challenge.
        headers.append(("WWW-Authenticate", 'Bearer realm="litestream"'))
    return headers


def refusal(refused: Refusal) -> Answer:
    """protocol-v1: Endpoint. JSON body {"error": {"code", "message"}} (+ "param",
    "retry_after_s"); status and Retry-After as `security` decided."""
    error: dict[str, object] = {"code": refused.body_code, "message": refused.message}
    if refused.param is not None:
        error["param"] = refused.param
    if refused.retry_after_s is not None:
        error["retry_after_s"] = round(refused.retry_after_s, 3)
    body = json.dumps({"error": error}, separators=(",", ":")).encode("utf-8")
    headers = [("Content-Type", "application/json"),
               *_retry_and_challenge(refused.status, refused.retry_after_s),
               ("Cache-Control", "no-store")]  # a plain GET of the endpoint reads it too
    return Answer(refused.status, tuple(headers), body)


def api_error(error: ApiError) -> Answer:
    """An OpenAI-shaped error (protocol/openai.py): status, JSON body, Retry-After if any."""
    headers = [("Content-Type", "application/json"),
               *_retry_and_challenge(error.status, error.retry_after_s)]
    if error.retry_after_s is not None:
        # The official client prefers retry-after-ms: it keeps sub-second waits exact.
        headers.append(("retry-after-ms", str(max(1, math.ceil(error.retry_after_s * 1000)))))
    headers.append(("Cache-Control", "no-store"))
    return Answer(error.status, tuple(headers), error.body())


# OpenAI's error type and code for each status litestream's security layer refuses with. By
# status, not by reason: every reason of one status reads the same to an OpenAI client, and a
# reason added later needs no entry here.
_REFUSAL_SHAPE: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid_value"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "forbidden_origin"),
    429: ("requests", "rate_limit_exceeded"),
    503: ("server_error", "overloaded"),
}


def api_refusal(refused: Refusal) -> ApiError:
    """The same refusal a WebSocket handshake gets (status, Retry-After), in OpenAI's shape."""
    kind, code = _REFUSAL_SHAPE.get(refused.status, ("server_error", str(refused.reason)))
    return ApiError(refused.status, refused.message, type=kind, param=refused.param, code=code,
                    retry_after_s=refused.retry_after_s)


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
