"""Split a Piper (VITS) ONNX graph into front, flow and decoder, found from its structure.

A VITS graph runs, for one sentence:

- front: text encoder + stochastic duration predictor -> the prior sample ``z_p`` (the mean plus
  scaled noise, [B, C, T]) and the frame mask ``y_mask`` ([B, 1, T]). T, the sentence's length
  in frames, is fixed here, before any audio exists.
- flow: the reverse normalizing flow, ``z = flow(z_p, y_mask) * y_mask`` ([B, C, T]).
- decoder: HiFi-GAN, ``z`` -> audio (hop samples per frame).

Flow and decoder are stacks of convolutions, so a window of frames needs only a margin of
context around it: that is what lets a sentence stream inside itself.

The cut points are found from the data-flow graph, not from tensor names (an export with other
names, or another VITS variant, is handled the same way or refused):

- ``z`` is the earliest tensor that every path from the text inputs to the audio passes through
  (the first dominator of the output): the decoder depends on the sentence only through it.
  It must feed a Conv (HiFi-GAN's ``conv_pre``).
- ``y_mask`` is the operand of ``z``'s Mul that carries fewer noise sources; ``z_p`` is the
  earliest tensor that dominates ``z`` once ``y_mask`` is cut off, and descends from the noise
  that ``y_mask`` does not (the prior's noise, not the duration predictor's). Sampling that
  noise in the front pass is what makes every decode window of one sentence deterministic.

The front also gives each phoneme id's length in frames, for word timestamps: ``durations``
is the output of the ``Ceil`` whose sum (``ReduceSum`` -> ``Clip``: Piper's ``y_lengths``) the
frame mask ``y_mask`` is built from: the duration predictor's output, rounded up, which fixes
the sentence's length. A graph without it still splits (its word times are then estimated).

The front can itself be cut once more, for a GPU (``PriorCut``): ``z_p`` is the phonemes' prior
spread over frames by the durations, plus noise,
``z_p = expand(m_p) + randn * exp(expand(logs_p)) * noise_scale``, where ``expand`` repeats each
phoneme's column for its frames (VITS's monotonic path, a MatMul with a 0/1 matrix). The
``prior`` part (``prior_part``) stops before the expansion: its tensors are all phoneme-long,
so sentences padded to a few lengths run in batches of fixed shapes, and the expansion and the
noise are numpy's (engine/piper/front.py). ``m_p`` and ``logs_p`` are the inputs of the two
MatMuls on ``z_p``'s paths that do not descend from the durations; ``logs_p``'s passes through
an ``Exp``, and the noise is scaled by ``scales[0]``. A graph that does not fit has no prior
part; its front runs whole.

Each part is then extracted with ``onnx.utils.Extractor`` and checked to need no tensor from
another part. A graph that does not fit raises ``NotSplittable`` with the reason, and the voice
falls back to whole-sentence synthesis.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

TEXT_INPUTS = ("input", "input_lengths", "scales")
AUDIO_OUTPUT = "output"
_NOISE_OPS = frozenset({"RandomNormalLike", "RandomNormal"})
_SOURCE = "\x00source"  # virtual root of the dominator tree


class NotSplittable(Exception):  # a reason, not a failure: the voice still synthesizes
    """The graph does not have the front / flow / decoder structure we can cut."""


@dataclass(frozen=True)
class CutPoints:
    """Tensor names at the boundaries between the three parts."""

    z_p: str  # flow input: the prior sample after the noise add, [B, C, T]
    y_mask: str  # flow input: the frame mask, [B, 1, T]
    z: str  # decoder input: the flow's output times the mask, [B, C, T]
    durations: str | None = None  # front output: frames per phoneme id, [B, 1, ids]


@dataclass(frozen=True)
class PriorCut:
    """The front's phoneme-long outputs, before the expansion over frames (``z_p``'s inputs)."""

    mean: str  # m_p transposed, [B, ids, C]
    log_scale: str  # logs_p transposed, [B, ids, C]
    durations: str  # frames per phoneme id (ceil), [B, 1, ids]


@dataclass(frozen=True)
class SplitGraph:
    """Serialized parts, ready for ``ort.InferenceSession``; inputs listed in feed order."""

    cuts: CutPoints
    front: bytes  # TEXT_INPUTS (+ speaker inputs) -> z_p, y_mask (, durations)
    flow: bytes  # z_p, y_mask (+ speaker inputs) -> z
    decoder: bytes  # z (+ speaker inputs) -> output
    front_inputs: tuple[str, ...]
    flow_inputs: tuple[str, ...]
    decoder_inputs: tuple[str, ...]
    hop_samples: int | None  # audio samples per frame: the decoder's upsampling strides
    prior_cut: PriorCut | None = None  # None: the front runs whole (see ``prior_part``)


class _Dominators:
    """Immediate dominators of every tensor reachable from ``sources``.

    The graph is a DAG whose nodes ONNX stores in topological order, so one pass suffices:
    a vertex's immediate dominator is the nearest common dominator of its predecessors.
    Op nodes are vertices too (``#i``), so that a node with several inputs joins them.
    """

    def __init__(self, nodes: Sequence[Any], sources: Iterable[str],
                 cut: frozenset[str] = frozenset()) -> None:
        self.idom: dict[str, str] = {}
        self.depth: dict[str, int] = {_SOURCE: 0}
        for name in sources:
            self.idom[name] = _SOURCE
            self.depth[name] = 1
        for index, node in enumerate(nodes):
            preds = [name for name in node.input if name in self.idom and name not in cut]
            if not preds:
                continue
            dom = preds[0]
            for name in preds[1:]:
                dom = self._common(dom, name)
            vertex = f"#{index}"
            self.idom[vertex] = dom
            self.depth[vertex] = self.depth[dom] + 1
            for name in node.output:
                if name:
                    self.idom[name] = vertex
                    self.depth[name] = self.depth[vertex] + 1

    def _common(self, a: str, b: str) -> str:
        while a != b:
            if self.depth[a] >= self.depth[b]:
                a = self.idom[a]
            else:
                b = self.idom[b]
        return a

    def chain(self, target: str) -> list[str]:
        """Tensors that dominate ``target``, earliest first (op vertices left out)."""
        if target not in self.idom:
            return []
        found = []
        vertex = self.idom[target]
        while vertex != _SOURCE:
            if not vertex.startswith("#"):
                found.append(vertex)
            vertex = self.idom[vertex]
        return found[::-1]


def _ancestor_ops(nodes: Sequence[Any], producer: dict[str, int], target: str) -> set[int]:
    """Indexes of every node that ``target`` depends on."""
    seen: set[int] = set()
    stack = [target]
    while stack:
        index = producer.get(stack.pop())
        if index is None or index in seen:
            continue
        seen.add(index)
        stack.extend(name for name in nodes[index].input if name)
    return seen


def find_cut_points(graph: Any) -> CutPoints:
    """The z_p / y_mask / z boundaries of a VITS graph; NotSplittable when it has none."""
    nodes = list(graph.node)
    input_names = {i.name for i in graph.input}
    if not set(TEXT_INPUTS) <= input_names or AUDIO_OUTPUT not in {o.name for o in graph.output}:
        raise NotSplittable("inputs/outputs are not Piper's")
    producer = {name: i for i, node in enumerate(nodes) for name in node.output if name}
    consumers: dict[str, list[Any]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    # Speaker ids (multi-speaker voices) feed every part; they are not a path through which
    # the sentence reaches the audio, so they are left out of the sources.
    dominators = _Dominators(nodes, TEXT_INPUTS)
    z = next((name for name in dominators.chain(AUDIO_OUTPUT)
              if any(c.op_type == "Conv" for c in consumers.get(name, []))), None)
    if z is None or z in input_names:
        raise NotSplittable("no single tensor between the flow and a decoder Conv")
    z_node = nodes[producer[z]]
    if z_node.op_type != "Mul" or len(z_node.input) != 2:
        raise NotSplittable(f"decoder input {z} is not a masked flow output (Mul)")

    def noise_of(name: str) -> set[int]:
        return {i for i in _ancestor_ops(nodes, producer, name)
                if nodes[i].op_type in _NOISE_OPS}

    first, second = z_node.input
    noise_first, noise_second = noise_of(first), noise_of(second)
    if noise_second < noise_first:
        flow_out, y_mask, prior_noise = first, second, noise_first - noise_second
    elif noise_first < noise_second:
        flow_out, y_mask, prior_noise = second, first, noise_second - noise_first
    else:
        raise NotSplittable("cannot tell the frame mask from the flow output")
    del flow_out

    # With the mask cut off, the sentence reaches z only through the flow's other input.
    without_mask = _Dominators(nodes, TEXT_INPUTS, cut=frozenset({y_mask}))
    z_p = next((name for name in without_mask.chain(z)
                if noise_of(name) & prior_noise), None)
    if z_p is None:
        raise NotSplittable("no prior sample (noise add) dominating the flow")
    mask_ops = _ancestor_ops(nodes, producer, y_mask)
    durations = next((name for name in rounded_durations(nodes, consumers)
                      if producer[name] in mask_ops), None)
    return CutPoints(z_p=z_p, y_mask=y_mask, z=z, durations=durations)


_SHAPE_OPS = frozenset({"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity"})


def find_prior_cut(graph: Any, cuts: CutPoints) -> PriorCut:
    """Where ``z_p`` is made from phoneme-long tensors (module docstring); NotSplittable when
    the front does not have VITS's ``m_p + randn * exp(logs_p) * scales[0]`` form."""
    import onnx.numpy_helper

    if cuts.durations is None:
        raise NotSplittable("no durations: nothing to spread a prior over frames with")
    nodes = list(graph.node)
    producer = {name: i for i, node in enumerate(nodes) for name in node.output if name}
    constants = {t.name: t for t in graph.initializer}
    constants |= {node.output[0]: attr.t for node in nodes if node.op_type == "Constant"
                  for attr in node.attribute if attr.name == "value"}
    duration_op = producer[cuts.durations]

    def node_of(name: str) -> Any:
        index = producer.get(name)
        return None if index is None else nodes[index]

    def phoneme_input(name: str) -> str:
        """Through shape-only ops to a MatMul: its input that does not come from durations."""
        node = node_of(name)
        while node is not None and node.op_type in _SHAPE_OPS:
            node = node_of(node.input[0])
        if node is None or node.op_type != "MatMul":
            raise NotSplittable(f"{name} is not an expansion over frames (MatMul)")
        free = [i for i in node.input
                if duration_op not in _ancestor_ops(nodes, producer, i)]
        if len(free) != 1:
            raise NotSplittable(f"{node.name} does not expand one phoneme-long tensor")
        return str(free[0])

    add = node_of(cuts.z_p)
    if add is None or add.op_type != "Add" or len(add.input) != 2:
        raise NotSplittable("z_p is not a mean plus noise (Add)")
    # Both terms descend from the duration predictor's noise; the noise term adds the prior's.
    first, second = ({i for i in _ancestor_ops(nodes, producer, name)
                      if nodes[i].op_type in _NOISE_OPS} for name in add.input)
    if not (first < second or second < first):
        raise NotSplittable("z_p's noise term not found")
    mean_term, noise = add.input if first < second else add.input[::-1]
    mean = phoneme_input(mean_term)
    # The noise term is a product: its factors are the leaves of a tree of Muls.
    factors: list[Any] = []
    stack = [noise]
    while stack:
        node = node_of(stack.pop())
        if node is not None and node.op_type == "Mul":
            stack.extend(node.input)
        else:
            factors.append(node)
    exps = [node for node in factors if node is not None and node.op_type == "Exp"]
    scales = [node for node in factors
              if node is not None and node.op_type == "Gather" and node.input[0] == "scales"]
    draws = [node for node in factors if node is not None and node.op_type in _NOISE_OPS]
    if len(factors) != 3 or len(exps) != 1 or len(scales) != 1 or len(draws) != 1:
        raise NotSplittable("z_p's noise is not randn * exp(logs_p) * scales[i]")
    index = constants.get(scales[0].input[1])
    if index is None or onnx.numpy_helper.to_array(index).reshape(-1).tolist() != [0]:
        raise NotSplittable("z_p's noise is not scaled by scales[0] (noise_scale)")
    return PriorCut(mean=mean, log_scale=phoneme_input(exps[0].input[0]),
                    durations=cuts.durations)


def rounded_durations(nodes: Sequence[Any], consumers: dict[str, list[Any]]) -> list[str]:
    """Outputs of every ``Ceil`` summed by a ``ReduceSum`` that feeds a ``Clip``: in Piper's
    export, ``w_ceil`` of ``y_lengths = clamp_min(sum(ceil(w)), 1)``."""
    found = []
    for node in nodes:
        if node.op_type != "Ceil":
            continue
        for reduce in consumers.get(node.output[0], []):
            if reduce.op_type == "ReduceSum" and any(
                    clip.op_type == "Clip" for clip in consumers.get(reduce.output[0], [])):
                found.append(str(node.output[0]))
                break
    return found


def _free_inputs(part: Any) -> set[str]:
    """Tensors a part's nodes read that nothing in the part provides."""
    provided = {i.name for i in part.graph.input} | {t.name for t in part.graph.initializer}
    provided |= {name for node in part.graph.node for name in node.output}
    return {name for node in part.graph.node for name in node.input
            if name and name not in provided}


def _extract(extractor: Any, inputs: Sequence[str], speaker_inputs: Sequence[str],
             outputs: Sequence[str]) -> tuple[bytes, tuple[str, ...]]:
    part = extractor.extract_model([*inputs, *speaker_inputs], list(outputs))
    used = {name for node in part.graph.node for name in node.input}
    # A speaker input the part never reads stays out of its feeds.
    for value in list(part.graph.input):
        if value.name in speaker_inputs and value.name not in used:
            part.graph.input.remove(value)
    free = _free_inputs(part)
    if free:
        raise NotSplittable(f"part {list(inputs)} -> {list(outputs)} also needs {sorted(free)}")
    return part.SerializeToString(), tuple(i.name for i in part.graph.input)


def split_graph(model: Any) -> SplitGraph:
    """Cut a loaded ``onnx.ModelProto`` into front, flow and decoder."""
    import onnx

    cuts = find_cut_points(model.graph)
    # The extractor needs a type for every boundary tensor; shape inference supplies them.
    inferred = onnx.shape_inference.infer_shapes(model)
    known = {v.name for v in inferred.graph.value_info}
    missing = {cuts.z_p, cuts.y_mask, cuts.z} - known
    if cuts.durations is not None and cuts.durations not in known:
        cuts = CutPoints(cuts.z_p, cuts.y_mask, cuts.z)  # no type: estimate word times
    if missing:
        raise NotSplittable(f"no inferred type for {sorted(missing)}")
    extractor = onnx.utils.Extractor(inferred)
    speakers = [i.name for i in model.graph.input if i.name not in TEXT_INPUTS]
    front_outputs = [cuts.z_p, cuts.y_mask] + ([cuts.durations] if cuts.durations else [])
    front, front_inputs = _extract(extractor, TEXT_INPUTS, speakers, front_outputs)
    flow, flow_inputs = _extract(extractor, [cuts.z_p, cuts.y_mask], speakers, [cuts.z])
    decoder, decoder_inputs = _extract(extractor, [cuts.z], speakers, [AUDIO_OUTPUT])
    try:
        prior_cut: PriorCut | None = find_prior_cut(model.graph, cuts)
    except NotSplittable:
        prior_cut = None
    return SplitGraph(cuts, front, flow, decoder, front_inputs, flow_inputs, decoder_inputs,
                      _upsampling(onnx.load_from_string(decoder).graph), prior_cut)


def prior_part(split: SplitGraph) -> tuple[bytes, tuple[str, ...]]:
    """The front up to the prior's phoneme-long tensors: TEXT_INPUTS (+ speaker inputs) ->
    mean, log_scale, durations (``PriorCut``), with its inputs in feed order. Cut from the front
    on demand (only a GPU runs it: engine/piper/front.py); NotSplittable when it has no cut."""
    import onnx

    cut = split.prior_cut
    if cut is None:
        raise NotSplittable("the front has no prior cut")
    front = onnx.shape_inference.infer_shapes(onnx.load_from_string(split.front))
    known = {v.name for v in front.graph.value_info} | {o.name for o in front.graph.output}
    if {cut.mean, cut.log_scale, cut.durations} - known:
        raise NotSplittable("no inferred type for the prior's tensors")
    speakers = [i.name for i in front.graph.input if i.name not in TEXT_INPUTS]
    return _extract(onnx.utils.Extractor(front), TEXT_INPUTS, speakers,
                    [cut.mean, cut.log_scale, cut.durations])


def _upsampling(graph: Any) -> int | None:
    """Product of the ConvTranspose strides (HiFi-GAN: 8 * 8 * 2 * 2 = 256), or None."""
    hop = 1
    found = False
    for node in graph.node:
        if node.op_type == "ConvTranspose":
            for attribute in node.attribute:
                if attribute.name == "strides":
                    for stride in attribute.ints:
                        hop *= int(stride)
                    found = True
    return hop if found else None
