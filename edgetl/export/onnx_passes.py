"""Exact graph rewrites on exported ONNX models.

``fold_pads``: TF-"same" padding (timm's ``Conv2dSame``, EfficientNet-Lite) exports as a float ``Pad`` in front of
each strided conv. ONNX ``Conv`` takes asymmetric ``pads``, so a zero ``Pad`` on the spatial axes folds into the
conv. It stays exact in int8 graphs too: ``Q(0) = zero_point`` and ``DQ(zero_point) = 0``, so zero padding commutes
with the Q/DQ pair between the Pad and the conv (and a Q/DQ pair whose parameters equal the preceding DQ's, as the
quantizer's shared pad spec makes them, is an exact identity and is dropped with the Pad).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx


def _constant_values(model: onnx.ModelProto) -> dict[str, Any]:
    """name -> NumPy value of every initializer and Constant node output."""
    from onnx import numpy_helper

    values: dict[str, Any] = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _attr(node: onnx.NodeProto, name: str) -> Any:
    from onnx import helper

    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return None


def _zero_spatial_pad(pad: onnx.NodeProto, values: dict[str, Any]) -> list[int] | None:
    """The spatial (begin..., end...) pads of a constant-zero Pad that leaves N and C alone, else None."""
    import numpy as np

    mode = _attr(pad, "mode")
    if mode not in (None, b"constant", "constant"):
        return None
    if len(pad.input) < 2 or pad.input[1] not in values:
        return None
    if len(pad.input) > 2 and pad.input[2]:
        fill = values.get(pad.input[2])
        if fill is None or np.any(np.asarray(fill) != 0):
            return None
    if len(pad.input) > 3 and pad.input[3]:
        return None  # explicit axes: rare; left alone rather than reinterpreted
    pads = [int(v) for v in np.asarray(values[pad.input[1]]).reshape(-1)]
    rank = len(pads) // 2
    if rank < 3 or len(pads) != 2 * rank or any(v < 0 for v in pads):
        return None
    begin, end = pads[:rank], pads[rank:]
    if begin[:2] != [0, 0] or end[:2] != [0, 0]:
        return None
    return begin[2:] + end[2:]


def _same_qparams(a: onnx.NodeProto, b: onnx.NodeProto, values: dict[str, Any]) -> bool:
    import numpy as np

    def params(node: onnx.NodeProto) -> list[Any] | None:
        names = list(node.input[1:3])
        if any(n not in values for n in names):
            return None
        return [np.asarray(values[n]) for n in names]

    pa, pb = params(a), params(b)
    if pa is None or pb is None or len(pa) != len(pb):
        return False
    return all(x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y) for x, y in zip(pa, pb, strict=True))


def fold_pads(model: onnx.ModelProto) -> int:
    """Fold zero ``Pad`` nodes into the ``Conv`` they feed (in place); returns how many were folded."""
    from onnx import helper

    values = _constant_values(model)
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}

    def sole_user(name: str) -> onnx.NodeProto | None:
        found = users.get(name, [])
        return found[0] if len(found) == 1 and name not in graph_outputs else None

    def only_feeds(name: str, node: onnx.NodeProto) -> bool:
        return sole_user(name) is node

    remove: list[onnx.NodeProto] = []
    rewired: list[onnx.NodeProto] = []
    folded = 0
    for conv in [n for n in graph.node if n.op_type == "Conv"]:
        if _attr(conv, "auto_pad") not in (None, b"NOTSET", "NOTSET"):
            continue
        first = producer.get(conv.input[0])
        q = dq = None
        if first is not None and first.op_type == "DequantizeLinear":
            dq = first
            q = producer.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear" or not only_feeds(dq.output[0], conv) \
                    or not only_feeds(q.output[0], dq):
                continue
            pad = producer.get(q.input[0])
            if pad is None or pad.op_type != "Pad" or not only_feeds(pad.output[0], q):
                continue
        elif first is not None and first.op_type == "Pad":
            pad = first
            if not only_feeds(pad.output[0], conv):
                continue
        else:
            continue
        if pad is None:
            continue
        spatial = _zero_spatial_pad(pad, values)
        if spatial is None:
            continue
        existing = _attr(conv, "pads") or [0] * len(spatial)
        new_pads = [int(a) + int(b) for a, b in zip(existing, spatial, strict=True)]
        for attr in list(conv.attribute):
            if attr.name == "pads":
                conv.attribute.remove(attr)
        conv.attribute.append(helper.make_attribute("pads", new_pads))
        source = pad.input[0]
        upstream = producer.get(source)
        if q is not None and dq is not None:
            if upstream is not None and upstream.op_type == "DequantizeLinear" and _same_qparams(upstream, q, values):
                conv.input[0] = source  # Q/DQ with the upstream DQ's own parameters: an exact identity
                remove += [pad, q, dq]
            else:
                q.input[0] = source
                remove.append(pad)
                rewired += [q, dq]
        else:
            conv.input[0] = source
            remove.append(pad)
        folded += 1
    for node in remove:
        graph.node.remove(node)
    # shapes recorded for the rewired tensors describe the padded size; drop them (runtimes re-infer them)
    stale = {name for node in [*remove, *rewired] for name in node.output}
    for info in [v for v in graph.value_info if v.name in stale]:
        graph.value_info.remove(info)
    return folded


# ``guard_float_layers``: a Conv/Gemm with a float weight behind a DequantizeLinear input is a layer the precision
# plan keeps in float (keep_first_fp/keep_last_fp, the accuracy fallback). ONNX Runtime's WeightBiasQuantization
# rewrite quantizes exactly such a layer's float weight (per tensor, int8) and then fuses it into QLinearConv /
# QGemm, so it would run in int8 after all (measured: ORT 1.32 on the tiny backbone, a reverted conv ran as
# QLinearConv and the accuracy it won in torch was lost). The rewrite only fires when input 0 comes straight from a
# DequantizeLinear; ``Max(x, x)`` between them is an exact identity that ORT does not remove, so the layer stays float.
# OpenVINO runs the same layers in f32 with or without it (measured).
GUARD_SUFFIX = "_float_guard"


def guard_float_layers(model: onnx.ModelProto) -> int:
    """Insert ``Max(x, x)`` between a DequantizeLinear and each float-weight Conv/Gemm it feeds; returns how many."""
    from onnx import helper

    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    guarded = 0
    for node in list(graph.node):
        if node.op_type not in ("Conv", "Gemm", "ConvTranspose") or len(node.input) < 2:
            continue
        source = producers.get(node.input[0])
        if node.input[1] not in initializers or source is None or source.op_type != "DequantizeLinear":
            continue
        guarded_input = f"{node.input[0]}_{node.name}{GUARD_SUFFIX}"
        guard = helper.make_node("Max", [node.input[0], node.input[0]], [guarded_input],
                                 name=f"{node.name}{GUARD_SUFFIX}")
        node.input[0] = guarded_input
        graph.node.insert(list(graph.node).index(node), guard)
        guarded += 1
    return guarded
