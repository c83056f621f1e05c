"""engine/piper/front.py: the front in batches of fixed shapes (a GPU's), run here on the CPU.

The real bundled voice, deterministic (no noise), from tests/conftest.py: a batched front must
give each sentence the latent its own whole front gives, whatever it is padded to or batched
with.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest

from litestream.engine import PiperVoice
from litestream.engine.piper import front as batched
from litestream.engine.piper import voice as piper
from litestream.engine.piper.split import (
    CutPoints,
    NotSplittable,
    PriorCut,
    find_cut_points,
    find_prior_cut,
)
from litestream.engine.piper.windows import Prior

SENTENCES = (
    "Yes.",
    "A blue crane is a tall wading bird, and a fresh start will work such wonders.",
    "The next chunk is due before the listener runs dry, so we measure it carefully.",
    "Seven.",
    "Numbers like 1,250 and dates like March 3rd are read out as words by the phonemizer, "
    "which makes this one of the longer sentences a listener is likely to send in one go.",
)


def batched_voice(voice: PiperVoice) -> PiperVoice:
    """The bundled voice with its front batched, as on a GPU, on the CPU."""
    return PiperVoice(voice.info, voice.config, voice._model, intra_op_threads=1, device="cpu",
                      noise_scale=voice.noise_scale, noise_w=voice.noise_w,
                      batched_front=True)


@pytest.fixture(scope="module")
def front_voice(voice: PiperVoice) -> PiperVoice:
    return batched_voice(voice)


def test_the_prior_cut_of_the_bundled_voice(voice: PiperVoice) -> None:
    model = onnx.load(str(voice.info.model_path), load_external_data=False)
    cuts = find_cut_points(model.graph)
    assert find_prior_cut(model.graph, cuts) == PriorCut(
        mean="/Transpose_2_output_0", log_scale="/Transpose_4_output_0",
        durations="/Ceil_output_0")
    # Without durations there is nothing to spread the prior with.
    with pytest.raises(NotSplittable):
        find_prior_cut(model.graph, CutPoints(cuts.z_p, cuts.y_mask, cuts.z))


def test_only_a_gpu_batches_the_front_by_default(voice: PiperVoice,
                                                 front_voice: PiperVoice) -> None:
    assert not voice.batches_fronts  # on the CPU the front runs whole, per sentence
    assert front_voice.batches_fronts and front_voice._front is None


def test_a_batch_of_sentences_gets_each_sentence_its_own_latent(
        voice: PiperVoice, front_voice: PiperVoice) -> None:
    ids = [voice.phoneme_ids(text) for text in SENTENCES]
    alone = [voice.encode(row) for row in ids]
    together = front_voice.encode_batch(ids)
    for one, other in zip(alone, together, strict=True):
        assert other.frames == one.frames
        assert other.durations is not None and one.durations is not None
        assert other.durations.tolist() == one.durations.tolist()
        assert isinstance(one.state, Prior) and isinstance(other.state, Prior)
        assert other.state.z_p.shape == one.state.z_p.shape
        assert np.abs(other.state.z_p - one.state.z_p).max() <= 1e-4  # padding: rounding only
        assert np.array_equal(other.state.y_mask, one.state.y_mask)
    # And what a listener hears: the same audio, window by window.
    latent, same = alone[1], together[1]
    heard = voice.decode(latent, 0, latent.frames)
    assert np.abs(front_voice.decode(same, 0, same.frames) - heard).max() <= 1e-3


def test_a_batch_runs_once_on_a_padded_length_and_a_power_of_two_of_rows(
        voice: PiperVoice, front_voice: PiperVoice, monkeypatch: pytest.MonkeyPatch) -> None:
    shapes: list[tuple[int, ...]] = []
    engine = front_voice._batched
    assert engine is not None
    inner = engine._run

    def recording(outputs: list[str], feeds: dict[str, np.ndarray], options: Any) -> Any:
        shapes.append(feeds["input"].shape)
        return inner(outputs, feeds, options)

    monkeypatch.setattr(engine, "_run", recording)
    ids = [voice.phoneme_ids(text) for text in SENTENCES[:3]]
    front_voice.encode_batch(ids)
    longest = max(len(row) for row in ids)
    assert shapes == [(4, batched.padded_length(longest))]
    assert batched.padded_length(longest) in batched.PRIOR_LENGTHS
    assert [batched.padded_length(n) for n in (1, 64, 65, 700, 800)] == [64, 64, 128, 800, 800]
    assert [batched.row_count(n) for n in (1, 2, 3, 5, 64)] == [1, 2, 4, 8, 64]
    with pytest.raises(ValueError):
        batched.padded_length(801)
    # A longer sentence runs in pieces of at most MAX_FRONT_IDS: the last length takes any.
    assert batched.PRIOR_LENGTHS[-1] == piper.MAX_FRONT_IDS


def test_a_sentence_too_long_for_one_run_joins_its_pieces_inside_a_batch(
        voice: PiperVoice, front_voice: PiperVoice, monkeypatch: pytest.MonkeyPatch) -> None:
    long_ids = voice.phoneme_ids(SENTENCES[4])
    short_ids = voice.phoneme_ids(SENTENCES[0])
    monkeypatch.setattr(piper, "MAX_FRONT_IDS", 64)  # the long sentence runs in pieces
    alone = voice.encode(long_ids)
    long_latent, short_latent = front_voice.encode_batch([long_ids, short_ids])
    assert long_latent.frames == alone.frames
    assert isinstance(long_latent.state, Prior) and isinstance(alone.state, Prior)
    assert np.abs(long_latent.state.z_p - alone.state.z_p).max() <= 1e-4
    assert short_latent.frames == voice.encode(short_ids).frames


def test_the_noise_is_drawn_as_the_graph_draws_it() -> None:
    """z_p = each id's column repeated for its frames, plus randn x exp(log scale) x
    noise_scale; a row of no frames is one frame of unit noise (Piper's clamp)."""
    rng = np.random.default_rng(7)
    mean = np.array([[1.0, -1.0], [5.0, 2.0]], dtype=np.float32)  # 2 ids, 2 channels
    log_scale = np.log(np.array([[0.5, 2.0], [1.0, 1.0]], dtype=np.float32))
    z_p, y_mask = batched.expand(mean, log_scale, np.array([3, 1]), 0.0, rng)
    assert z_p.tolist() == [[[1, 1, 1, 5], [-1, -1, -1, 2]]]
    assert y_mask.tolist() == [[[1, 1, 1, 1]]]
    frames = 20_000
    z_p, _ = batched.expand(mean[:1], log_scale[:1], np.array([frames]), 0.667, rng)
    noise = (z_p[0] - mean[0][:, None]) / (np.array([[0.5], [2.0]]) * 0.667)
    assert np.abs(noise.mean(axis=1)).max() < 0.05
    assert np.abs(noise.std(axis=1) - 1.0).max() < 0.05
    empty, mask = batched.expand(mean, log_scale, np.array([0, 0]), 0.0, rng)
    assert empty.shape == (1, 2, 1) and mask.shape == (1, 1, 1) and not empty.any()


def test_a_batched_front_voice_still_synthesizes_whole_sentences(
        voice: PiperVoice, front_voice: PiperVoice) -> None:
    for text in SENTENCES[:2]:
        whole = voice.synthesize(text)
        same = front_voice.synthesize(text)
        assert len(same) == len(whole)
        assert np.abs(same - whole).max() <= 1e-3
