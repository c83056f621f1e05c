"""startup.py: what stops a start, said in one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from litestream.config import Config
from litestream.errors import ConfigError
from litestream.server import startup


def test_no_certificate_means_plain_websockets() -> None:
    assert startup.tls_context(Config()) is None


def test_a_missing_certificate_is_a_config_error(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    with pytest.raises(ConfigError, match=r"cannot load the TLS certificate .*No such file"):
        startup.tls_context(Config(tls_cert=cert, tls_key=key))


def test_a_file_that_is_not_pem_is_a_config_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=re.escape(f"cannot load the TLS certificate {junk}")):
        startup.tls_context(Config(tls_cert=junk, tls_key=junk))
