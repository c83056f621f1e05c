"""A real Pipecat pipeline with LitestreamTTSService against a real litestream server.

pipecat-ai is installed by `make install` (without its dependencies: see clients/pipecat/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
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
    OutputAudioRawFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMAssistantAggregator
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services import tts_service as pipecat_tts
from pipecat.services.tts_service import WebsocketTTSService
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import TransportParams
from pipecat.utils.string import TextPartForConcatenation, concatenate_aggregated_text
from pipecat.workers.runner import WorkerRunner

from litestream.client import Chunk, Error, Flushed, Ready, Words, connect
from litestream.client.pipecat import LitestreamTTSService, joined_words, word_times
from tests.serverutil import RunningServer, run_server, until

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
                                                              LitestreamTTSService], Any],
                       tts: LitestreamTTSService | None = None) -> None:
    tts = tts or LitestreamTTSService(url=srv.url)
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
                seen["words"] = [(f.text, f.raw_text) for f in sink.of(TTSTextFrame)]
        # Both turns went over one protocol-v1 stream, still open for the next turn.
        seen["streams"] = tts.conversation_streams
        seen["session_open"] = tts.session_id in srv.server.streams
        seen["all_words"] = [f.raw_text for f in sink.of(TTSTextFrame)]

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
    # What was said, word by word, in order: the words of the text, each once. A word frame's
    # text is the server's word (punctuation trimmed); its raw_text, which the assistant
    # aggregator writes into the LLM context, is the LLM's own text for it (Pipecat maps it).
    assert [raw for _, raw in seen["words"]] == TURN_1.split()
    assert [text for text, _ in seen["words"]] == [w.strip(",.") for w in TURN_1.split()]


@module_loop
async def test_interruption_clears_the_server_and_reports_what_was_heard(
        srv: RunningServer) -> None:
    long_text = " ".join(["This is a long answer that the user will interrupt."] * 6)
    heard_reports: list[tuple[str, str]] = []
    seen: dict[str, Any] = {}

    async def script(worker: PipelineWorker, sink: Sink, tts: LitestreamTTSService) -> None:
        @tts.event_handler("on_interrupted_heard")
        async def _heard(service: Any, heard: str, unheard: str) -> None:
            heard_reports.append((heard, unheard))

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
    heard, unheard = heard_reports[0]
    # Right after the first frames the listener had heard a few words of the first chunk: the
    # report splits what was synthesized of the answer there, in order.
    assert long_text.startswith(f"{heard} {unheard}".strip())
    assert unheard and len(heard.split()) < 10


@module_loop
async def test_the_heard_report_counts_text_the_server_still_held_as_unheard(
        srv: RunningServer) -> None:
    """The user barges in while the LLM is still streaming: the server held the sentence
    being written (a sentence is cut only once the next begins). The LLM said it and the user
    never heard it, but `on_interrupted_heard` left it out of `unheard`."""
    answer = ("Sure, one moment. I am checking the weather for you now. It looks like rain "
              "this afternoon. Take an umbrella with you today.")
    tokens = [w + " " for w in answer.split()]
    reports: list[tuple[str, str]] = []
    said: list[str] = []

    async def script(worker: PipelineWorker, sink: Sink, tts: LitestreamTTSService) -> None:
        @tts.event_handler("on_interrupted_heard")
        async def _heard(service: Any, heard: str, unheard: str) -> None:
            reports.append((heard, unheard))

        await worker.queue_frame(LLMFullResponseStartFrame())
        for token in tokens:  # an LLM a little faster than speech
            await worker.queue_frame(LLMTextFrame(token))
            said.append(token)
            if sink.of(TTSAudioRawFrame) and len(said) >= 16:
                break  # the user barges in, mid-sentence: the LLM stops
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.2)  # the tokens it wrote reach the service
        await worker.queue_frame(InterruptionFrame())
        while not reports:
            await asyncio.sleep(0.01)

    await run_pipeline(srv, script)
    ((heard, unheard),) = reports
    assert "".join(said).split() == heard.split() + unheard.split()
    assert len(said) < len(tokens)


class Speaker(BaseOutputTransport):
    """Stands in for a sound card behind Pipecat's real output transport: each chunk of audio
    the transport writes plays in real time after the one before (the transport paces its
    writes by them, as Pipecat's websocket transports do), and an interruption silences it at
    once. It notes how much it had played when the interruption reached it."""

    def __init__(self) -> None:
        super().__init__(TransportParams(audio_out_enabled=True, audio_out_sample_rate=OUT_RATE))
        self.plays: list[tuple[float, float]] = []  # (start, seconds) of each chunk written
        self.heard_at_interruption_ms: float | None = None
        self._end = 0.0  # when the audio written so far ends

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    def heard_ms(self, now: float) -> float:
        return 1000.0 * sum(min(max(0.0, now - start), length) for start, length in self.plays)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        now = time.monotonic()
        start = max(now, self._end)
        length = len(frame.audio) / 2 / frame.sample_rate
        self.plays.append((start, length))
        self._end = start + length
        await asyncio.sleep(start - now)  # hand back when it starts: the next one queues behind
        return True

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, InterruptionFrame) and self.heard_at_interruption_ms is None:
            now = time.monotonic()
            self.heard_at_interruption_ms = self.heard_ms(now)
            self.plays = [(start, min(length, max(0.0, now - start)))
                          for start, length in self.plays]  # the rest is never played
            self._end = now
        await super().process_frame(frame, direction)


class TappedTTS(LitestreamTTSService):
    """The service, with the server's events noted as they arrive (the test's record of the
    words' times; nothing the service does changes)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.events: list[object] = []

    async def _on_event(self, event: object) -> None:
        self.events.append(event)
        await super()._on_event(event)


class ServerWithoutWords(LitestreamTTSService):
    """The service as a server without word timestamps leaves it: no `words` events."""

    async def _on_event(self, event: object) -> None:
        if not isinstance(event, Words):
            await super()._on_event(event)


@module_loop
async def test_without_words_events_the_words_are_estimated_and_all_come_out(
        srv: RunningServer) -> None:
    seen: dict[str, Any] = {}

    async def script(worker: PipelineWorker, sink: Sink, tts: LitestreamTTSService) -> None:
        await worker.queue_frames(llm_turn(TURN_1))
        await sink.wait_for(lambda frames: any(isinstance(f, TTSStoppedFrame) for f in frames))
        seen["words"] = [f.raw_text for f in sink.of(TTSTextFrame)]

    await run_pipeline(srv, script, ServerWithoutWords(url=srv.url))
    assert seen["words"] == TURN_1.split()


def stopped(n: int) -> Callable[[list[Frame]], bool]:
    return lambda frames: sum(isinstance(f, TTSStoppedFrame) for f in frames) >= n


@module_loop
async def test_turns_with_nothing_to_say_do_not_make_the_service_give_up(
        srv: RunningServer) -> None:
    """An LLM reply of only punctuation or an emoji: the server flushes it without a chunk.
    Pipecat counts a turn without audio as a TTS gone silent and, after three in a row, stops
    giving the service work; the next real reply was never spoken."""
    seen: dict[str, Any] = {}

    async def script(worker: PipelineWorker, sink: Sink, tts: LitestreamTTSService) -> None:
        for turn, text in enumerate(("...", "\N{THUMBS UP SIGN}", "\N{EM DASH}"), start=1):
            await worker.queue_frames(llm_turn(text))
            await sink.wait_for(stopped(turn))
        words_before = len(sink.of(TTSTextFrame))
        await worker.queue_frames(llm_turn(TURN_2))
        await sink.wait_for(stopped(4))
        seen["usable"] = tts.is_usable
        seen["words"] = [f.raw_text for f in sink.of(TTSTextFrame)[words_before:]]

    await run_pipeline(srv, script)
    assert seen["usable"]
    assert seen["words"] == TURN_2.split()


class BargeInAtSilentFlush(LitestreamTTSService):
    """The user barges in the moment the server's `flushed` of a turn with nothing to say has
    been handled, before Pipecat's audio task ended that turn's audio context (a race that is
    rare live; here it is made certain by interrupting from the receive loop)."""

    barge_in = True

    async def _on_event(self, event: object) -> None:
        await super()._on_event(event)
        if isinstance(event, Flushed) and self.barge_in:
            self.barge_in = False
            await self.process_frame(InterruptionFrame(), FrameDirection.DOWNSTREAM)


@module_loop
async def test_a_silent_turn_cut_before_its_end_leaves_nothing_behind(
        srv: RunningServer) -> None:
    """The service notes each turn the server flushed without a chunk until Pipecat ends its
    audio context. A turn interrupted first never ends: its note stayed for the life of the
    conversation, one more for every such turn."""
    seen: dict[str, Any] = {}

    async def script(worker: PipelineWorker, sink: Sink, tts: LitestreamTTSService) -> None:
        assert isinstance(tts, BargeInAtSilentFlush)
        await worker.queue_frames(llm_turn("..."))
        while tts.barge_in:
            await asyncio.sleep(0.01)
        await worker.queue_frames(llm_turn(TURN_2))  # the conversation goes on
        await sink.wait_for(lambda frames: any(isinstance(f, TTSStoppedFrame) and
                                               f.context_id != seen.get("silent")
                                               for f in frames))
        seen["notes"] = set(tts._silent_contexts)
        seen["words"] = [f.raw_text for f in sink.of(TTSTextFrame)]

    await run_pipeline(srv, script, BargeInAtSilentFlush(url=srv.url))
    assert seen["notes"] == set()
    assert seen["words"] == TURN_2.split()


async def test_a_turn_after_the_server_restarted_is_spoken_on_a_new_stream() -> None:
    """The server goes away between two turns (its streams close with 1001) and comes back on
    the same port. The service's receive loop, refused while it was down, waits to retry; the
    next turn opens a stream itself. That turn must be spoken on it, not dropped when the
    loop's retry replaced the stream."""
    seen: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as first_server:
        first = await first_server.enter_async_context(run_server())

        async def script(worker: PipelineWorker, sink: Sink, tts: LitestreamTTSService) -> None:
            await worker.queue_frames(llm_turn(TURN_1))
            await sink.wait_for(stopped(1))
            await first_server.aclose()  # the stream closes with 1001; nothing listens
            async with run_server(port=first.port) as second:
                words_before = len(sink.of(TTSTextFrame))
                audio_before = len(sink.of(TTSAudioRawFrame))
                await worker.queue_frames(llm_turn(TURN_2))
                with contextlib.suppress(TimeoutError):  # a lost turn: the asserts say so
                    await sink.wait_for(stopped(2))
                seen["words"] = [f.raw_text for f in sink.of(TTSTextFrame)[words_before:]]
                seen["audio_s"] = audio_s(sink.of(TTSAudioRawFrame)[audio_before:])
                seen["streams"] = tts.conversation_streams
                seen["open"] = tts.session_id in second.server.streams

        await run_pipeline(first, script)
    assert seen["audio_s"] > 0.5
    assert seen["words"] == TURN_2.split()
    assert seen["streams"] == 2 and seen["open"]


async def test_tokens_left_waiting_when_the_server_went_away_are_not_said_next_turn() -> None:
    """Tokens close together wait to go as one `text` message. The server went away while
    some of a turn's tokens waited (the turn ended with no stream to flush them on): the
    next turn, on a new stream, began with them."""
    seen: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as first_server:
        first = await first_server.enter_async_context(run_server())

        async def script(worker: PipelineWorker, sink: Sink, tts: LitestreamTTSService) -> None:
            turn = llm_turn("Sure, one moment. I am checking")
            await worker.queue_frames(turn[:-1])  # the first token goes, the rest wait 5 s
            await asyncio.sleep(0.3)
            await first_server.aclose()  # the stream closes with 1001
            await worker.queue_frame(turn[-1])
            async with run_server(port=first.port) as second:
                await worker.queue_frames(llm_turn(TURN_2))
                await sink.wait_for(lambda frames: any(
                    isinstance(f, TTSTextFrame) and f.text == "tomorrow" for f in frames))
                assert isinstance(tts, TappedTTS)
                seen["chunks"] = [e.text for e in tts.events if isinstance(e, Chunk)]
                seen["open"] = tts.session_id in second.server.streams

        await run_pipeline(first, script, TappedTTS(url=first.url, text_interval_s=5.0))
    assert seen["open"]
    assert seen["chunks"][-1] == TURN_2


def refusals(srv: RunningServer, reason: str) -> float:
    value = srv.server.metrics.registry.get_sample_value(
        "litestream_refusals_total", {"reason": reason})
    return value or 0.0


async def test_a_refused_handshake_is_not_retried_for_every_token() -> None:
    """Refused at connect, the service tried again for each LLM token (a handshake, and an
    error, per word) and took a wrong key for a passing failure."""
    turn = "This reply has a dozen words and the server will not take it."
    seen: dict[str, Any] = {}

    async def two_turns(worker: PipelineWorker, sink: Sink, tts: LitestreamTTSService) -> None:
        for n in (1, 2):
            await worker.queue_frames(llm_turn(turn))
            await sink.wait_for(lambda frames, n=n: sum(
                isinstance(f, LLMFullResponseEndFrame) for f in frames) >= n)
        seen["usable"] = tts.is_usable

    async with run_server(api_keys=("good",), max_streams=1) as srv:
        # A wrong key: one refusal at start, then the service is unusable (Pipecat's word for
        # an error no retry fixes) and asks no more.
        await run_pipeline(srv, two_turns, LitestreamTTSService(url=srv.url, api_key="bad"))
        assert refusals(srv, "unauthorized") == 1
        assert not seen["usable"]
        # Full (503): at most one handshake at start and one per turn, and the service stays
        # usable for when the server has room again.
        async with connect(srv.url, token="good"):
            await run_pipeline(srv, two_turns, LitestreamTTSService(url=srv.url, api_key="good"))
        assert 1 <= refusals(srv, "max_streams") <= 3
        assert seen["usable"]


async def test_a_fast_llm_is_not_cut_by_the_servers_message_rate() -> None:
    """The server limits each key (or client address) to `messages_per_s` (200 by default;
    a 2 s burst). A fast LLM (several hundred tokens a second), or a few conversations of one
    agent host at once, went over it with one `text` message per token: every token refused
    was never spoken, and a refused `flush` left the turn unended. Here the limit is 3 a
    second (a burst of 6) against one reply of 12 tokens, delivered as fast as an LLM can."""
    seen: dict[str, Any] = {}

    async def script(worker: PipelineWorker, sink: Sink, tts: LitestreamTTSService) -> None:
        await worker.queue_frames(llm_turn(TURN_1))
        with contextlib.suppress(TimeoutError):  # a lost flush: the asserts say so
            await sink.wait_for(stopped(1), timeout=15)
        assert isinstance(tts, TappedTTS)
        seen["errors"] = [e.code for e in tts.events if isinstance(e, Error)]
        seen["words"] = [f.raw_text for f in sink.of(TTSTextFrame)]

    async with run_server(messages_per_s=3.0) as srv:
        await run_pipeline(srv, script, TappedTTS(url=srv.url))
    assert seen["errors"] == []
    assert seen["words"] == TURN_1.split()


def agent_pipeline(srv: RunningServer) -> tuple[TappedTTS, Speaker, LLMContext, PipelineWorker]:
    """tts -> Pipecat's output transport (to a real-time speaker) -> the assistant aggregator,
    as a voice agent's output runs: the service, the speaker, the LLM context and the worker."""
    tts = TappedTTS(url=srv.url)
    speaker = Speaker()
    context = LLMContext()
    worker = PipelineWorker(Pipeline([tts, speaker, LLMAssistantAggregator(context)]),
                            cancel_on_idle_timeout=False,
                            params=PipelineParams(audio_out_sample_rate=OUT_RATE))
    return tts, speaker, context, worker


HEARD_TOLERANCE_MS = 100  # a word starting this close to the cut may fall on either side


@module_loop
async def test_interruption_keeps_exactly_the_words_heard_in_the_llm_context(
        srv: RunningServer) -> None:
    """tts -> Pipecat's output transport (to a real-time speaker) -> the assistant aggregator:
    after a barge-in the LLM context holds the words whose start the speaker had played, by
    the voice's own word times, and no word that had not begun. The cut falls between "items"
    and the next word, after "$1,234.56" (spoken as eleven words): there a chunk-position
    estimate is off by over a second, so only exact times keep the right words."""
    answer = ("Sure. Your total comes to $1,234.56 for 12 items, and it is due on the fourth "
              "of March. Shall I send the invoice now?")
    target = answer.split().index("items,")
    tts, speaker, context, worker = agent_pipeline(srv)
    started = asyncio.Event()
    reports: list[tuple[str, str]] = []

    @worker.event_handler("on_pipeline_started")
    async def _started(worker: Any, frame: Any) -> None:
        started.set()

    @tts.event_handler("on_interrupted_heard")
    async def _heard(service: Any, heard: str, unheard: str) -> None:
        reports.append((heard, unheard))

    def starts_ms() -> list[int]:
        """The voice's word start times so far, from the answer's first audio (the start of
        its first chunk): the speaker's clock."""
        chunks = [e for e in tts.events if isinstance(e, Chunk)]
        timed = [w for e in tts.events if isinstance(e, Words) for w in e.words]
        return [w.start_ms - chunks[0].start_ms for w in timed]

    async def drive() -> float:
        await asyncio.wait_for(started.wait(), 20)
        try:
            await worker.queue_frames(llm_turn(answer))
            while len(starts_ms()) <= target + 1:  # a chunk's words come before its audio
                await asyncio.sleep(0.005)
            after_target, next_start = starts_ms()[target:target + 2]
            assert next_start - after_target > 2 * HEARD_TOLERANCE_MS + 100
            cut_ms = (after_target + next_start) / 2
            while speaker.heard_ms(time.monotonic()) < cut_ms:
                await asyncio.sleep(0.005)
            await worker.queue_frame(InterruptionFrame())
            await asyncio.sleep(0.5)  # the aggregator writes the interrupted turn
            return cut_ms
        finally:
            await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    _, cut_ms = await asyncio.wait_for(asyncio.gather(runner.run(), drive()), 120)

    timed = [w for e in tts.events if isinstance(e, Words) for w in e.words]
    assert [w.text for w in timed] == [t.strip(",.?") for t in answer.split()][:len(timed)]
    heard_at = speaker.heard_at_interruption_ms
    assert heard_at is not None and cut_ms <= heard_at < cut_ms + 150, (cut_ms, heard_at)
    starts = starts_ms()
    surely_heard = sum(start < heard_at - HEARD_TOLERANCE_MS for start in starts)
    maybe_heard = sum(start < heard_at + HEARD_TOLERANCE_MS for start in starts)
    assert surely_heard == maybe_heard == target + 1  # no word starts near the cut

    # The context holds the answer's words through "items," as the LLM wrote them.
    (message,) = [m for m in context.get_messages() if m.get("role") == "assistant"]
    assert str(message["content"]).split() == answer.split()[:target + 1]
    # The service's own report splits the answer at the same word.
    ((heard, unheard),) = reports
    assert heard.split() == answer.split()[:target + 1]
    assert answer.startswith(f"{heard} {unheard}")


def test_word_times_spread_a_chunk_by_character_position() -> None:
    times = word_times("Sure, one moment.", 1.0, 1.7)
    assert [w for w, _ in times] == ["Sure,", "one", "moment."]
    assert times[0][1] == pytest.approx(1.0)
    assert times[1][1] == pytest.approx(1.0 + 1.7 * 6 / 17)
    assert times[2][1] == pytest.approx(1.0 + 1.7 * 10 / 17)
    assert word_times("", 0.0, 1.0) == []


@pytest.mark.parametrize(("text", "words", "context"), [
    # Japanese: no space between words (it was "はい。 東京 で は 雨 です。")
    ("はい。東京では雨です。", ["はい", "東京", "で", "は", "雨", "です"],
     "はい。東京では雨です。"),
    # an English name inside it: spaced where the text is
    ("これはVisual Studio Codeで書く。", ["これ", "は", "Visual", "Studio", "Code", "で", "書く"],
     "これはVisual Studio Codeで書く。"),
    ("ChatGPT は便利。", ["ChatGPT", "は", "便利"], "ChatGPT は便利。"),
    # English: Pipecat's spaces, as before
    ("Sure, one moment.", ["Sure", "one", "moment"], "Sure, one moment."),
])
def test_words_of_unspaced_text_join_in_the_llm_context(
        text: str, words: list[str], context: str) -> None:
    spans = []
    for word in words:
        start = text.index(word, spans[-1][1] if spans else 0)
        spans.append((start, start + len(word)))
    joined = joined_words(text, spans)
    # What Pipecat writes into the context (its assistant aggregator's concatenation) from
    # each word's text as the LLM wrote it: the word and the punctuation after it.
    raw = [text[start:spans[i + 1][0] if i + 1 < len(spans) else len(text)].strip()
           for i, (start, _) in enumerate(spans)]
    parts = [TextPartForConcatenation(r, join) for r, join in zip(raw, joined, strict=True)]
    assert concatenate_aggregated_text(parts) == context


def test_the_service_is_built_on_pipecats_current_websocket_base_class() -> None:
    """Pipecat 1.14 marks AudioContextTTSService (and the *Word* variants) deprecated in favour of
    WebsocketTTSService; nothing the service inherits from may carry that mark."""
    assert issubclass(LitestreamTTSService, WebsocketTTSService)
    assert hasattr(pipecat_tts.AudioContextTTSService, "__deprecated__")  # the mark looked for
    marked = [c.__name__ for c in LitestreamTTSService.__mro__ if hasattr(c, "__deprecated__")]
    assert marked == []


@module_loop
async def test_a_reply_queued_behind_another_keeps_exactly_the_words_heard(
        srv: RunningServer) -> None:
    """Two replies back to back (the LLM speaks, calls a tool, speaks again): the second's
    audio arrives while the first's still plays. Pipecat starts a reply's word clock when its
    first audio is pushed, or at the last word's start if that is later, not where the
    first reply's audio ends: the second reply's words were released up to the first's last
    word and trailing silence early (430 ms on the bundled voice), and a barge-in left words
    in the LLM context that the user never heard."""
    first = "Let me check that for you."
    second = "Your total comes to twelve dollars. Shall I send the invoice now?"
    target = second.split().index("dollars.")
    tts, speaker, context, worker = agent_pipeline(srv)
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(worker: Any, frame: Any) -> None:
        started.set()

    def starts_ms() -> list[int]:
        """The voice's word start times, from the stream's first audio: the speaker's clock
        (it plays both replies without a gap)."""
        chunks = [e for e in tts.events if isinstance(e, Chunk)]
        timed = [w for e in tts.events if isinstance(e, Words) for w in e.words]
        return [w.start_ms - chunks[0].start_ms for w in timed]

    n_first = len(first.split())

    async def drive() -> None:
        await asyncio.wait_for(started.wait(), 20)
        try:
            await worker.queue_frames(llm_turn(first) + llm_turn(second))
            while len(starts_ms()) <= n_first + target + 1:
                await asyncio.sleep(0.005)
            after_target, next_start = starts_ms()[n_first + target:n_first + target + 2]
            # The cut: 200 ms before the next word starts (and well after the target began).
            assert next_start - after_target > 4 * HEARD_TOLERANCE_MS
            cut_ms = next_start - 2 * HEARD_TOLERANCE_MS
            while speaker.heard_ms(time.monotonic()) < cut_ms:
                await asyncio.sleep(0.005)
            await worker.queue_frame(InterruptionFrame())
            await asyncio.sleep(0.5)  # the aggregator writes the interrupted turn
        finally:
            await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(asyncio.gather(runner.run(), drive()), 120)

    heard_at = speaker.heard_at_interruption_ms
    assert heard_at is not None
    played = [(start, length) for start, length in speaker.plays
              if length > 0 and start < speaker.plays[0][0] + heard_at / 1000]
    gaps = [b[0] - (a[0] + a[1]) for a, b in itertools.pairwise(played)]
    assert max(gaps) < 0.05, gaps  # the speaker played both replies without a pause
    messages = [str(m["content"]) for m in context.get_messages()
                if m.get("role") == "assistant"]
    assert messages == [first, " ".join(second.split()[:target + 1])]


@module_loop
async def test_a_stream_lost_mid_turn_is_replaced_and_the_turn_spoken_to_its_end(
        srv: RunningServer) -> None:
    """The replica under a stream dies mid-turn (here its connection is cut, as a SIGKILL
    does: the client sees 1006). The service reconnected, but the turn's text already sent was
    never spoken, its audio context never ended (no `flushed` on the new stream), and the next
    turn queued behind it. Now the unspoken text goes again on the new stream."""
    turn = ("The first sentence of a long answer is spoken now. The second one follows it "
            "closely. A third sentence comes after that. And the fourth sentence ends it all.")
    seen: dict[str, Any] = {}

    async def script(worker: PipelineWorker, sink: Sink, tts: LitestreamTTSService) -> None:
        await worker.queue_frames(llm_turn(turn))
        await sink.wait_for(lambda frames: any(isinstance(f, TTSAudioRawFrame)
                                               for f in frames))
        srv.server.streams[tts.session_id or ""].request.transport.abort()
        with contextlib.suppress(TimeoutError):  # a turn that never ends: the asserts say so
            await sink.wait_for(stopped(1), timeout=60)
        seen["stopped"] = len(sink.of(TTSStoppedFrame))
        seen["words"] = [f.raw_text for f in sink.of(TTSTextFrame)]
        seen["streams"] = tts.conversation_streams

    await run_pipeline(srv, script)
    assert seen["streams"] == 2
    assert seen["stopped"] == 1, "the turn's audio context never ended"
    # Every word is spoken, in order, once in the text frames the LLM context keeps (the
    # chunk that was playing when the stream was lost is spoken again whole; Pipecat's word
    # sequencer does not repeat words it has released).
    assert " ".join(seen["words"]).split() == turn.split()


@module_loop
async def test_what_was_heard_counts_the_new_streams_chunks_after_a_lost_stream(
        srv: RunningServer) -> None:
    """A turn heard in full, then the next turn's stream is lost and the turn resumed on a new
    stream; the listener interrupts it. The report must name what was heard of the resumed
    turn. It skipped the new stream's first chunks: the service counted chunks from where the
    lost stream's had got to (chunk numbers start at 0 on every stream)."""
    long_text = " ".join(["This is a long answer that the user will interrupt."] * 6)
    heard_reports: list[tuple[str, str]] = []

    async def script(worker: PipelineWorker, sink: Sink, tts: LitestreamTTSService) -> None:
        @tts.event_handler("on_interrupted_heard")
        async def _heard(service: Any, heard: str, unheard: str) -> None:
            heard_reports.append((heard, unheard))

        await worker.queue_frames(llm_turn(TURN_1))
        await sink.wait_for(stopped(1))
        await asyncio.sleep(audio_s(sink.of(TTSAudioRawFrame)) + 0.5)  # heard in full
        before = len(sink.of(TTSAudioRawFrame))
        await worker.queue_frames(llm_turn(long_text))
        await sink.wait_for(lambda frames: len(sink.of(TTSAudioRawFrame)) > before)
        first = tts.session_id
        srv.server.streams[first or ""].request.transport.abort()
        lost_at = len(sink.of(TTSAudioRawFrame))
        await until(lambda: tts.session_id not in (None, first)
                    and len(sink.of(TTSAudioRawFrame)) > lost_at)
        await asyncio.sleep(1.5)  # the listener plays the resumed turn's first words
        await worker.queue_frame(InterruptionFrame())
        await sink.wait_for(lambda frames: bool(heard_reports))

    await run_pipeline(srv, script)
    heard, unheard = heard_reports[0]
    assert heard and long_text.startswith(f"{heard} {unheard}".strip())


def chunks_of_last_stream(tts: TappedTTS) -> list[str]:
    """The text of each chunk on the service's latest stream (from its last `ready`)."""
    start = max(i for i, e in enumerate(tts.events) if isinstance(e, Ready))
    return [e.text for e in tts.events[start:] if isinstance(e, Chunk)]


@module_loop
async def test_a_stream_lost_while_tokens_wait_speaks_the_turn_once_and_in_order(
        srv: RunningServer) -> None:
    """Tokens close together wait to go as one `text` message, and a stream lost mid-turn is
    replaced and sent what it had not spoken. Lost while some of the turn's tokens waited: the
    new stream gets the text sent before, then the tokens that waited, then the rest, each
    once and in order (a token is unspoken text once it is sent, not while it waits)."""
    turn = "Sure, one moment. I am checking the weather for you now."
    frames = llm_turn(turn)
    tts = TappedTTS(url=srv.url, text_interval_s=5.0)
    seen: dict[str, Any] = {}

    async def script(worker: PipelineWorker, sink: Sink, _: LitestreamTTSService) -> None:
        await worker.queue_frames(frames[:4])  # "Sure, " goes at once; "one moment. " waits
        await asyncio.sleep(0.3)
        first = tts.session_id
        srv.server.streams[first or ""].request.transport.abort()  # as a SIGKILL: 1006
        await until(lambda: tts.session_id not in (None, first), timeout_s=30)
        await worker.queue_frames(frames[4:])  # the rest of the turn, and its end
        with contextlib.suppress(TimeoutError):  # a turn that never ends: the asserts say so
            await sink.wait_for(stopped(1), timeout=60)
        seen["stopped"] = len(sink.of(TTSStoppedFrame))
        seen["words"] = [f.raw_text for f in sink.of(TTSTextFrame)]
        seen["chunks"] = chunks_of_last_stream(tts)

    await run_pipeline(srv, script, tts)
    assert tts.conversation_streams == 2
    assert " ".join(seen["chunks"]).split() == turn.split()
    assert seen["stopped"] == 1
    assert " ".join(seen["words"]).split() == turn.split()


async def test_a_turn_that_ends_while_its_lost_stream_is_replaced_is_spoken_to_its_end() -> None:
    """The stream is lost mid-turn and the turn ends before a new one could be opened (the
    server restarts; Pipecat's reconnect waits to retry). The turn's rest, its tokens still
    waiting too, and its end go on the stream the reconnect opens, before any next turn: it
    is spoken to its end. (When the next turn comes first, they are not said: the test of
    tokens left waiting above.)"""
    turn = "Sure, one moment. I am checking"
    seen: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as first_server:
        first = await first_server.enter_async_context(run_server())
        # The reconnect's second try comes after the new server is up (it takes seconds).
        tts = TappedTTS(url=first.url, text_interval_s=5.0, reconnect_backoff_min_wait=8.0,
                        reconnect_backoff_max_wait=8.0)

        async def script(worker: PipelineWorker, sink: Sink, _: LitestreamTTSService) -> None:
            frames = llm_turn(turn)
            await worker.queue_frames(frames[:-1])  # the first token goes, the rest wait 5 s
            await asyncio.sleep(0.3)
            await first_server.aclose()  # the stream closes with 1001; the reconnect fails
            await worker.queue_frame(frames[-1])  # the turn ends with no stream
            async with run_server(port=first.port) as second:
                await until(lambda: tts.session_id in second.server.streams, timeout_s=30)
                with contextlib.suppress(TimeoutError):  # a lost rest: the asserts say so
                    await sink.wait_for(lambda frames: any(
                        isinstance(f, TTSTextFrame) and f.raw_text.startswith("checking")
                        for f in frames), timeout=30)
                seen["chunks"] = chunks_of_last_stream(tts)
                seen["flushed"] = any(isinstance(e, Flushed) for e in tts.events)

        await run_pipeline(first, script, tts)
    assert " ".join(seen["chunks"]).split() == turn.split()
    assert seen["flushed"], "the turn's end never reached the new stream"
