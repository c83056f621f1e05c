"""A real Pipecat pipeline with LitestreamTTSService against a real litestream server.

pipecat-ai is installed by `make install` (without its dependencies: see clients/pipecat/README.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import pytest_asyncio
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services import tts_service as pipecat_tts
from pipecat.services.tts_service import WebsocketTTSService
from pipecat.workers.runner import WorkerRunner

from litestream.client.pipecat import LitestreamTTSService, word_times
from tests.serverutil import RunningServer, run_server

# One event loop and one server for the module: a server takes seconds to start.
module_loop = pytest.mark.asyncio(loop_scope="module")

OUT_RATE = 16000  # a typical telephony/WebRTC rate: the service resamples 22,050 Hz to it
TURN_1 = "Sure, one moment. I am checking the weather for you now."
TURN_2 = "It will be sunny tomorrow."


class Sink(FrameProcessor):
    """The pipeline's end: records frames and wakes the test when a kind of frame arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []
        self._waiters: list[tuple[Callable[[list[Frame]], bool], asyncio.Event]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction is FrameDirection.DOWNSTREAM and not isinstance(frame, StartFrame):
            self.frames.append(frame)
            for test, event in self._waiters:
                if test(self.frames):
                    event.set()
        await self.push_frame(frame, direction)

    async def wait_for(self, test: Callable[[list[Frame]], bool], timeout: float = 30) -> None:
        event = asyncio.Event()
        self._waiters.append((test, event))
        if test(self.frames):
            return
        await asyncio.wait_for(event.wait(), timeout)

    def of(self, kind: type[Frame]) -> list[Any]:
        return [f for f in self.frames if isinstance(f, kind)]


def llm_turn(text: str) -> list[Frame]:
    """An LLM's reply as Pipecat delivers it: start, tokens (word by word), end."""
    tokens = [w + " " for w in text.split(" ")]
    return [LLMFullResponseStartFrame(), *(LLMTextFrame(t) for t in tokens),
            LLMFullResponseEndFrame()]


async def run_pipeline(srv: RunningServer, script: Callable[[PipelineWorker, Sink,
                                                              LitestreamTTSService], Any]) -> None:
    tts = LitestreamTTSService(url=srv.url)
    sink = Sink()
    worker = PipelineWorker(Pipeline([tts, sink]), cancel_on_idle_timeout=False,
                            params=PipelineParams(audio_out_sample_rate=OUT_RATE))
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(worker: Any, frame: Any) -> None:
        started.set()

    async def drive() -> None:
        await asyncio.wait_for(started.wait(), 20)
        try:
            await script(worker, sink, tts)
        finally:
            await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(asyncio.gather(runner.run(), drive()), 120)


def audio_s(frames: list[TTSAudioRawFrame]) -> float:
    return sum(len(f.audio) // 2 for f in frames) / OUT_RATE


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def srv() -> Any:
    async with run_server() as running:
        yield running


@module_loop
async def test_two_turns_text_in_audio_and_words_out_on_one_stream(srv: RunningServer) -> None:
    seen: dict[str, Any] = {}

    async def script(worker: PipelineWorker, sink: Sink, tts: LitestreamTTSService) -> None:
        for turn, text in enumerate((TURN_1, TURN_2), start=1):
            await worker.queue_frames(llm_turn(text))
            await sink.wait_for(lambda frames, n=turn: sum(
                isinstance(f, TTSStoppedFrame) for f in frames) >= n)
            if turn == 1:
                seen["audio"] = sink.of(TTSAudioRawFrame)
                seen["words"] = [f.text for f in sink.of(TTSTextFrame)]
        # Both turns went over one protocol-v1 stream, still open for the next turn.
        seen["streams"] = tts.conversation_streams
        seen["session_open"] = tts.session_id in srv.server.streams
        seen["all_words"] = [f.text for f in sink.of(TTSTextFrame)]

    await run_pipeline(srv, script)
    assert seen["streams"] == 1
    assert seen["session_open"]
    assert " ".join(seen["all_words"]).split() == (TURN_1 + " " + TURN_2).split()
    audio = seen["audio"]
    assert audio, "no audio frames came out"
    assert {f.sample_rate for f in audio} == {OUT_RATE}
    assert {f.num_channels for f in audio} == {1}
    # 57 characters of English take 2.5 to 6 s to say at speed 1.
    assert 2.5 < audio_s(audio) < 6.0
    # What was said, word by word, in order: the words of the text, each once.
    assert " ".join(seen["words"]).split() == TURN_1.split()


@module_loop
async def test_interruption_clears_the_server_and_reports_what_was_heard(
        srv: RunningServer) -> None:
    long_text = " ".join(["This is a long answer that the user will interrupt."] * 6)
    heard_reports: list[tuple[str, list[tuple[str, float]]]] = []
    seen: dict[str, Any] = {}

    async def script(worker: PipelineWorker, sink: Sink, tts: LitestreamTTSService) -> None:
        @tts.event_handler("on_interrupted_heard")
        async def _heard(service: Any, heard: str, partial: list[tuple[str, float]]) -> None:
            heard_reports.append((heard, partial))

        await worker.queue_frames(llm_turn(long_text))
        await sink.wait_for(lambda frames: len([f for f in frames
                                                if isinstance(f, TTSAudioRawFrame)]) >= 5)
        await worker.queue_frame(InterruptionFrame())
        cleared_at = len(sink.of(TTSAudioRawFrame))
        # The next turn speaks on the same stream, after the server's `cleared`.
        await worker.queue_frames(llm_turn(TURN_2))
        await sink.wait_for(lambda frames: any(isinstance(f, TTSStoppedFrame)
                                               for f in frames))
        seen["streams"] = tts.conversation_streams
        seen["after"] = sink.of(TTSAudioRawFrame)[cleared_at:]
        seen["total"] = audio_s(sink.of(TTSAudioRawFrame))

    await run_pipeline(srv, script)
    assert seen["streams"] == 1
    # The long answer (about 15 s of audio) was cut: far less than it came out.
    assert seen["total"] < 10.0
    assert audio_s(seen["after"]) < 4.0  # mostly the short second turn
    assert len(heard_reports) == 1
    heard, partial = heard_reports[0]
    # Right after the first frames, the listener had heard at most the first chunk.
    assert heard == "" or long_text.startswith(heard)
    assert all(0 < fraction < 1 for _, fraction in partial)
    assert all(text in long_text for text, _ in partial)


def test_word_times_spread_a_chunk_by_character_position() -> None:
    times = word_times("Sure, one moment.", 1.0, 1.7)
    assert [w for w, _ in times] == ["Sure,", "one", "moment."]
    assert times[0][1] == pytest.approx(1.0)
    assert times[1][1] == pytest.approx(1.0 + 1.7 * 6 / 17)
    assert times[2][1] == pytest.approx(1.0 + 1.7 * 10 / 17)
    assert word_times("", 0.0, 1.0) == []


def test_the_service_is_built_on_pipecats_current_websocket_base_class() -> None:
    """Pipecat 1.14 marks AudioContextTTSService (and the *Word* variants) deprecated in favour of
    WebsocketTTSService; nothing the service inherits from may carry that mark."""
    assert issubclass(LitestreamTTSService, WebsocketTTSService)
    assert hasattr(pipecat_tts.AudioContextTTSService, "__deprecated__")  # the mark looked for
    marked = [c.__name__ for c in LitestreamTTSService.__mro__ if hasattr(c, "__deprecated__")]
    assert marked == []
