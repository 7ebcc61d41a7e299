"""Model writers: ONNX through the dynamo exporter (with edgetl's graph passes) and OpenVINO IR from the ONNX.

Both carry what the model says about itself (ONNX ``metadata_props``, OpenVINO ``rt_info["edgetl"]``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from edgetl.errors import ExportError

STAGE = "export"


def export_onnx(model: Any, example: Any, path: Path, *, opset: int, dynamic: bool, metadata: dict[str, str],
                what: str, io: Any = None) -> int:
    """Dynamo-export ``model`` (an ``nn.Module`` or ``ExportedProgram``) to ``path``; returns the pads folded.

    ``example``: one tensor, or named inputs; ``io``: the ``ModelIO`` naming the inputs and outputs and their
    dynamic axes (default: one input ``input``, output ``logits``, dynamic batch).
    """
    import onnx
    import torch

    from edgetl.export.onnx_passes import fold_pads, guard_float_layers
    from edgetl.quant.pt2e import dynamic_shapes_for, example_args, export_failure

    input_names = io.input_names if io is not None else ["input"]
    output_names = io.output_names if io is not None else ["logits"]
    try:
        with warnings.catch_warnings():
            # two inputs with one batch axis (a text model's input_ids and attention_mask): the exporter keeps one
            # name for both and says so; the exported axes are what io states
            warnings.filterwarnings("ignore", message=r"# The axis name: .* will not be used, since it shares")
            program = torch.onnx.export(model, example_args(example), dynamo=True, opset_version=opset,
                                        input_names=input_names, output_names=output_names,
                                        dynamic_shapes=dynamic_shapes_for(example, io, dynamic), verbose=False)
    except Exception as exc:  # torch.export errors and the exporter's ConversionError / DispatchError
        raise export_failure(STAGE, what, exc) from exc
    if program is None:
        raise ExportError(f"{STAGE}: the ONNX exporter returned nothing for {what}")
    proto = program.model_proto
    if io is not None:
        name_dynamic_dims(proto, io)
    folded = fold_pads(proto)
    guard_float_layers(proto)  # a float layer of an int8 plan stays float in ONNX Runtime (see the pass)
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return folded


def name_dynamic_dims(proto: Any, io: Any) -> dict[str, str]:
    """Give the graph's symbolic dimensions the axis names of ``io`` (``sequence``, not the exporter's ``s53``),
    everywhere they appear; returns the renaming. A dimension torch.export named already keeps its name."""
    specs = {t.name: t for t in io.inputs}
    renames: dict[str, str] = {}
    for value in proto.graph.input:
        spec = specs.get(value.name)
        if spec is None:
            continue
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            name = spec.dynamic_axes.get(axis)
            if name and dim.dim_param and dim.dim_param != name:
                renames.setdefault(dim.dim_param, name)
    if renames:
        for value in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
            for dim in value.type.tensor_type.shape.dim:
                if dim.dim_param in renames:
                    dim.dim_param = renames[dim.dim_param]
    return renames


def export_openvino(onnx_path: Path, xml: Path, metadata: dict[str, str],
                    runtime_options: dict[str, str] | None = None) -> None:
    """ONNX -> OpenVINO IR with fp32 weights (``compress_to_fp16=False``) and edgetl's rt_info.
    ``runtime_options``: compile properties the IR states (``rt_info`` ``runtime_options``), which OpenVINO applies
    when it compiles the model, so an application needs no setting of its own."""
    import openvino as ov

    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:  # OpenVINO's converter raises RuntimeError / OpConversionFailure
        from edgetl.runtimes.base import short_error

        raise ExportError(f"{STAGE}: OpenVINO cannot convert {onnx_path.name}: {short_error(exc)}",
                          hint="check the ONNX opset (target export.opset) and the op it names") from exc
    for key, value in metadata.items():
        model.set_rt_info(value, ["edgetl", key])
    for key, value in (runtime_options or {}).items():
        model.set_rt_info(value, ["runtime_options", key])
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(xml), compress_to_fp16=False)
