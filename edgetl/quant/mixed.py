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


def revert_layers(converted: GraphModule, weights: dict[str, torch.Tensor], layers: list[Layer],
                  biases: dict[str, torch.Tensor] | None = None) -> GraphModule:
    """A copy of ``converted`` in which ``layers`` compute with their float weights (everything else unchanged).

    ``biases``: a layer's bias as it was before bias correction (``edgetl.quant.bias``), which a reverted layer takes
    back: its correction made up for its own int8 weights, which it no longer has.
    """
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
        if biases and layer.node in biases and len(node.args) > 2 and node.args[2] is not None:
            model.register_buffer(f"{attr}_bias", biases[layer.node].clone())
            with model.graph.inserting_before(node):
                bias_getter = model.graph.get_attr(f"{attr}_bias")
            node.replace_input_with(node.args[2], bias_getter)  # type: ignore[arg-type]  # a Node: checked above
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
                   log: Any = None, *, rank_images: int | None = None, confirm_layers: int = 0,
                   latency: Any = None, max_latency_increase: float | None = None,
                   int8_logits: Any = None, scored_in: str = "torch reference quantized ops",
                   biases: dict[str, torch.Tensor] | None = None,
                   ) -> tuple[GraphModule, list[Layer], dict[str, Any]]:
    """Rank ``converted``'s layers on ``val_batches``, then revert the most sensitive until the budget holds.

    ``rank_images``: screen every layer on that many validation images (the ones where int8 is furthest from
    float, every image int8 flips first) and confirm the best ``confirm_layers`` on the whole split; None ranks every
    layer on the whole split. ``latency``: a callable ``(model) -> dict`` that measures a step's model
    (``edgetl.quant.judge.StepLatency``), for the step curve and ``max_latency_increase``. ``int8_logits``: a
    callable ``(model, batches) -> [logits per batch]`` that runs an int8 model where it ships (ONNX Runtime's
    int8 kernels: ``edgetl.quant.judge.ort_logits``); every whole-split evaluation (the int8 model, the confirmed
    layers, each fallback step, the budget decision) goes through it, while the screening on the subset stays in
    torch's reference ops (a proxy that only orders layers). None: torch for everything. ``scored_in`` names it.
    ``biases``: the layers' biases before bias correction, which a reverted layer takes back (``revert_layers``).
    Returns the model to ship (with the chosen layers in float), those layers, and the report (sensitivity, steps).
    """
    import numpy as np
    import torch

    from edgetl.quant import sensitivity as method

    def logits_of(model: Any, batches: list[Any]) -> list[np.ndarray]:
        with torch.inference_mode():
            return [np.asarray(model(*[torch.from_numpy(v) for v in inputs.values()]), dtype=np.float64)
                    for inputs, _ in batches]

    labels = [np.asarray(y) for _, y in val_batches]
    images = sum(len(y) for y in labels)
    fp32_logits = logits_of(float_model, val_batches)

    def figures(logits: list[np.ndarray], reference: list[np.ndarray], truth: list[np.ndarray]) -> method.Evaluation:
        n = sum(len(y) for y in truth)
        correct = sum(int((z.argmax(1) == y).sum()) for z, y in zip(logits, truth, strict=True))
        mse = sum(float(((z - f) ** 2).sum()) for z, f in zip(logits, reference, strict=True))
        return method.Evaluation(correct / max(1, n), mse / max(1, sum(z.size for z in logits)))

    fp32 = figures(fp32_logits, fp32_logits, labels)
    again = figures(logits_of(float_model, val_batches), fp32_logits, labels)
    method.check_inputs(images, max_drop_points, cap, 100 * (fp32.accuracy - again.accuracy), where,
                        max_latency_increase)
    layers = quantized_layers(converted)
    by_name = {layer.name: layer for layer in layers}
    cache: dict[tuple[str, frozenset[str]], method.Evaluation] = {}

    def model_with(names: frozenset[str]) -> Any:
        return revert_layers(converted, weights, [by_name[n] for n in sorted(names)], biases) if names else converted

    shipped_logits = int8_logits or logits_of

    def evaluate(names: frozenset[str]) -> method.Evaluation:
        if ("val", names) not in cache:
            cache[("val", names)] = figures(shipped_logits(model_with(names), val_batches), fp32_logits, labels)
        return cache[("val", names)]

    base_logits = shipped_logits(converted, val_batches)
    cache[("val", frozenset())] = base = figures(base_logits, fp32_logits, labels)
    drop = 100 * (fp32.accuracy - base.accuracy)
    screen_report: dict[str, Any] = {}
    if drop <= max_drop_points + 1e-9:
        sens = method.Sensitivity(base, [], images, None, method="not run")
    else:
        screen = None
        subset_size = 0
        if rank_images is not None and rank_images < images:
            subset, screen_report = _screening_subset(val_batches, base_logits, fp32_logits, rank_images)
            subset_size = sum(len(y) for _, y in subset)
            subset_fp32 = logits_of(float_model, subset)
            subset_labels = [np.asarray(y) for _, y in subset]

            def screen(names: frozenset[str]) -> method.Evaluation:
                return figures(logits_of(model_with(names), subset), subset_fp32, subset_labels)

        if log is not None:
            how = (f"screening them on {subset_size} val images, confirming the best {confirm_layers}"
                   if screen is not None else "one pass over val each")
            log.info("int8 misses the %.2g-point budget by %.2f points on val (%d images): ranking %d layers, %s",
                     max_drop_points, drop - max_drop_points, images, len(layers), how)
        sens = method.rank_layers(layers, evaluate, images, screen=screen, screen_images=subset_size,
                                  confirm=min(confirm_layers, len(layers)))
    step_latency = None
    if latency is not None:
        def step_latency(names: frozenset[str]) -> dict[str, Any]:
            return dict(latency(model_with(names)))

    result = method.fallback(sens, evaluate, fp32.accuracy, max_drop_points, cap, latency=step_latency,
                             max_latency_increase=max_latency_increase)
    allowed = [s for s in result.steps if not s.latency.get("over_cap")]
    best = min(allowed, key=lambda s: (not s.within_budget, s.drop_points, len(s.float_layers)))
    if result.status == "budget met":
        best = result.steps[-1]
    chosen = [by_name[n] for n in best.float_layers]
    shipped = model_with(frozenset(la.name for la in chosen))
    if log is not None:
        log.info("accuracy fallback: %s", result.message)
    report = {"layers": len(layers), "convs": sum(la.kind == "conv" for la in layers), "scored_in": scored_in,
              "val_images": images, "fp32_val_accuracy": fp32.accuracy,
              "sensitivity": {**sens.as_dict(), **({"screen": screen_report} if screen_report else {})},
              **result.as_dict(),
              "shipped_float_layers": [la.name for la in chosen], "shipped_val_accuracy": evaluate(
                  frozenset(la.name for la in chosen)).accuracy}
    return shipped, chosen, report


def _screening_subset(batches: list[Any], int8_logits: list[Any], fp32_logits: list[Any],
                      size: int) -> tuple[list[Any], dict[str, Any]]:
    """The ``size`` validation images where int8 is furthest from float: every image whose top-1 int8 changes
    first, then by logit squared error; batched like ``batches``. Also what share of the error they hold."""
    import numpy as np

    error = np.concatenate([((z - f) ** 2).sum(1) for z, f in zip(int8_logits, fp32_logits, strict=True)])
    flipped = np.concatenate([z.argmax(1) != f.argmax(1) for z, f in zip(int8_logits, fp32_logits, strict=True)])
    order = np.lexsort((-error, ~flipped))  # flipped first, then the largest error
    keep = np.sort(order[:size])
    names = list(batches[0][0])
    inputs = {k: np.concatenate([b[0][k] for b in batches]) for k in names}
    labels = np.concatenate([np.asarray(b[1]) for b in batches])
    step = max(1, len(batches[0][1]))
    subset = [({k: inputs[k][keep[i:i + step]] for k in names}, labels[keep[i:i + step]])
              for i in range(0, len(keep), step)]
    share = float(error[keep].sum() / max(error.sum(), 1e-12))
    return subset, {"images": len(keep), "flipped_in_val": int(flipped.sum()),
                    "flipped_in_subset": int(flipped[keep].sum()), "share_of_logit_error": round(share, 4)}
