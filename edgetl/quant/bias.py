"""Bias correction of a converted PT2E int8 model: shift each layer's float bias so that its mean output per channel
matches the float model's on the calibration images.

Quantization moves the mean of a layer's output: rounding a layer's weights to int8 biases its sum, and the
activation quantization upstream adds its own share. A per-channel shift of the output is what the float bias can
absorb exactly. This is the empirical bias correction NNCF applies after its PTQ ("fast bias correction"), written
for the PT2E graph edgetl owns: the float reference is the same converted graph with every activation
quantize/dequantize pair removed and every weight back in float, so both graphs share their node names and each
layer's statistic is compared with its own.

The correction is sequential, in graph order: each layer's shift is measured on inputs that already carry the
corrections upstream of it, so a shift corrected once is not corrected again downstream. That takes one float pass
and one int8 pass over the calibration batches: the int8 pass runs the graph node by node over all batches at once,
and a corrected layer's outputs are shifted by the same per-channel amount as its bias (a bias adds linearly).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from edgetl.quant.mixed import _fetch, _is_dequantize, _layer_nodes, quantized_layers, revert_layers

if TYPE_CHECKING:
    import torch
    from torch.fx import GraphModule


def float_reference(converted: GraphModule, weights: dict[str, torch.Tensor]) -> GraphModule:
    """``converted`` computing in float: the activation quantize/dequantize pairs removed, every weight in float."""
    model = revert_layers(converted, weights, quantized_layers(converted))
    for node in list(model.graph.nodes):
        if node.op != "call_function" or not _is_dequantize(node) or "per_tensor" not in str(node.target):
            continue
        source = node.args[0]
        if getattr(source, "op", "") == "call_function" and "quantize_per_tensor" in str(source.target):
            node.replace_all_uses_with(source.args[0])
    model.graph.eliminate_dead_code()
    model.recompile()
    return model


def _channel_means(model: GraphModule, names: set[str], batches: list[tuple[Any, ...]]) -> dict[str, torch.Tensor]:
    """Per-output-channel mean of each named layer node's output over ``batches`` (conv: dim 1; linear: last)."""
    import torch
    from torch.fx import Interpreter

    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    class Recorder(Interpreter):
        def run_node(self, n: Any) -> Any:
            out = super().run_node(n)
            if n.name in names:
                sums[n.name] = sums.get(n.name, 0) + _channel_sum(out)
                counts[n.name] = counts.get(n.name, 0) + out.numel() // out.shape[_channel_dim(out)]
            return out

    with torch.no_grad():
        for batch in batches:
            Recorder(model).run(*batch)
    return {name: sums[name] / counts[name] for name in sums}


def _channel_view(delta: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``delta`` (one value per output channel) shaped to broadcast over ``out`` (conv: dim 1; linear: last)."""
    shape = [1] * out.dim()
    shape[_channel_dim(out)] = -1
    return delta.reshape(shape).to(out.dtype)


def _channel_dim(out: torch.Tensor) -> int:
    return 1 if out.dim() == 4 else out.dim() - 1


def _channel_sum(out: torch.Tensor) -> torch.Tensor:
    """Sum per output channel, accumulated in float64 (no float64 copy of the activation)."""
    import torch

    dim = _channel_dim(out)
    return out.sum(dim=[d for d in range(out.dim()) if d != dim], dtype=torch.float64)


def _channel_mean(outs: list[torch.Tensor]) -> torch.Tensor:
    dim = _channel_dim(outs[0])
    total: Any = sum(_channel_sum(o) for o in outs)
    return total / sum(o.numel() // o.shape[dim] for o in outs)  # type: ignore[no-any-return]


def _bias_constant(node: Any) -> Any:
    """The get_attr node of a layer node's bias, or None (no bias, or a bias that is computed)."""
    bias = node.args[2] if len(node.args) > 2 else None
    return bias if getattr(bias, "op", "") == "get_attr" else None


def _fusable_quantize(dq: Any) -> Any:
    """The activation quantize node that dequantize node ``dq`` reads, when the pair has constant parameters
    (it then runs as one fused fake-quantize); else None."""
    import torch

    q: Any = dq.args[0] if dq.args else None
    if (_is_dequantize(dq) and "per_tensor" in str(dq.target) and getattr(q, "op", "") == "call_function"
            and "quantize_per_tensor" in str(q.target) and len(q.args) >= 5
            and not any(isinstance(a, torch.fx.Node) for a in q.args[1:5])):
        return q
    return None


def layer_biases(converted: GraphModule, names: set[str]) -> dict[str, torch.Tensor]:
    """A copy of the bias constant of each named layer node that has one."""
    return {node.name: _fetch(converted, str(_bias_constant(node).target)).detach().clone()
            for node in _layer_nodes(converted) if node.name in names and _bias_constant(node) is not None}


def correct_biases(converted: GraphModule, weights: dict[str, torch.Tensor],
                   batches: list[tuple[Any, ...]]) -> tuple[GraphModule, dict[str, Any]]:
    """A copy of ``converted`` whose quantized layers' biases absorb the mean output shift quantization causes.

    ``weights``: the layers' float weights (``edgetl.quant.mixed.float_weights``). Layers without a bias constant
    are left alone. Returns the model and a report: layers corrected, and the mean absolute shift each layer's
    bias took (its mean output's distance from the float model's, on inputs already corrected upstream).
    """
    import torch
    from torch.fx.node import map_arg

    model = copy.deepcopy(converted)
    layers = {n.name: n for n in _layer_nodes(model) if n.name in weights}
    biased = {name: _bias_constant(node) for name, node in layers.items() if _bias_constant(node) is not None}
    reference = _channel_means(float_reference(converted, weights), set(biased), batches)
    nodes = list(model.graph.nodes)
    position = {n: i for i, n in enumerate(nodes)}
    # an activation quantize -> dequantize pair with constant parameters runs as one fused fake-quantize of the
    # quantize's input (the same rounding, one pass instead of the decomposed ops' several)
    fused: dict[Any, Any] = {dq: q for dq in nodes if (q := _fusable_quantize(dq)) is not None}
    skipped = {q for q in fused.values() if all(u in fused for u in q.users)}
    last_use = {n: max((position[u] for u in n.users), default=i) for i, n in enumerate(nodes)}
    for dq, q in fused.items():  # the fused pair reads the quantize's input: keep it alive until the dequantize
        source = q.args[0]
        last_use[source] = max(last_use[source], position[dq])
    env: dict[Any, list[Any]] = {}
    placeholders = iter(range(len(batches[0])))
    shifts = []
    with torch.no_grad():
        for i, node in enumerate(nodes):
            if node.op == "output":
                break
            if node.op == "placeholder":
                k = next(placeholders)
                env[node] = [batch[k] for batch in batches]
            elif node.op == "get_attr":
                env[node] = [_fetch(model, str(node.target))] * len(batches)
            elif node in skipped:
                pass
            elif node in fused:
                q = fused[node]
                scale, zero, low, high = q.args[1:5]
                env[node] = [torch.fake_quantize_per_tensor_affine(x, float(scale), int(zero), int(low), int(high))
                             for x in env[q.args[0]]]
            else:
                fn = node.target if node.op == "call_function" else (
                    getattr(model, str(node.target)) if node.op == "call_module" else None)
                if fn is None:
                    raise ValueError(f"bias correction cannot run graph node {node.name} ({node.op})")
                outs = []
                for b in range(len(batches)):
                    def value(n: Any, b: int = b) -> Any:
                        return env[n][b]

                    outs.append(fn(*map_arg(node.args, value), **map_arg(node.kwargs, value)))
                if node.name in biased:
                    delta = reference[node.name] - _channel_mean(outs)
                    bias = _fetch(model, str(biased[node.name].target))
                    bias += delta.to(bias.dtype)
                    outs = [o + _channel_view(delta, o) for o in outs]
                    shifts.append(float(delta.abs().mean()))
                env[node] = outs
            for used in [*node.all_input_nodes, *(fused[node].all_input_nodes if node in fused else ())]:
                if last_use[used] <= i:
                    env.pop(used, None)
    return model, {"layers": len(biased), "skipped_without_bias": len(layers) - len(biased),
                   "mean_abs_shift": round(sum(shifts) / len(shifts), 6) if shifts else 0.0}
