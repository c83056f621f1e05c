"""The fault-injection suite, quick version (`python -m loadtest.faults` runs the full one).

One in-process server with the real voice in tests.fakes.FaultyVoice; each scenario runs
with bystander streams. Asserted: what each fault must cause (its chunk fails with
`synthesis_failed`, the stream still ends with `done`, a wedged or dead worker is replaced, a
fuzzer gets spec error codes) and that every bystander ends with `done`, no error and all its
text spoken. Stalls and first audio are timing: printed by the CLI, not asserted here.
"""

from __future__ import annotations

import pytest
import pytest_asyncio

from loadtest.lib.fault_scenarios import QUICK, SCENARIOS, Outcome, run_in_process


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def outcomes() -> dict[str, Outcome]:
    lines: list[str] = []
    found = await run_in_process(SCENARIOS, QUICK, lines.append)
    print("\n".join(lines))
    return {o.name: o for o in found}


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.mark.parametrize("name", SCENARIOS)
async def test_bystanders_are_served_in_full(outcomes: dict[str, Outcome], name: str) -> None:
    outcome = outcomes[name]
    assert len(outcome.bystanders) == QUICK.bystanders
    for r in outcome.bystanders:
        assert r.done and not r.errors and not r.timed_out, r
        assert r.chunks >= 2 and r.audio_s > 1.0


@pytest.mark.parametrize("name", ["engine_exception", "hung_run", "wedged_run", "worker_dies"])
async def test_a_failed_run_costs_its_chunk_only(outcomes: dict[str, Outcome], name: str) -> None:
    [faulted] = outcomes[name].faulted
    assert faulted.errors == ["synthesis_failed"]
    assert faulted.done and faulted.chunks >= 2  # the sentences around it were spoken


async def test_a_slow_run_still_speaks(outcomes: dict[str, Outcome]) -> None:
    [faulted] = outcomes["slow_run"].faulted
    assert faulted.done and not faulted.errors


async def test_watchdog_and_replacement_are_counted(outcomes: dict[str, Outcome]) -> None:
    def note(name: str) -> str:
        return next(n for n in outcomes[name].notes if n.startswith("server:"))

    assert "terminations +1," in note("hung_run") and "replaced +0," in note("hung_run")
    assert "terminations +1," in note("wedged_run") and "replaced +1," in note("wedged_run")
    assert "terminations +0," in note("worker_dies") and "replaced +1," in note("worker_dies")
    for name in ("hung_run", "wedged_run", "worker_dies"):
        assert note(name).endswith("serving 2 of 2")


async def test_fuzzers_get_spec_errors_and_finish(outcomes: dict[str, Outcome]) -> None:
    fuzzers = [r for r in outcomes["malformed"].faulted if not r.refused]
    assert fuzzers and all(r.done for r in fuzzers)  # each admitted fuzzer ends with done
    codes = {code for r in fuzzers for code in r.errors}
    assert "bad_message" in codes
    assert codes <= {"bad_message", "invalid_param", "invalid_voice", "rate_limited",
                     "text_too_long"}


async def test_storm_and_unread_clients_leave_the_server_clean(
        outcomes: dict[str, Outcome]) -> None:
    storm = outcomes["disconnect_storm"].faulted
    assert len(storm) == QUICK.storm
    assert all(r.close_code == 1006 or r.refused for r in storm)
    unread = outcomes["stop_reading"].faulted
    assert len(unread) == 2 and all(not r.done for r in unread)
