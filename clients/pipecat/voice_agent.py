"""litestream as the voice of a Pipecat voice agent.

Two ways to run it (a litestream server must be up: `make serve`):

    python clients/pipecat/voice_agent.py --demo out.wav
        No microphone, no LLM: a scripted "LLM" streams two replies token by token into
        LitestreamTTSService; the user barges in during the first one. The audio the agent
        would have played goes to out.wav, and the console says what the listener heard.

    python clients/pipecat/voice_agent.py --live
        A real voice agent: microphone -> Silero VAD -> OpenAI speech-to-text -> an OpenAI
        compatible LLM (OPENAI_API_KEY; OPENAI_BASE_URL for a local one) -> litestream ->
        speakers. Needs PyAudio (`pip install pyaudio`) besides `litestream[pipecat]`.

In both, one protocol-v1 stream carries the whole conversation, and when the user interrupts,
Pipecat's interruption becomes a `clear`: by the voice's own word times, the words not yet
heard never reach the chat history, and the demo prints the words heard before the barge-in.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import wave
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script from a checkout: make `litestream` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

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
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from litestream.client.pipecat import LitestreamTTSService

REPLIES = (
    "Sure, one moment. I'm looking up the opening hours for you. The library opens at nine "
    "in the morning and closes at six in the evening, except on Sundays.",
    "You're welcome. Is there anything else I can help you with?",
)
RATE = 24000


class WavSink(FrameProcessor):
    """Stands in for the speaker: plays in real time (on paper) into a WAV. An interruption
    drops what it had not played yet, as a speaker's buffer is dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.pcm = bytearray()
        self.replies_done = asyncio.Queue[None]()
        self._played_to = 0  # bytes of pcm played before the current stretch
        self._since: float | None = None  # when the current stretch started playing

    def _played(self, now: float) -> int:
        if self._since is None:
            return self._played_to
        heard = self._played_to + int((now - self._since) * RATE) * 2
        return min(len(self.pcm), heard)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        now = time.monotonic()
        if isinstance(frame, TTSAudioRawFrame):
            if self._since is None or self._played(now) >= len(self.pcm):
                self._played_to, self._since = len(self.pcm), now  # (re)starts playing
            self.pcm += frame.audio
        elif isinstance(frame, InterruptionFrame):
            del self.pcm[self._played(now):]
            self._played_to, self._since = len(self.pcm), None
        elif isinstance(frame, TTSStoppedFrame):
            self.replies_done.put_nowait(None)
        if not isinstance(frame, StartFrame) or direction is FrameDirection.DOWNSTREAM:
            await self.push_frame(frame, direction)


def tokens(text: str) -> list[Frame]:
    return [LLMFullResponseStartFrame(), *(LLMTextFrame(w + " ") for w in text.split()),
            LLMFullResponseEndFrame()]


async def demo(url: str, out: Path, barge_in_after_s: float) -> None:
    tts = LitestreamTTSService(url=url)
    sink = WavSink()
    worker = PipelineWorker(Pipeline([tts, sink]), cancel_on_idle_timeout=False,
                            params=PipelineParams(audio_out_sample_rate=RATE))

    @tts.event_handler("on_interrupted_heard")
    async def heard(service: Any, heard: str, unheard: str) -> None:
        print(f"user barged in; words heard: {heard}")
        print(f"  never heard: {unheard}")

    async def converse() -> None:
        await asyncio.sleep(0.5)  # let the pipeline start and the stream open
        await worker.queue_frames(tokens(REPLIES[0]))
        await asyncio.sleep(barge_in_after_s)  # the listener plays in real time meanwhile
        await worker.queue_frame(InterruptionFrame())
        while not sink.replies_done.empty():  # the first reply's end, if it came before
            sink.replies_done.get_nowait()
        await worker.queue_frames(tokens(REPLIES[1]))
        await asyncio.wait_for(sink.replies_done.get(), 30)
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), converse())
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(bytes(sink.pcm))
    print(f"wrote {len(sink.pcm) / 2 / RATE:.1f} s of audio to {out}; "
          f"{tts.conversation_streams} stream for the conversation")


async def live(url: str) -> None:  # pragma: no cover - needs a microphone and an LLM
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import (
        LLMContextAggregatorPair,
        LLMUserAggregatorParams,
    )
    from pipecat.services.openai.llm import OpenAILLMService
    from pipecat.services.openai.stt import OpenAISTTService
    from pipecat.transports.local.audio import LocalAudioTransport, LocalAudioTransportParams

    transport = LocalAudioTransport(LocalAudioTransportParams(audio_in_enabled=True,
                                                              audio_out_enabled=True))
    stt = OpenAISTTService(api_key=os.environ["OPENAI_API_KEY"])
    llm = OpenAILLMService(api_key=os.environ["OPENAI_API_KEY"],
                           base_url=os.environ.get("OPENAI_BASE_URL"))
    tts = LitestreamTTSService(url=url, api_key=os.environ.get("LITESTREAM_KEY"))
    context = LLMContext([{"role": "system", "content": "You are a helpful voice assistant. "
                           "Answer in short spoken sentences, no lists or markdown."}])
    # Silero runs on the `onnxruntime` module, which onnxruntime-gpu provides.
    user, assistant = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer()))
    pipeline = Pipeline([transport.input(), stt, user, llm, tts, transport.output(), assistant])
    worker = PipelineWorker(pipeline, params=PipelineParams(allow_interruptions=True))
    runner = WorkerRunner()
    await runner.add_workers(worker)
    await runner.run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8765/v1/stream")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--demo", type=Path, metavar="OUT.wav", help="scripted, writes a WAV")
    mode.add_argument("--live", action="store_true", help="microphone, LLM and speakers")
    parser.add_argument("--barge-in-after", type=float, default=2.5,
                        help="demo: seconds into the first reply when the user interrupts")
    args = parser.parse_args()
    if args.demo is not None:
        asyncio.run(demo(args.url, args.demo, args.barge_in_after))
    else:
        asyncio.run(live(args.url))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
