"""The one Config: defaults, TOML < environment < flags, and clear errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from litestream import config as config_mod
from litestream.config import Config
from litestream.errors import ConfigError


def test_defaults_are_valid() -> None:
    config = Config()
    assert config.port == 8765
    assert config.workers >= 1
    assert config.api_keys == ()


def test_precedence_toml_env_flags(tmp_path: Path) -> None:
    toml = tmp_path / "litestream.toml"
    toml.write_text('[litestream]\nport = 9000\nworkers = 3\nframe_ms = 20\n')
    args = config_mod.parse_args(["--config", str(toml), "--workers", "4"])
    config = config_mod.build(args, environ={"LITESTREAM_PORT": "9100"})
    assert (config.port, config.workers, config.frame_ms) == (9100, 4, 20)


def test_env_types_and_lists() -> None:
    config = config_mod.build(environ={
        "LITESTREAM_API_KEYS": "a1, b2", "LITESTREAM_LOG_JSON": "true",
        "LITESTREAM_ALLOWED_ORIGINS": "https://x.example",
        "LITESTREAM_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8,fd00::/8",
    })
    assert config.api_keys == ("a1", "b2")
    assert config.log_json is True
    assert config.allowed_origins == ("https://x.example",)
    assert config.trusted_proxies == ("127.0.0.1", "10.0.0.0/8", "fd00::/8")


@pytest.mark.parametrize("environ,needle", [
    ({"LITESTREAM_PORT": "http"}, "port"),
    ({"LITESTREAM_PORT": "70000"}, "port"),
    ({"LITESTREAM_WORKERS": "0"}, "workers"),
    ({"LITESTREAM_DEVICE": "tpu"}, "device"),
    ({"LITESTREAM_CUDA_SYNC": "sleep"}, "cuda_sync"),
    ({"LITESTREAM_MAX_WINDOW_FRAMES": "16"}, "max_window_frames"),
    ({"LITESTREAM_FRAME_MS": "5"}, "frame_ms"),
    ({"LITESTREAM_LOG_JSON": "maybe"}, "log_json"),
    ({"LITESTREAM_NO_SUCH_THING": "1"}, "LITESTREAM_NO_SUCH_THING"),
    ({"LITESTREAM_CACHE_URL": "http://cache:6379"}, "cache_url"),
    ({"LITESTREAM_CACHE_TIMEOUT_MS": "0"}, "cache_timeout_ms"),
    ({"LITESTREAM_CACHE_TTL_S": "0"}, "cache_ttl_s"),
    ({"LITESTREAM_TRUSTED_PROXIES": "10.0.0.0/8,proxy.internal"}, "trusted_proxies"),
])
def test_invalid_values_stop_the_start(environ: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_mod.build(environ=environ)
    assert needle in str(info.value)


def test_bad_toml_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config_mod.build(environ={"LITESTREAM_CONFIG": str(bad)})


def test_api_keys_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("k1\n\n  k2  \n")
    config = config_mod.build(environ={}, api_keys=("k0",), api_keys_file=keys)
    assert config.all_api_keys() == {"k0", "k1", "k2"}


def test_help_documents_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        config_mod.parse_args(["--help"])
    out = capsys.readouterr().out
    for field in Config.__dataclass_fields__:
        assert "--" + field.replace("_", "-") in out
        assert "LITESTREAM_" + field.upper() in out


def test_help_states_each_default_once() -> None:
    parser = argparse.ArgumentParser()
    config_mod.add_arguments(parser)
    for action in parser._actions:
        if action.help and action.dest in Config.__dataclass_fields__:
            assert action.help.count("(default:") <= 1, action.help
    workers = next(a for a in parser._actions if a.dest == "workers")
    assert workers.help is not None and "(default: one per core)" in workers.help

def test_kubernetes_service_links_are_not_settings() -> None:
    config = config_mod.build(environ={
        "LITESTREAM_SERVICE_HOST": "10.0.0.7", "LITESTREAM_SERVICE_PORT_WS": "8765",
        "LITESTREAM_PORT": "tcp://10.0.0.7:8765", "LITESTREAM_PORT_8765_TCP_PROTO": "tcp",
    })
    assert config.port == 8765


def test_the_scheduler_view_is_computed_from_config() -> None:
    from litestream.synthesis import scheduler_config

    config = config_mod.build(environ={}, first_audio_target_ms=300, first_audio_slack_ms=200,
                              jitter_ms=90, lookahead_s=3.0, max_lookahead_s=9.0,
                              target_utilization=0.7, max_streams=5)
    view = scheduler_config(config)
    assert (view.first_audio_target_s, view.first_audio_slack_s, view.jitter_s) == (0.3, 0.2, 0.09)
    assert (view.lookahead_s, view.max_lookahead_s) == (3.0, 9.0)
    assert (view.target_utilization, view.max_streams) == (0.7, 5)
    # The longest window: as resolved for the voices, else as configured, else the scheduler's.
    assert view.max_window_frames == 256
    assert scheduler_config(config, 512).max_window_frames == 512
    told = config_mod.build(environ={}, max_window_frames=384)
    assert scheduler_config(told).max_window_frames == 384


def test_stream_defaults_are_checked_against_the_protocol() -> None:
    with pytest.raises(ConfigError, match="frame_ms"):
        config_mod.build(environ={}, frame_ms=5)
    with pytest.raises(ConfigError, match="audio_format"):
        config_mod.build(environ={}, audio_format="mp3")


def test_the_shared_cache_is_set_like_every_setting() -> None:
    assert config_mod.build(environ={}).cache_url == ""  # none by default
    env = {"LITESTREAM_CACHE_URL": "redis://cache:6379/0", "LITESTREAM_CACHE_TTL_S": "3600"}
    config = config_mod.build(environ=env)
    assert (config.cache_url, config.cache_ttl_s, config.cache_timeout_ms) == (
        "redis://cache:6379/0", 3600.0, 20.0)
    args = config_mod.parse_args(["--cache-url", "unix:///run/redis.sock"])
    assert config_mod.build(args, environ=env).cache_url == "unix:///run/redis.sock"
