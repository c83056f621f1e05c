"""A server whose voice runs a batch of sentences' front passes as one run, as the bundled voice
does on a GPU (`--cuda-front gpu`), here with the real voice on the CPU: requests that arrive
together are encoded together and still each get the audio a server running one front pass at
a time gives them."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import openai

from litestream.engine import PiperVoice
from tests.serverutil import RunningServer, run_server, shared_voice

TEXTS = (
    "Sure, one moment.",
    "I am checking the opening hours for you right now.",
    "The museum opens at nine and closes at five on weekdays.",
    "On Sundays it stays open until seven in the evening.",
    "Tickets are cheaper online.",
    "Is there anything else I can help you with today?",
)


async def pcm(srv: RunningServer, text: str) -> np.ndarray:
    client = openai.AsyncOpenAI(base_url=srv.http_url + "/v1", api_key="unused", max_retries=0)
    response = await client.audio.speech.create(model="tts-1", voice="alloy", input=text,
                                                response_format="pcm")
    return np.frombuffer(response.content, dtype=np.int16)


def batched_runs(srv: RunningServer, kind: str) -> float:
    """Runs of `kind` that took more than one step, from the server's batch-size histogram."""
    from prometheus_client.parser import text_string_to_metric_families

    body, _ = srv.server.metrics.render()
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if (sample.name == "litestream_batch_size_count"
                    and sample.labels.get("kind") == kind):
                total = sample.value
            if (sample.name == "litestream_batch_size_bucket"
                    and sample.labels.get("kind") == kind and sample.labels.get("le") == "1.0"):
                single = sample.value
    return total - single


async def test_requests_at_once_share_front_runs_and_get_the_same_audio() -> None:
    voice = shared_voice()
    batched = PiperVoice(voice.info, voice.config, voice._model, intra_op_threads=1,
                         device="cpu", noise_scale=0.0, noise_w=0.0, batched_front=True)
    assert batched.batches_fronts and batched._batched is not None
    rows: list[int] = []  # rows of each prior run the engine made
    engine_run = batched._batched._run

    def recording(outputs: list[str], feeds: dict[str, np.ndarray], options: Any) -> Any:
        rows.append(len(feeds["input"]))
        return engine_run(outputs, feeds, options)

    batched._batched._run = recording
    async with run_server(max_batch=8) as plain, \
            run_server({voice.info.id: batched}, workers=1, max_batch=8) as srv:
        alone = [await pcm(plain, text) for text in TEXTS]
        together = await asyncio.gather(*(pcm(srv, text) for text in TEXTS))
        assert batched_runs(srv, "encode") >= 1  # some encode steps went out as one batch
    assert max(rows) >= 2  # and the engine ran their front passes as one run
    for one, other in zip(alone, together, strict=True):
        assert len(other) == len(one) > 0
        assert np.abs(other.astype(np.int32) - one.astype(np.int32)).max() <= 64
