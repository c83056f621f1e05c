"""The voice-agent examples, run as a user runs them, against a real server: after the
barge-in each prints the words the listener heard (by the voice's word times) and the rest."""

from __future__ import annotations

import ast
import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests import REPO
from tests.serverutil import RunningServer, run_server

TIMEOUT_S = 120

# One event loop and one server for the module: a server takes seconds to start.
module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def srv() -> Any:
    async with run_server() as running:
        yield running


async def run_example(srv: RunningServer, script: Path, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), "--url", srv.url, *args, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        raw, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    output = raw.decode(errors="replace")
    assert proc.returncode == 0, output[-4000:]
    return output


def reply_of(script: Path, name: str) -> str:
    """The example's canned reply (its first, if several), read from its source: the test does
    not import the example."""
    for node in ast.parse(script.read_text()).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            value = ast.literal_eval(node.value)
            return value if isinstance(value, str) else str(value[0])
    raise AssertionError(f"{script} has no {name}")


def assert_heard_split(reply: str, heard: str, unheard: str) -> None:
    """Heard: the reply's first words, several of them but not all; unheard: what follows."""
    assert reply.startswith(f"{heard} {unheard}".strip()), (heard, unheard)
    assert 3 <= len(heard.split()) < len(reply.split())
    assert unheard


@module_loop
async def test_voice_agent_prints_the_words_heard_before_the_barge_in(srv: RunningServer) -> None:
    script = REPO / "clients" / "voice_agent.py"
    out = await run_example(srv, script, "--barge-in-after", "3.0", "--encoding", "json")
    heard = re.search(r"^words heard: (.*)$", out, re.M)
    unheard = re.search(r"^not heard \(cut by the barge-in\): (.*)$", out, re.M)
    assert heard and unheard, out
    assert_heard_split(reply_of(script, "CANNED_REPLY"), heard[1], unheard[1])


@module_loop
async def test_pipecat_voice_agent_prints_the_words_heard_before_the_barge_in(
        srv: RunningServer, tmp_path: Path) -> None:
    script = REPO / "clients" / "pipecat" / "voice_agent.py"
    out = await run_example(srv, script, "--demo", str(tmp_path / "out.wav"),
                            "--barge-in-after", "2.5")
    heard = re.search(r"words heard: (.*)$", out, re.M)
    unheard = re.search(r"never heard: (.*)$", out, re.M)
    assert heard and unheard, out[-4000:]
    assert_heard_split(reply_of(script, "REPLIES"), heard[1], unheard[1])
    assert (tmp_path / "out.wav").stat().st_size > 44
