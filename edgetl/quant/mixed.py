"""PT2E backend of the accuracy-aware fallback: revert chosen conv/linear layers of a converted int8 model to float.

A converted PT2E model computes every quantized layer from ``dequantize_per_channel(int8 weight)``. Reverting a
layer replaces that dequantized weight with the layer's float weight (BatchNorm folded, exactly as quantized), so
the layer computes in float; the activations around it keep their quantize/dequantize pairs, which the int8
neighbours need anyway (an int8 conv in ONNX Runtime is ``QLinearConv`` only with a quantized input and output).
The float weights come from the same calibrated model converted without folding the weight quantization
(``convert_pt2e(fold_quantize=False)``), where each weight is still a float constant under its quantize node.

One mechanism serves PTQ and QAT: both end in a converted model of this form.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from edgetl.quant.quantizer import _module_path, _ops
from edgetl.quant.sensitivity import Layer

if TYPE_CHECKING:
    import torch
    from torch.fx import GraphModule, Node


def _is_dequantize(node: Any) -> bool:
    return getattr(node, "op", "") == "call_function" and "dequantize" in str(node.target)


def _layer_nodes(model: GraphModule) -> list[Node]:
    ops = _ops()
    return [n for n in model.graph.nodes if n.op == "call_function" and n.target in ops["conv"] | ops["linear"]]


def quantized_layers(model: GraphModule) -> list[Layer]:
    """The conv/linear layers of a converted model whose weight is int8, in graph order (named by module path)."""
    ops = _ops()
    layers = []
    for node in _layer_nodes(model):
        if _is_dequantize(node.args[1]):
            kind = "linear" if node.target in ops["linear"] else "conv"
            layers.append(Layer(_module_path(node) or node.name, kind, node.name))
    return layers


def float_weights(prepared: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Each quantized layer's float weight (graph node name -> tensor), from a calibrated or trained prepared model.

    Converts a copy without folding the weight quantization, so that the weight is still a float constant.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    unfolded = convert_pt2e(copy.deepcopy(prepared), fold_quantize=False)
    weights = {}
    for node in _layer_nodes(unfolded):
        dq: Any = node.args[1]
        if not _is_dequantize(dq):
            continue
        q: Any = dq.args[0]
        source: Any = q.args[0] if getattr(q, "op", "") == "call_function" else None
        if source is not None and source.op == "get_attr":
            weights[node.name] = _fetch(unfolded, str(source.target)).detach().clone()
    return weights


def _fetch(model: torch.nn.Module, target: str) -> torch.Tensor:
    obj: Any = model
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


def revert_layers(converted: GraphModule, weights: dict[str, torch.Tensor], layers: list[Layer]) -> GraphModule:
    """A copy of ``converted`` in which ``layers`` compute with their float weights (everything else unchanged)."""
    model = copy.deepcopy(converted)
    by_name = {n.name: n for n in _layer_nodes(model)}
    for i, layer in enumerate(layers):
        node = by_name.get(layer.node)
        if node is None or layer.node not in weights:
            raise KeyError(f"layer {layer.name} ({layer.node}) is not a quantized layer of this model")
        attr = f"_edgetl_float_weight_{i}"
        model.register_buffer(attr, weights[layer.node].clone())
        with model.graph.inserting_before(node):
            getter = model.graph.get_attr(attr)
        weight: Any = node.args[1]
        node.replace_input_with(weight, getter)
    model.graph.eliminate_dead_code()
    model.recompile()
    return model


# --------------------------------------------------------------------------------------------------- the stage's glue
def check_mixed_precision(runtimes: list[tuple[str, str, tuple[str, ...]]], capabilities: dict[tuple[str, str],
                          frozenset[str]], where: str) -> None:
    """Refuse the fallback where a target runtime that runs int8 cannot run a float layer beside int8 ones.

    ``runtimes``: (runtime, device, precisions) of the target; ``capabilities``: what each runtime/device runs. A
    device without fp32 (an NPU) would run the plan's float layers in fp16 or split the graph across devices, so
    the accuracy the fallback validated would not be the one deployed.
    """
    from edgetl.errors import ConfigError

    for runtime, device, precisions in runtimes:
        if "int8" in precisions and "fp32" not in capabilities.get((runtime, device), frozenset()):
            raise ConfigError(f"{where}: {runtime} on {device} has no fp32, so it cannot run a mixed int8/float "
                              "plan (its float layers would run in another precision, or on another device)",
                              hint="turn quantize.fallback.enabled off for this target, or drop that runtime")


def accuracy_aware(converted: GraphModule, weights: dict[str, torch.Tensor], float_model: Any,
                   val_batches: list[Any], max_drop_points: float, cap: int, where: str,
                   log: Any = None) -> tuple[GraphModule, list[Layer], dict[str, Any]]:
    """Rank ``converted``'s layers on ``val_batches``, then revert the most sensitive until the budget holds.

    Returns the model to ship (with the chosen layers in float), those layers, and the report (sensitivity, steps).
    """
    import numpy as np
    import torch

    from edgetl.quant import sensitivity as method

    def logits_of(model: Any) -> list[np.ndarray]:
        with torch.inference_mode():
            return [np.asarray(model(*[torch.from_numpy(v) for v in inputs.values()]), dtype=np.float64)
                    for inputs, _ in val_batches]

    labels = [np.asarray(y) for _, y in val_batches]
    images = sum(len(y) for y in labels)
    fp32_logits = logits_of(float_model)

    def figures(logits: list[np.ndarray]) -> method.Evaluation:
        correct = sum(int((z.argmax(1) == y).sum()) for z, y in zip(logits, labels, strict=True))
        mse = sum(float(((z - f) ** 2).sum()) for z, f in zip(logits, fp32_logits, strict=True))
        return method.Evaluation(correct / max(1, images), mse / max(1, sum(z.size for z in logits)))

    fp32 = figures(fp32_logits)
    again = figures(logits_of(float_model))
    method.check_inputs(images, max_drop_points, cap, 100 * (fp32.accuracy - again.accuracy), where)
    layers = quantized_layers(converted)
    by_name = {layer.name: layer for layer in layers}
    cache: dict[frozenset[str], method.Evaluation] = {}

    def evaluate(names: frozenset[str]) -> method.Evaluation:
        if names not in cache:
            model = revert_layers(converted, weights, [by_name[n] for n in sorted(names)]) if names else converted
            cache[names] = figures(logits_of(model))
        return cache[names]

    base = evaluate(frozenset())
    drop = 100 * (fp32.accuracy - base.accuracy)
    if drop <= max_drop_points + 1e-9:
        sens = method.Sensitivity(base, [], images, None)
    else:
        if log is not None:
            log.info("int8 misses the %.2g-point budget by %.2f points on val (%d images): ranking %d layers",
                     max_drop_points, drop - max_drop_points, images, len(layers))
        sens = method.rank_layers(layers, evaluate, images)
    result = method.fallback(sens, evaluate, fp32.accuracy, max_drop_points, cap)
    best = min(result.steps, key=lambda s: (not s.within_budget, s.drop_points, len(s.float_layers)))
    if result.status == "budget met":
        best = result.steps[-1]
    chosen = [by_name[n] for n in best.float_layers]
    shipped = revert_layers(converted, weights, chosen) if chosen else converted
    if log is not None:
        log.info("accuracy fallback: %s", result.message)
    report = {"layers": len(layers), "convs": sum(la.kind == "conv" for la in layers),
              "val_images": images, "fp32_val_accuracy": fp32.accuracy,
              "sensitivity": sens.as_dict(), **result.as_dict(),
              "shipped_float_layers": [la.name for la in chosen], "shipped_val_accuracy": evaluate(
                  frozenset(la.name for la in chosen)).accuracy}
    return shipped, chosen, report
