"""CORS for the HTTP endpoints, sans I/O: which headers a response carries, and what a
preflight `OPTIONS` answers, from the same Origin allowlist as the WebSocket handshake.

A web app on another origin than the server (its own page at https://app.example, the server
at https://tts.example) calls `POST /v1/audio/speech` with `fetch`; the browser sends a
preflight first (the body is JSON and there is an Authorization header) and lets the page read
the answer only when the server grants it. `Config.allowed_origins` is the one list for both
transports:

- empty (the default), or an entry "*": every origin, as for the WebSocket handshake.
  `Access-Control-Allow-Origin: *`, the same for every request, so no `Vary` is needed. No
  cookies are ever involved (keys travel in the Authorization header or the `token`
  parameter, which a page must hold itself), so "*" grants a page nothing it did not bring.
- a list: an Origin on it (matched as `security.origin_allowed` matches it: case, trailing
  slash and default port aside) is echoed back; any other gets no grant at all, so the
  browser keeps the answer from the page, and `POST /v1/audio/speech` itself refuses it with
  403 as the handshake does. `Vary: Origin` on every answer, since the answer depends on it.

No `Access-Control-Allow-Credentials`: litestream reads no cookie, so a credentialed request
has nothing to gain and is not invited.

Why not aiohttp-cors: it cannot serve a route registered for every method (our catch-all),
matches origins as exact strings (so "https://A.example/" allowed for the handshake would be
refused here), and does not send `Vary: Origin` (its issue 351, open since 2021). The rules
are a page of code; keeping them here keeps one allowlist with one meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from litestream.protocol import STREAM_PATH
from litestream.protocol import openai as openai_api
from litestream.security import origin_allowed

# How long a browser may reuse a preflight's answer. Chromium caps it at 2 hours and
# Firefox at 24; each preflight is one more round trip before a page's first speech request,
# so as long as browsers keep it. A grant withdrawn meanwhile still holds: the real
# response carries no Access-Control-Allow-Origin, and the page cannot read it.
MAX_AGE_S = 7200

# Response headers a page may read beyond the CORS-safelisted ones (Content-Type,
# Cache-Control, Content-Length, ...): when to retry (both forms the official client reads),
# a 401's challenge, and what a speech body is: its rate (X-Sample-Rate, the only place a
# `pcm` body's rate is stated), voice and speed, and the request's id (docs/openai.md, which
# the official client reads as `request_id`). Without them a page saw null for each.
EXPOSE_HEADERS = ("Retry-After", "retry-after-ms", "WWW-Authenticate", "X-Request-Id",
                  "X-Sample-Rate", "X-Litestream-Voice", "X-Litestream-Speed")

# Request headers every endpoint takes from a browser. A preflight also gets back whatever
# else it asks for (the official JavaScript client sends its own X-Stainless-* headers and
# OpenAI-Organization/-Project): litestream ignores them, and refusing them would only make
# that client's requests fail before they are sent.
ALLOW_HEADERS = ("Authorization", "Content-Type")

# The paths a page may call from another origin, with the methods each takes. Not /metrics
# (operators' data: a page anywhere should not read an internal server's figures through a
# visitor's browser) and not the player's static files.
_GET = ("GET", "HEAD")
CORS_PATHS: dict[str, tuple[str, ...]] = {
    openai_api.SPEECH_PATH: ("POST",),
    STREAM_PATH: ("GET",),  # a plain GET says why a handshake would be refused (app.py)
    openai_api.MODELS_PATH: _GET,
    openai_api.VOICES_PATH: _GET,
    "/v1/voices": _GET,
    "/readyz": _GET,
    "/healthz": _GET,
}

# RFC 9110 token: a header name the browser may ask for.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def methods_for(path: str) -> tuple[str, ...] | None:
    """The methods a page on another origin may use on `path`; None: not shared at all."""
    if path.startswith(openai_api.MODELS_PATH + "/"):
        return _GET  # GET /v1/models/{id}
    return CORS_PATHS.get(path)


def is_preflight(origin: str | None, method: str | None) -> bool:
    """An OPTIONS request with these Origin and Access-Control-Request-Method headers is a
    CORS preflight (Fetch standard: both present)."""
    return origin is not None and method is not None


@dataclass(frozen=True)
class Preflight:
    """The answer to a preflight: always 204 or 403, never a body the page sees."""

    status: int  # 204: granted; 403: not (no Access-Control-Allow-Origin)
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class CorsPolicy:
    """CORS decisions from `Config.allowed_origins` (see the module's docstring)."""

    allowed_origins: tuple[str, ...] = ()

    @property
    def any_origin(self) -> bool:
        return not self.allowed_origins or any(e.strip() == "*" for e in self.allowed_origins)

    def _grant(self, origin: str | None) -> list[tuple[str, str]]:
        """Access-Control-Allow-Origin (or nothing) and Vary for a request from `origin`."""
        if self.any_origin:
            return [("Access-Control-Allow-Origin", "*")]
        headers = [("Vary", "Origin")]
        if origin is not None and origin_allowed(origin, self.allowed_origins):
            headers.insert(0, ("Access-Control-Allow-Origin", origin))
        return headers

    def response_headers(self, origin: str | None, path: str) -> tuple[tuple[str, str], ...]:
        """The CORS headers of an ordinary (not preflight) response to `path`."""
        if methods_for(path) is None:
            return ()
        headers = self._grant(origin)
        if headers[0][0] == "Access-Control-Allow-Origin":
            headers.append(("Access-Control-Expose-Headers", ", ".join(EXPOSE_HEADERS)))
        return tuple(headers)

    def preflight(self, origin: str | None, path: str, method: str | None,
                  request_headers: str | None) -> Preflight | None:
        """The answer to `OPTIONS path` with `Access-Control-Request-Method: method`; None
        when it is not a preflight (no Origin or no method asked), which the caller answers
        as any other OPTIONS. A path that is not shared, a method it does not take, an
        origin not allowed or a malformed header list get 403 with no grant."""
        if origin is None or method is None:  # is_preflight, spelled out for mypy
            return None
        methods = methods_for(path)
        grant = self._grant(origin)
        granted = grant[0][0] == "Access-Control-Allow-Origin"
        asked = [h.strip() for h in (request_headers or "").split(",") if h.strip()]
        if (methods is None or method not in methods or not granted
                or not all(_TOKEN.match(h) for h in asked)):
            return Preflight(403, tuple(h for h in grant if h[0] == "Vary"))
        allow = list(ALLOW_HEADERS)
        known = {h.lower() for h in allow}
        for name in asked:
            if name.lower() not in known:
                known.add(name.lower())
                allow.append(name)
        return Preflight(204, (
            *grant,
            ("Access-Control-Allow-Methods", ", ".join(methods)),
            ("Access-Control-Allow-Headers", ", ".join(allow)),
            ("Access-Control-Max-Age", str(MAX_AGE_S)),
        ))
