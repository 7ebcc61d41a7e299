"""The uint8-input variant of an exported model: its graph takes raw camera pixels and preprocesses them itself.

The variant is the float-input ONNX model with five nodes prepended: ``Cast`` (uint8 -> float32), ``Mul`` by the
scale (1/255), ``Sub`` the mean, ``Div`` by the std (per channel, broadcast over the last axis) and ``Transpose``
NHWC -> NCHW, feeding what was the model's input. The rest of the graph is the exported one, node for node, so an
int8 model's Q/DQ placement (and hence what runs in int8) is unchanged. The arithmetic is the one
``edgetl.data.normalise_pixels`` does, in the same order and in float32, so both inputs give the same floats.

The device code then resizes and centre-crops a frame (or has the camera deliver that size) and feeds its
``H x W x 3`` RGB bytes: no normalisation to rewrite in C++.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgetl.errors import ExportError

if TYPE_CHECKING:
    from edgetl.artifacts import ModelIO

__all__ = ["PixelFront", "uint8_variant_path", "variant_metadata", "write_uint8_variant"]

SUFFIX = "_uint8"  # model_int8_qat.onnx -> model_int8_qat_uint8.onnx


@dataclass(frozen=True)
class PixelFront:
    """What the variant's graph does to its input before the model: uint8 NHWC -> normalised float32 NCHW.

    ``io`` is the variant's own inputs and outputs (the model card of the variant); ``input_name`` the model
    input it replaces (the variant's input keeps that name).
    """

    input_name: str
    io: ModelIO
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def describe(self) -> dict[str, object]:
        """The preprocessing the graph does, as the variant's metadata and the bundle manifest state it."""
        return {"input_dtype": "uint8", "input_layout": "NHWC", "channel_order": "RGB",
                "in_graph": f"x / {1 / self.scale:g}, minus mean, divided by std, NHWC -> NCHW",
                "scale": self.scale, "mean": list(self.mean), "std": list(self.std),
                "caller_does": "resize and centre-crop to the input size (preprocess.json), RGB byte order"}


def variant_metadata(metadata: dict[str, str], front: PixelFront) -> dict[str, str]:
    """What a variant says about itself (ONNX ``metadata_props``, OpenVINO ``rt_info``): the float model's
    metadata with the variant's own inputs and the preprocessing its graph does."""
    return {**metadata, "inputs": json.dumps([t.model_dump(mode="json") for t in front.io.inputs]),
            "input_preprocessing": json.dumps(front.describe())}


def uint8_variant_path(rel: str) -> str:
    """Where the variant of the model file ``rel`` goes (same folder, ``_uint8`` before the suffix)."""
    p = Path(rel)
    return str(p.with_name(f"{p.stem}{SUFFIX}{p.suffix}"))


def write_uint8_variant(src: Path, dst: Path, front: PixelFront, metadata: dict[str, str]) -> None:
    """Write the uint8-input variant of the ONNX model ``src`` to ``dst`` (checked with ``onnx.checker``).

    Raises:
        ExportError: ``src`` has no input named ``front.input_name``, or it is not a 4-d NCHW input.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    old = next((i for i in graph.input if i.name == front.input_name), None)
    if old is None:
        raise ExportError(f"export: {src.name} has no input {front.input_name!r} to prepend the uint8 front to")
    dims = old.type.tensor_type.shape.dim
    if len(dims) != 4:
        raise ExportError(f"export: input {front.input_name!r} of {src.name} has {len(dims)} dimensions, not NCHW")
    internal = f"{front.input_name}_nchw"
    for node in graph.node:  # the old input becomes an internal value fed by the front
        for k, name in enumerate(node.input):
            if name == front.input_name:
                node.input[k] = internal
    spec = front.io.inputs[0]
    shape: list[int | str | None] = [spec.dynamic_axes.get(axis) if d is None else d
                                     for axis, d in enumerate(spec.shape)]
    new_input = helper.make_tensor_value_info(front.input_name, TensorProto.UINT8, shape)
    new_input.type.tensor_type.shape.dim[0].CopyFrom(dims[0])  # the model's own batch: its name, or fixed size
    prefix = f"{front.input_name}_pixels"
    consts = [
        numpy_helper.from_array(np.asarray(front.scale, dtype=np.float32), f"{prefix}_scale"),
        numpy_helper.from_array(np.asarray(front.mean, dtype=np.float32), f"{prefix}_mean"),
        numpy_helper.from_array(np.asarray(front.std, dtype=np.float32), f"{prefix}_std"),
    ]
    nodes = [
        helper.make_node("Cast", [front.input_name], [f"{prefix}_f"], to=TensorProto.FLOAT, name=f"{prefix}_cast"),
        helper.make_node("Mul", [f"{prefix}_f", f"{prefix}_scale"], [f"{prefix}_scaled"], name=f"{prefix}_scale"),
        helper.make_node("Sub", [f"{prefix}_scaled", f"{prefix}_mean"], [f"{prefix}_centred"], name=f"{prefix}_sub"),
        helper.make_node("Div", [f"{prefix}_centred", f"{prefix}_std"], [f"{prefix}_nhwc"], name=f"{prefix}_div"),
        helper.make_node("Transpose", [f"{prefix}_nhwc"], [internal], perm=[0, 3, 1, 2], name=f"{prefix}_nchw"),
    ]
    position = list(graph.input).index(old)
    graph.input.remove(old)
    graph.input.insert(position, new_input)
    graph.initializer.extend(consts)
    for node in reversed(nodes):
        graph.node.insert(0, node)
    del model.metadata_props[:]
    for key, value in variant_metadata(metadata, front).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
