"""litestream/server/cors.py: a response's CORS headers and a preflight's answer. Plain calls."""

from __future__ import annotations

from litestream.server.cors import ALLOW_HEADERS, MAX_AGE_S, CorsPolicy, methods_for

APP = "https://app.example"
SPEECH = "/v1/audio/speech"


def test_with_no_allowlist_every_origin_is_granted_alike() -> None:
    for policy in (CorsPolicy(), CorsPolicy(("*",)), CorsPolicy(("https://x.example", " * "))):
        for origin in (APP, "null", None):
            headers = dict(policy.response_headers(origin, SPEECH))
            assert headers["Access-Control-Allow-Origin"] == "*"
            assert "Retry-After" in headers["Access-Control-Expose-Headers"]
            assert "Vary" not in headers  # the same answer whatever the Origin


def test_an_allowlist_echoes_an_origin_on_it_and_grants_no_other() -> None:
    policy = CorsPolicy(("HTTPS://App.Example:443/",))
    granted = dict(policy.response_headers(APP, SPEECH))
    assert granted["Access-Control-Allow-Origin"] == APP
    assert granted["Vary"] == "Origin"
    assert "retry-after-ms" in granted["Access-Control-Expose-Headers"]
    # What a speech body is and which request it was: a page reads them as a client does.
    exposed = granted["Access-Control-Expose-Headers"].split(", ")
    for name in ("X-Sample-Rate", "X-Request-Id", "X-Litestream-Voice", "X-Litestream-Speed"):
        assert name in exposed
    for origin in ("https://evil.example", "http://app.example", "null", None):
        assert policy.response_headers(origin, SPEECH) == (("Vary", "Origin"),)


def test_only_the_api_and_health_paths_are_shared() -> None:
    policy = CorsPolicy()
    for path in (SPEECH, "/v1/stream", "/v1/voices", "/v1/models", "/v1/models/tts-1",
                 "/v1/audio/voices", "/readyz", "/healthz"):
        assert policy.response_headers(APP, path), path
    for path in ("/metrics", "/", "/static/player.js", "/v1/nothing"):
        assert policy.response_headers(APP, path) == (), path
    assert methods_for(SPEECH) == ("POST",)
    assert methods_for("/v1/models/tts-1") == ("GET", "HEAD")


def test_a_preflight_from_an_allowed_origin_is_granted() -> None:
    answer = CorsPolicy((APP,)).preflight(
        APP, SPEECH, "POST", "authorization, content-type, X-Stainless-OS, x-stainless-os")
    assert answer is not None and answer.status == 204
    headers = dict(answer.headers)
    assert headers["Access-Control-Allow-Origin"] == APP
    assert headers["Vary"] == "Origin"
    assert headers["Access-Control-Allow-Methods"] == "POST"
    # What the endpoint reads, and what else was asked (once): the official JS client's own.
    allowed = headers["Access-Control-Allow-Headers"].split(", ")
    assert allowed == [*ALLOW_HEADERS, "X-Stainless-OS"]
    assert headers["Access-Control-Max-Age"] == str(MAX_AGE_S)
    assert "Access-Control-Allow-Credentials" not in headers


def test_a_preflight_not_granted_gets_403_and_no_grant() -> None:
    policy = CorsPolicy((APP,))
    refused = [
        policy.preflight("https://evil.example", SPEECH, "POST", None),  # origin
        policy.preflight(APP, SPEECH, "DELETE", None),  # a method the path does not take
        policy.preflight(APP, "/metrics", "GET", None),  # a path not shared
        policy.preflight(APP, SPEECH, "POST", "content-type, bad header"),  # not a token
    ]
    for answer in refused:
        assert answer is not None and answer.status == 403
        assert answer.headers == (("Vary", "Origin"),)
    unshared = CorsPolicy().preflight(APP, "/metrics", "GET", None)  # any origin, not /metrics
    assert unshared is not None and unshared.status == 403


def test_an_options_request_without_origin_or_method_is_no_preflight() -> None:
    policy = CorsPolicy()
    assert policy.preflight(None, SPEECH, "POST", None) is None
    assert policy.preflight(APP, SPEECH, None, None) is None
    answer = policy.preflight(APP, "/v1/voices", "GET", None)
    assert answer is not None and dict(answer.headers)["Access-Control-Allow-Origin"] == "*"
