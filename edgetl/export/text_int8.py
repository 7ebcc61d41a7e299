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
