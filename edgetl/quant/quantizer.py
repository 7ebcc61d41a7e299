"""edgetl's own PT2E quantizer, written on torchao's public ``Quantizer`` API.

The recipe is the one ONNX Runtime and OpenVINO run fastest on x86 and Arm CPUs:

* weights: int8, symmetric, per output channel, range -127..127 (no -128, so u8 x s8 VNNI sums cannot saturate), or
  -63..63 (``weight_max=63``) for x86 CPUs without a u8 x s8 dot-product instruction (VNNI, AMX): there ONNX Runtime
  and OpenVINO multiply with ``vpmaddubsw``, whose pairwise int16 sums saturate above 32767 (2 x 255 x 127 = 64770;
  2 x 255 x 63 = 32130 does not). Measured on an AVX2-only host, lite0 on digits at full range: ONNX Runtime's int8
  kernels agreed with the graph's own float Q/DQ arithmetic (its optimisations off: 99.2 %) on only 75 % of
  images (quantize.weight_range). Depthwise convolutions keep the full range even then: both runtimes accumulate
  them in int32 without the pairwise int16 step. Measured on the same host, one QLinearConv of 64 channels fed
  u8 200..255 (benchmarks/avx2_saturation.py): dense at -127..127 differs from the exact Q/DQ arithmetic in 86 %
  of outputs in ONNX Runtime and in OpenVINO, dense at -63..63 and depthwise at either range in none;
* activations: **uint8** (0..255), asymmetric, per tensor. With int8 activations ONNX Runtime leaves many convs in
  float (measured: 41 of 52 in mobilenet_v3_small); with uint8 every conv becomes ``QLinearConv``.

Annotated patterns (in the graph of ``torch.export``): conv/linear, with a following BatchNorm (folded by
``prepare_qat_pt2e`` / ``convert_pt2e``) and ReLU/ReLU6/hardtanh fused into the output; ``add`` (+ReLU); and ops
that only move values (pad, max/avg pooling, flatten, view), which share their input's quantization parameters so
no requantization appears between them and the next conv. Everything else stays float between Q/DQ pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch.fx import GraphModule, Node

ANNOTATION_KEY = "quantization_annotation"


@dataclass(frozen=True)
class QuantizerOptions:
    """What to leave in float. ``skip_modules``: module-path prefixes (``"blocks.0"``) kept in float."""

    qat: bool = False
    keep_first_fp: bool = False
    keep_last_fp: bool = False
    skip_modules: tuple[str, ...] = ()
    weight_max: int = 127  # 127: -127..127; 63: the reduced range for CPUs without VNNI (module docstring)
    depthwise_weight_max: int = 127  # depthwise convs do not saturate at full range (module docstring)


def _ops() -> dict[str, set[Any]]:
    import torch

    aten = torch.ops.aten
    return {
        "conv": {aten.conv1d.default, aten.conv2d.default, aten.conv2d.padding, aten.conv1d.padding},
        "linear": {aten.linear.default},
        "bn": {aten.batch_norm.default, aten._native_batch_norm_legit.default,
               aten._native_batch_norm_legit_no_training.default},
        # ReLU6 is exported as hardtanh(0, 6)
        "act": {aten.relu.default, aten.relu_.default, aten.hardtanh.default, aten.hardtanh_.default},
        "add": {aten.add.Tensor, aten.add_.Tensor},
        # matmuls of two activations (attention scores and their weighted sum): no weight to quantize
        "attention": {aten.scaled_dot_product_attention.default},
        "matmul": {aten.matmul.default, aten.bmm.default},
        # ops that only move or average values: the output range is inside the input range
        "shared": {aten.pad.default, aten.constant_pad_nd.default, aten.max_pool2d.default,
                   aten.max_pool2d_with_indices.default, aten.avg_pool2d.default, aten.adaptive_avg_pool2d.default,
                   aten.mean.dim, aten.flatten.using_ints, aten.view.default, aten.reshape.default,
                   aten.squeeze.dim, aten.squeeze.dims, aten.permute.default},
    }


def activation_spec(qat: bool):  # type: ignore[no-untyped-def]
    """uint8 0..255 per-tensor affine, ranges from a histogram observer (the L2-optimal clipping search).

    PTQ: the observer alone. QAT: a ``FakeQuantize`` around the same observer; its range is set once from
    calibration images (``calibrate_qat_ranges``, identical to PTQ's) and stays fixed while the weights train.
    """
    import torch
    from torchao.quantization.pt2e import FakeQuantize, HistogramObserver
    from torchao.quantization.pt2e.quantizer import QuantizationSpec

    observer = HistogramObserver.with_args(eps=2**-12)
    ctr = FakeQuantize.with_args(observer=HistogramObserver, eps=2**-12) if qat else observer
    return QuantizationSpec(dtype=torch.uint8, quant_min=0, quant_max=255, qscheme=torch.per_tensor_affine,
                            observer_or_fake_quant_ctr=ctr)


def weight_spec(qat: bool, weight_max: int = 127):  # type: ignore[no-untyped-def]
    """int8 -weight_max..weight_max symmetric per output channel (axis 0 of conv and linear weights).

    In QAT the range follows the current (BatchNorm-folded) weights at every step (moving average with constant 1).
    """
    import torch
    from torchao.quantization.pt2e import (
        FusedMovingAvgObsFakeQuantize,
        MovingAveragePerChannelMinMaxObserver,
        PerChannelMinMaxObserver,
    )
    from torchao.quantization.pt2e.quantizer import QuantizationSpec

    if qat:
        ctr = FusedMovingAvgObsFakeQuantize.with_args(observer=MovingAveragePerChannelMinMaxObserver,
                                                      averaging_constant=1.0, eps=2**-12)
    else:
        ctr = PerChannelMinMaxObserver.with_args(eps=2**-12)
    return QuantizationSpec(dtype=torch.int8, quant_min=-weight_max, quant_max=weight_max,
                            qscheme=torch.per_channel_symmetric,
                            ch_axis=0, observer_or_fake_quant_ctr=ctr)


def calibrate_qat_ranges(prepared: torch.nn.Module, batches: list[Any]) -> int:
    """Set every activation range of a QAT-prepared model exactly as PTQ would, then fix it.

    The model runs in float (fake-quant off) on ``batches`` while each activation fake-quant's histogram observer
    records its input; the ranges are computed once at the end (not at every forward, as ``FakeQuantize`` would)
    and the activation observers are disabled. Weight fake-quants keep following the weights. Returns the number of
    activation ranges set. The model must be in eval mode.
    """
    import torch
    from torchao.quantization.pt2e import FakeQuantizeBase

    fakes = [m for m in prepared.modules() if isinstance(m, FakeQuantizeBase)]
    acts = [m for m in fakes if getattr(m, "qscheme", None) in (torch.per_tensor_affine, torch.per_tensor_symmetric)]
    for m in fakes:
        m.disable_fake_quant()
    for m in acts:
        m.disable_observer()
    hooks = [m.register_forward_pre_hook(lambda mod, args: mod.activation_post_process(args[0].detach()))
             for m in acts]
    try:
        with torch.no_grad():
            for batch in batches:  # one tensor, or a model's positional inputs
                prepared(*batch) if isinstance(batch, (tuple, list)) else prepared(batch)
    finally:
        for h in hooks:
            h.remove()
    for m in acts:
        scale, zero_point = m.activation_post_process.calculate_qparams()
        m.scale.resize_(scale.shape).copy_(scale)
        m.zero_point.resize_(zero_point.shape).copy_(zero_point)
    for m in fakes:
        m.enable_fake_quant()
    return len(acts)


def _module_path(node: Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    return str(path).removeprefix("L['self'].").removeprefix("L__self__.")


ATTENTION_REASON = "attention: a matmul of two activations (no weight), runs in float"


def _attention_matmuls(nodes: list[Node], ops: dict[str, set[Any]]) -> list[dict[str, str]]:
    """The activation x activation matmuls of a graph, which this quantizer leaves in float (precision-plan entries).

    A transformer's attention multiplies queries by keys and the attention weights by values; neither side is a
    weight, and with dynamic sequence lengths the runtimes run them in float. Each
    ``scaled_dot_product_attention`` is two such matmuls in the exported graph (ONNX ``MatMul``, OpenVINO
    ``MatMul``); a bare ``matmul``/``bmm`` of two graph values is one. Recorded with kind "linear" so that the int8
    proof counts them as planned float matmuls.
    """
    from torch.fx import Node as FxNode

    kept: list[dict[str, str]] = []
    for n in nodes:
        if n.op != "call_function":
            continue
        where = _module_path(n) or n.name
        if n.target in ops["attention"]:
            kept += [{"layer": f"{where}:{part}", "kind": "linear", "reason": ATTENTION_REASON}
                     for part in ("scores", "weighted_sum")]
        elif n.target in ops["matmul"] and all(isinstance(a, FxNode) and a.op != "get_attr" for a in n.args[:2]):
            kept.append({"layer": where, "kind": "linear", "reason": ATTENTION_REASON})
    return kept


def _is_depthwise(node: Node) -> bool:
    """A grouped convolution with one input channel per group (``aten.conv2d``'s ``groups``, argument 6)."""
    groups = node.args[6] if len(node.args) > 6 else node.kwargs.get("groups", 1)
    arg: Any = node.args[1]
    weight = arg.meta.get("val") if hasattr(arg, "meta") else None
    return isinstance(groups, int) and groups > 1 and weight is not None and weight.dim() >= 3 and weight.shape[1] == 1


def _only_user(node: Node) -> Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def make_quantizer(options: QuantizerOptions):  # type: ignore[no-untyped-def]
    """An instance of edgetl's ``Quantizer`` subclass (built lazily: torchao is imported only when quantizing).

    Installs the pattern-graph cache (``edgetl.quant.pt2e.install_pattern_cache``) for the prepare and convert
    calls that follow."""
    from torchao.quantization.pt2e.quantizer import (
        QuantizationAnnotation,
        Quantizer,
        SharedQuantizationSpec,
    )

    from edgetl.quant.pt2e import install_pattern_cache

    install_pattern_cache()

    class EdgeQuantizer(Quantizer):
        """uint8 activations, int8 per-channel weights; see the module docstring."""

        def __init__(self, opts: QuantizerOptions) -> None:
            super().__init__()
            self.options = opts
            self.act = activation_spec(opts.qat)
            self.weight = weight_spec(opts.qat, opts.weight_max)
            self.depthwise_weight = weight_spec(opts.qat, opts.depthwise_weight_max)
            # conv/linear layers left in float: {"layer": module path, "kind": "conv" | "linear", "reason": ...}
            self.kept_float: list[dict[str, str]] = []

        def annotate(self, model: GraphModule) -> GraphModule:
            ops = _ops()
            nodes = list(model.graph.nodes)
            layers = [n for n in nodes if n.op == "call_function" and n.target in ops["conv"] | ops["linear"]]
            skip: dict[Node, str] = {}
            if layers and self.options.keep_first_fp:
                skip[layers[0]] = "keep_first_fp"
            if layers and self.options.keep_last_fp:
                skip[layers[-1]] = "keep_last_fp"
            for layer in layers:
                path = _module_path(layer)
                if any(path == p or path.startswith(p + ".") for p in self.options.skip_modules):
                    skip.setdefault(layer, f"skip_modules ({path})")
            self.kept_float = [
                {"layer": _module_path(n) or n.name, "kind": "linear" if n.target in ops["linear"] else "conv",
                 "reason": why}
                for n, why in skip.items()
            ]
            self.kept_float += _attention_matmuls(nodes, ops)

            quantized: set[Node] = set()  # nodes whose output carries an observer / fake-quant
            for node in nodes:
                if node.op != "call_function" or ANNOTATION_KEY in node.meta:
                    continue
                if node in layers:
                    if node not in skip:
                        self._annotate_layer(node, ops, quantized)
                elif node.target in ops["add"]:
                    self._annotate_add(node, ops, quantized)
                elif node.target in ops["shared"]:
                    source = node.args[0]
                    if source in quantized:
                        node.meta[ANNOTATION_KEY] = QuantizationAnnotation(
                            input_qspec_map={source: self.act},
                            output_qspec=SharedQuantizationSpec((source, node)),
                            _annotated=True,
                        )
                        quantized.add(node)
            return model

        def _fuse_tail(self, node: Node, ops: dict[str, set[Any]], allow_bn: bool) -> list[Node]:
            """node, then a following BatchNorm (conv only) and activation, when each is the only user."""
            import operator

            chain = [node]
            nxt = _only_user(node)
            if allow_bn and nxt is not None and nxt.target in ops["bn"]:
                chain.append(nxt)
                item = _only_user(nxt)
                if item is not None and item.target is operator.getitem:  # the tuple-returning BN variants
                    chain.append(item)
                nxt = _only_user(chain[-1])
            if nxt is not None and nxt.target in ops["act"]:
                chain.append(nxt)
            return chain

        def _annotate_layer(self, node: Node, ops: dict[str, set[Any]], quantized: set[Node]) -> None:
            inp, weight = node.args[0], node.args[1]
            input_map = {inp: self.act, weight: self.depthwise_weight if _is_depthwise(node) else self.weight}
            chain = self._fuse_tail(node, ops, allow_bn=node.target in ops["conv"])
            for member in chain:
                member.meta[ANNOTATION_KEY] = QuantizationAnnotation(_annotated=True)
            node.meta[ANNOTATION_KEY] = QuantizationAnnotation(input_qspec_map=input_map, _annotated=True)
            chain[-1].meta[ANNOTATION_KEY].output_qspec = self.act
            quantized.add(chain[-1])

        def _annotate_add(self, node: Node, ops: dict[str, set[Any]], quantized: set[Node]) -> None:
            from torch.fx import Node as FxNode

            inputs = [a for a in node.args[:2] if isinstance(a, FxNode)]
            if len(inputs) != 2:
                return  # adding a constant: leave in float
            chain = self._fuse_tail(node, ops, allow_bn=False)
            for member in chain:
                member.meta[ANNOTATION_KEY] = QuantizationAnnotation(_annotated=True)
            node.meta[ANNOTATION_KEY] = QuantizationAnnotation(input_qspec_map={a: self.act for a in inputs},
                                                               _annotated=True)
            chain[-1].meta[ANNOTATION_KEY].output_qspec = self.act
            quantized.add(chain[-1])

        def validate(self, model: GraphModule) -> None:
            return None

    return EdgeQuantizer(options)


def count_quantized_layers(model: torch.nn.Module) -> dict[str, int]:
    """conv/linear calls of a converted PT2E model whose weight is dequantized from int8, and those left float."""
    ops = _ops()
    graph = getattr(model, "graph", None)
    if graph is None:
        return {"int8": 0, "float": 0}
    int8 = flt = 0
    for node in graph.nodes:
        if node.op == "call_function" and node.target in ops["conv"] | ops["linear"]:
            weight = node.args[1]
            is_dq = getattr(weight, "op", "") == "call_function" and "dequantize" in str(weight.target)
            int8 += is_dq
            flt += not is_dq
    return {"int8": int8, "float": flt}
