"""What stays float: the ignored scope, resolved on the ONNX graph or the OpenVINO IR.

The box decode is found by structure, not by node names (the exporter numbers
its nodes and onnxslim renames them): every node *after the last convolutions*
(a Conv ancestor, no Conv descendant) is post-head arithmetic: the DFL
softmax-expectation, the sigmoid, the anchor add/subtract and the output concat.
DFL's softmax expectation is sensitive to INT8 rounding, and NNCF's own
YOLOv8 example keeps the same part float.

Convolutions are named by *layer*: their weight's name without ``.weight``, i.e. the
PyTorch module path (``head.cls_preds.0``, ``neck.fuse_p4.conv3.conv``), which
survives export and conversion, so patterns and the accuracy-aware steps speak the
model's own language.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from yoloslim.compress.quant_config import DECODE, HEAD_PREDS
from yoloslim.errors import ConfigError

__all__ = ["GraphView", "Scope", "graph_from_onnx", "graph_from_openvino", "resolve_scope"]

_CONV = {"Conv", "Convolution", "GroupConvolution", "ConvInteger", "QLinearConv"}
_SKIP = {"Constant", "Result", "Parameter"}


@dataclass
class GraphView:
    """A backend-neutral view of a model graph.

    Attributes:
        types: node name -> op type, in topological order.
        preds: node name -> producer node names (data inputs, constants excluded).
        layers: conv node name -> layer name (module path of its weight).
        biases: the Adds that carry a conv's bias (OpenVINO splits a conv with a bias into
            ``NAME/WithoutBiases`` and an Add named ``NAME``): part of the conv, not of the
            decode after it.
    """

    types: dict[str, str]
    preds: dict[str, list[str]]
    layers: dict[str, str] = field(default_factory=dict)
    biases: set[str] = field(default_factory=set)

    def succs(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {n: [] for n in self.types}
        for n, ps in self.preds.items():
            for p in ps:
                out.setdefault(p, []).append(n)
        return out

    def convs(self) -> list[str]:
        return [n for n, t in self.types.items() if t in _CONV]

    def post_head(self) -> list[str]:
        """Nodes with a Conv ancestor and no Conv descendant (the decode), convs excluded."""
        succ = self.succs()
        order = list(self.types)
        below_conv: dict[str, bool] = {}
        for n in reversed(order):  # has a conv strictly downstream
            below_conv[n] = any(self.types[s] in _CONV or below_conv.get(s, False) for s in succ[n])
        above_conv: dict[str, bool] = {}
        for n in order:  # has a conv upstream (or is one)
            above_conv[n] = self.types[n] in _CONV or any(
                above_conv.get(p, False) for p in self.preds[n]
            )
        return [
            n
            for n in order
            if above_conv[n]
            and not below_conv[n]
            and self.types[n] not in _CONV
            and self.types[n] not in _SKIP
            and n not in self.biases
        ]

    def head_preds(self) -> list[str]:
        """The last convolutions: convs with no conv downstream."""
        succ = self.succs()
        last = []
        for c in self.convs():
            stack, seen, hit = list(succ[c]), set(), False
            while stack and not hit:
                n = stack.pop()
                if n in seen:
                    continue
                seen.add(n)
                hit = self.types[n] in _CONV
                stack.extend(succ.get(n, []))
            if not hit:
                last.append(c)
        return last


@dataclass
class Scope:
    """A resolved ignored scope.

    Attributes:
        nodes: graph node names kept float (for NNCF / ONNX Runtime exclusion lists).
        layers: layer names (module paths) of the convs among them.
        matches: pattern -> number of nodes it matched.
    """

    nodes: list[str]
    layers: list[str]
    matches: dict[str, int]


def resolve_scope(view: GraphView, patterns: Iterable[str]) -> Scope:
    """Nodes matched by ``patterns``; a pattern that matches nothing raises ConfigError."""
    chosen: dict[str, None] = {}
    matches: dict[str, int] = {}
    for p in patterns:
        if p == DECODE:
            hit = view.post_head()
        elif p == HEAD_PREDS:
            hit = view.head_preds()
        else:
            rx = re.compile(p)
            hit = [
                n
                for n in view.types
                if view.types[n] not in _SKIP
                and (rx.search(n) or (n in view.layers and rx.search(view.layers[n])))
            ]
        if not hit:
            # the command line's --ignore none is a word; here it is a regex like any other
            hint = "; to quantize everything give ignored_scope: []" if p == "none" else ""
            raise ConfigError(
                f"ignored_scope pattern {p!r} matches no node or layer of the model "
                f"(layers look like {sorted(view.layers.values())[:3]}){hint}"
            )
        matches[p] = len(hit)
        chosen.update(dict.fromkeys(hit))
    nodes = list(chosen)
    layers = [view.layers[n] for n in nodes if n in view.layers]
    return Scope(nodes, layers, matches)


def graph_from_onnx(proto) -> GraphView:
    """View of an ``onnx.ModelProto`` (node names must be unique, as onnxslim leaves them)."""
    inits = {i.name for i in proto.graph.initializer}
    producer: dict[str, str] = {}
    types: dict[str, str] = {}
    preds: dict[str, list[str]] = {}
    layers: dict[str, str] = {}
    for k, node in enumerate(proto.graph.node):
        name = node.name or f"{node.op_type}_{k}"
        types[name] = node.op_type
        preds[name] = [producer[t] for t in node.input if t in producer]
        for t in node.output:
            producer[t] = name
        if node.op_type in _CONV and len(node.input) > 1:
            w = node.input[1]
            if w in inits:
                layers[name] = _layer_name(w)
    return GraphView(types, preds, layers)


def graph_from_openvino(model) -> GraphView:
    """View of an ``openvino.Model`` (friendly names, as NNCF's IgnoredScope uses)."""
    types: dict[str, str] = {}
    preds: dict[str, list[str]] = {}
    layers: dict[str, str] = {}
    two_inputs: list[str] = []  # Adds of two inputs: a conv's bias among them
    for op in model.get_ordered_ops():
        t = op.get_type_name()
        if t == "Constant":
            continue
        name = op.get_friendly_name()
        types[name] = t
        preds[name] = [
            op.input_value(i).get_node().get_friendly_name()
            for i in range(op.get_input_size())
            if op.input_value(i).get_node().get_type_name() != "Constant"
        ]
        if t == "Add" and op.get_input_size() == 2:
            two_inputs.append(name)
        if t in _CONV:
            w = _weight_constant(op)
            if w is not None:
                layers[name] = _layer_name(w.get_friendly_name())
    for n in types:  # drop edges from folded-away weight subgraphs (Convert, FQ on constants)
        preds[n] = [p for p in preds[n] if p in types]
    # a conv's bias: an Add of the conv's output and a constant (folded, or ops on constants)
    constant = {n for n in types if not preds[n] and types[n] != "Parameter"}
    biases = set()
    for n in two_inputs:
        data = [p for p in preds[n] if p not in constant]
        if len(data) == 1 and types[data[0]] in _CONV:
            biases.add(n)
    return GraphView(types, preds, layers, biases)


def _weight_constant(conv):
    """The Constant behind a conv's weight input (through Convert/FakeQuantize/Multiply)."""
    node = conv.input_value(1).get_node()
    for _ in range(4):
        if node.get_type_name() == "Constant":
            return node
        if node.get_input_size() == 0:
            return None
        node = node.input_value(0).get_node()
    return None


def _layer_name(weight: str) -> str:
    return re.sub(r"(\.weight)?(_quantized)?$", "", weight)
