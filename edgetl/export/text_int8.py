"""int8 for BERT-class text encoders at the ONNX level: ONNX Runtime's transformer fusion and its dynamic int8.

Measured on this project's CPU (``benchmarks/text_int8_routes.py``): for ONNX Runtime the fastest int8 that keeps
the accuracy is the TorchScript export with eager attention, fused by ``onnxruntime.transformers.optimizer``
(Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu), then ``quantize_dynamic`` (int8 weights
per output channel; activations quantized at run time): QAttention, DynamicQuantizeMatMul and an int8 embedding
table. Static QDQ of the same graph is slower in ONNX Runtime and loses more accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgetl.errors import ExportError

STAGE = "export"


def fuse_bert(src: Path, dst: Path, config: Any) -> dict[str, int]:
    """Fuse a BERT ONNX graph for ONNX Runtime (``model_type="bert"``); returns the fused-op counts.

    ``config``: the encoder's ``transformers`` config (heads, hidden size). Raises ``ExportError`` when no attention
    was fused (an export whose attention pattern the optimizer does not know): the int8 routes that rely on fused
    attention would then run it in float.
    """
    from onnxruntime.transformers import optimizer

    opt = optimizer.optimize_model(str(src), model_type="bert", num_heads=int(config.num_attention_heads),
                                   hidden_size=int(config.hidden_size), opt_level=0)
    stats = {k: int(v) for k, v in opt.get_fused_operator_statistics().items() if v}
    layers = int(config.num_hidden_layers)
    if stats.get("Attention", 0) != layers:
        raise ExportError(f"{STAGE}: ONNX Runtime's BERT fusion found {stats.get('Attention', 0)} of {layers} "
                          f"attention blocks in {src.name}",
                          hint="export with eager attention (attn_implementation='eager') and the TorchScript exporter")
    opt.save_model_to_file(str(dst))
    return stats


def weight_matmuls(path: Path) -> list[str]:
    """Names of the MatMul/Gemm nodes whose second input is a weight (an initializer): the linear layers, not the
    attention matmuls of two activations."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    consts = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm")
            and len(n.input) > 1 and (n.input[1] in inits or n.input[1] in consts)]


def dynamic_int8(src: Path, dst: Path, exclude: tuple[str, ...] = ()) -> None:
    """``quantize_dynamic``: int8 weights per output channel (symmetric), activations quantized at run time.

    On a fused graph it writes QAttention, DynamicQuantizeMatMul (MatMul + bias) and an int8 embedding table
    (QEmbedLayerNormalization); ``exclude``: node names kept in float (the accuracy fallback). The fused ops are
    of the ``com.microsoft`` domain, where ONNX shape inference stops, hence the default float tensor type.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                     nodes_to_exclude=list(exclude), extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def write_dynamic_int8(model: Any, dst: Path, metadata: dict[str, str], scratch: Path,
                       exclude: tuple[str, ...] = ()) -> dict[str, int]:
    """The ONNX Runtime int8 route of a ``TextClassifier``: TorchScript export with eager attention (the pattern
    ONNX Runtime's BERT fusion knows; SDPA's is not fused), ``fuse_bert``, ``dynamic_int8``; ``metadata`` into the
    file's ``metadata_props``. Returns the fused-op counts. Intermediate files go to ``scratch``.
    """
    import onnx

    from edgetl.backbones.text import export_text_onnx

    config = model.encoder.config
    eager, fused = Path(scratch) / "eager_fp32.onnx", Path(scratch) / "fused_fp32.onnx"
    attn = getattr(config, "_attn_implementation", None)
    config._attn_implementation = "eager"
    try:
        export_text_onnx(model, eager)
    finally:
        config._attn_implementation = attn
    stats = fuse_bert(eager, fused, config)
    dynamic_int8(fused, dst, exclude)
    proto = onnx.load(str(dst))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(dst))
    for path in (eager, fused):
        path.unlink(missing_ok=True)
    return stats


# OpenVINO's CPU plugin runs a FullyConnected layer whose weights are int8 constants (a DequantizeLinear on the
# weight) in int8, quantizing its activations at run time in groups of this many input channels. Measured on
# MiniLM-L6 fine-tuned on SST-2 (AMX Xeon, 2 threads, batch 1, 5 interleaved rounds; the design notes): p50 over
# OpenVINO fp32 at 32 / 128 tokens and test top-1 (fp32 89.95 %): group 32 (OpenVINO's default) 0.65 / 0.61;
# group 128 0.57 / 0.50 and 89.79 %; the static QDQ model 0.52 / 0.41 at 86.99 %.
OPENVINO_DYNAMIC_GROUP = 128


def weight_only_int8(src: Path, dst: Path) -> int:
    """The float ONNX model ``src`` with every linear layer's weight (a MatMul/Gemm weight initializer, 2-D) as
    int8 per output channel, symmetric, -127..127, behind a ``DequantizeLinear``, and every embedding table (a
    Gather's 2-D initializer) int8 per row; activations stay float (the runtime quantizes them:
    ``OPENVINO_DYNAMIC_GROUP``). Returns the number of linear layers rewritten."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    inits = {i.name: i for i in model.graph.initializer}
    nodes, count, done = [], 0, set()
    for node in model.graph.node:
        # a linear layer's weight, or an embedding table (a Gather's data: one scale per row, the row it reads)
        slot = 1 if node.op_type in ("MatMul", "Gemm") else 0 if node.op_type == "Gather" else None
        name = node.input[slot] if slot is not None and len(node.input) > slot else None
        weight = numpy_helper.to_array(inits[name]) if name in inits else None
        if weight is not None and weight.ndim == 2 and weight.dtype == np.float32:
            transposed = node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
            # per output channel: [N, K] under transB, else [K, N]; an embedding table per row
            axis = 0 if transposed or node.op_type == "Gather" else 1
            if name not in done:
                scale = np.abs(weight).max(axis=1 - axis) / 127.0
                scale[scale == 0] = 1.0
                shaped = scale[:, None] if axis == 0 else scale[None, :]
                q = np.clip(np.round(weight / shaped), -127, 127).astype(np.int8)
                model.graph.initializer.extend([numpy_helper.from_array(q, f"{name}_int8"),
                                                numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale"),
                                                numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{name}_zero")])
                nodes.append(helper.make_node("DequantizeLinear", [f"{name}_int8", f"{name}_scale", f"{name}_zero"],
                                              [f"{name}_dequantized"], axis=axis, name=f"{name}_dequantize"))
                done.add(name)
            node.input[slot] = f"{name}_dequantized"  # type: ignore[index]
            count += node.op_type != "Gather"
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {i for n in model.graph.node for i in n.input}
    kept = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    onnx.save(model, str(dst))
    return count


def write_openvino_dynamic_int8(src: Path, dst_xml: Path, scratch: Path, metadata: dict[str, str] | None = None) -> int:
    """The OpenVINO int8 route of a text encoder's float ONNX ``src``: ``weight_only_int8``, converted to an IR
    that states its activation group size (``runtime_options``) and carries ``metadata``. Returns the number of
    int8 layers."""
    from edgetl.export.writers import export_openvino

    weights = Path(scratch) / "weight_only_int8.onnx"
    count = weight_only_int8(src, weights)
    export_openvino(weights, dst_xml, metadata or {},
                    runtime_options={"DYNAMIC_QUANTIZATION_GROUP_SIZE": str(OPENVINO_DYNAMIC_GROUP)})
    weights.unlink(missing_ok=True)
    return count


def activation_matmuls(path: Path) -> list[str]:
    """Names of the MatMul nodes of two activations (attention scores and weighted sum): no weight to quantize."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    weights = set(weight_matmuls(path))
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name not in weights]
