"""Pipecat's own OpenAI TTS service pointed at litestream's `/v1/audio/speech`: a drop-in user.

Pipecat's `OpenAITTSService` asks for `pcm` and labels every byte 24 kHz, OpenAI's rate. The
audio must therefore be 24 kHz whatever the voice's own rate, or it plays fast and high (the
bundled voice speaks at 22,050 Hz: 8.8% fast before pcm was resampled).
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import av
import pytest
import pytest_asyncio
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    StartFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStoppedFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.tts import OpenAITTSService
from pipecat.workers.runner import WorkerRunner

from tests.serverutil import RunningServer, run_server

module_loop = pytest.mark.asyncio(loop_scope="module")

TEXT = "It will be sunny tomorrow, with a light breeze in the afternoon."
PIPECAT_RATE = 24000  # what OpenAITTSService labels its audio


class Sink(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.audio: list[TTSAudioRawFrame] = []
        self.stopped = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self.audio.append(frame)
        elif isinstance(frame, TTSStoppedFrame):
            self.stopped.set()  # the service read the response to its end
        await self.push_frame(frame, direction)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def srv() -> Any:
    async with run_server() as running:
        yield running


async def wav_seconds(srv: RunningServer, text: str) -> float:
    """The same speech's length from a self-describing file (WAV at the voice's rate)."""
    import openai

    api = openai.AsyncOpenAI(base_url=srv.http_url + "/v1", api_key="unused", max_retries=0)
    data = (await api.audio.speech.create(model="tts-1", voice="alloy", input=text,
                                          response_format="wav")).content
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        return samples / stream.codec_context.sample_rate


@module_loop
async def test_pipecats_openai_service_plays_litestream_at_the_right_speed(
        srv: RunningServer) -> None:
    tts = OpenAITTSService(api_key="unused", base_url=srv.http_url + "/v1",
                           sample_rate=PIPECAT_RATE)
    sink = Sink()
    worker = PipelineWorker(Pipeline([tts, sink]), cancel_on_idle_timeout=False,
                            params=PipelineParams(audio_out_sample_rate=PIPECAT_RATE))
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(worker: Any, frame: StartFrame) -> None:
        started.set()

    async def drive() -> None:
        await asyncio.wait_for(started.wait(), 20)
        try:
            await worker.queue_frame(TTSSpeakFrame(TEXT))
            await asyncio.wait_for(sink.stopped.wait(), 60)
        finally:
            await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(asyncio.gather(runner.run(), drive()), 120)

    assert sink.audio, "no audio came out of Pipecat's OpenAI service"
    assert {f.sample_rate for f in sink.audio} == {PIPECAT_RATE}
    played_s = sum(len(f.audio) // 2 for f in sink.audio) / PIPECAT_RATE
    expected_s = await wav_seconds(srv, TEXT)
    assert expected_s > 2.0
    # Played at Pipecat's label, the audio lasts as long as the speech: within 2 ms.
    assert abs(played_s - expected_s) < 0.002, (played_s, expected_s)
