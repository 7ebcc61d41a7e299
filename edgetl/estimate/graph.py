"""Per-layer cost of an ONNX graph: MACs, weight bytes and activation bytes at the precision each layer runs in.

The counts come from the graph after ONNX shape inference at a fixed batch size (symbolic dimensions substituted):

- Conv, ConvTranspose, Gemm and MatMul (batched too) are compute layers; QLinearConv, QLinearMatMul, ConvInteger
  and MatMulInteger run int8, and so does a float compute layer in a QDQ graph whose activation inputs come from
  DequantizeLinear and whose outputs all go to QuantizeLinear (what ONNX Runtime fuses into QLinear kernels).
  Its tensors then count at their quantized size, and the Q/DQ nodes around it are free.
- Every other op (elementwise, pooling, softmax, normalization, data movement, an unfused Q/DQ) is memory-bound:
  bytes only. Reshape-like ops and anything computed from constants alone (shape arithmetic) are free.
- With ``fuse=True`` a float activation, BatchNormalization or residual Add that directly follows a compute layer
  whose output it alone reads is folded into that layer, as ONNX Runtime, OpenVINO and TensorRT do; the layer
  then writes the fused op's output, and a fused Add adds the read of its other operand.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from edgetl.errors import ConfigError, ModelFileError

if TYPE_CHECKING:
    import onnx

CostKind = Literal["compute", "memory", "fused", "free", "unknown"]
FloatPrecision = Literal["fp32", "fp16"]

COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "QLinearConv", "QLinearMatMul",
                         "ConvInteger", "MatMulInteger"})
INT8_OPS = frozenset({"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"})
# Index of the (data, weight) inputs of each compute op; the rest are scales, zero points and biases.
WEIGHT_INPUT = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1, "QLinearConv": 3, "QLinearMatMul": 3,
                "ConvInteger": 1, "MatMulInteger": 1}
# Ops that only relabel a tensor (a view in every runtime): no time.
FREE_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Shape", "Size",
                      "Constant", "ConstantOfShape"})
# Ops a QDQ graph runs on int8 data when DequantizeLinear feeds them and QuantizeLinear takes their output
# (ONNX Runtime's QDQ selectors: QLinearConv/MatMul/Add/Mul/Pool/Concat/Sigmoid/LeakyRelu/Softmax and data movement).
QDQ_CAPABLE = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm", "Add", "Mul", "AveragePool",
                         "GlobalAveragePool", "MaxPool", "Concat", "Sigmoid", "LeakyRelu", "Softmax", "Transpose",
                         "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Resize", "Gather", "Split", "Pad", "Slice",
                         "Relu", "Clip", "Identity"})
# Float ops runtimes fold into the compute layer before them (ONNX Runtime's Conv+Activation and Conv+BN fusions,
# its x86 NCHWc Conv+Add fusion; its optimised mobilenet_v3_small graph keeps none of the 19 HardSwish after
# convs; TensorRT and OpenVINO fuse the same and more).
FUSABLE_FOLLOWERS = frozenset({"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
                               "BatchNormalization", "Add"})
FUSE_INTO = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
_FLOAT_DTYPES = frozenset({1, 10, 11, 16})  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


@dataclass(frozen=True)
class LayerCost:
    """What one graph node costs, independent of the device: work, bytes moved, and how it runs."""

    name: str
    op: str
    precision: str
    macs: int
    weight_bytes: int
    activation_bytes: int
    kind: CostKind
    detail: str = ""  # for convolutions: kernel, stride and "depthwise" (e.g. "dw 3x3/2")

    @property
    def bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes


def layer_costs(model: str | Path | onnx.ModelProto, *, batch: int = 1, dims: Mapping[str, int] | None = None,
                float_precision: FloatPrecision | None = None, fuse: bool = True) -> list[LayerCost]:
    """Per-node MACs and bytes of an ONNX model at a fixed batch size (see the module docstring for the rules).

    Args:
        model: an ``.onnx`` file or a loaded model (not modified).
        batch: substituted for a dynamic first dimension of every graph input.
        dims: values for other symbolic input dimensions, by name (e.g. ``{"sequence": 128}``).
        float_precision: run float layers at this precision instead of the stored one (``"fp16"`` for an fp32
            export that TensorRT or an NPU runs in fp16); int8 layers stay int8.
        fuse: fold activations, BatchNormalization and residual Adds into the compute layer they follow.

    Returns:
        One cost per graph node, in graph order.

    Raises:
        ModelFileError: the file is missing or not a valid ONNX model, or shape inference fails.
        ConfigError: a symbolic input dimension has no value, or ``batch`` contradicts a fixed batch.
    """
    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")
    graph_model = _with_static_inputs(_load(model), batch, dict(dims or {}))
    return _Analysis(_infer_shapes(graph_model), float_precision, fuse).costs()


def _load(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    import onnx

    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy
    path = Path(model)
    if not path.is_file():
        raise ModelFileError(f"ONNX model {path} does not exist")
    try:
        # weights are not needed: shapes and dtypes of initializers are in the protobuf without their data
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError, a RuntimeWarning or others on a corrupt file
        raise ModelFileError(f"{path} is not a valid ONNX model: {exc}") from exc


def _with_static_inputs(model: onnx.ModelProto, batch: int, dims: dict[str, int]) -> onnx.ModelProto:
    """Replace symbolic input dimensions by values; drop stale inferred shapes so inference starts clean."""
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    for value in graph.input:
        if value.name in initializers or not value.type.HasField("tensor_type"):
            continue
        for index, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_value"):
                if index == 0 and dim.dim_value != batch:
                    raise ConfigError(f"input {value.name!r} has a fixed batch of {dim.dim_value}, not {batch}",
                                      hint=f"estimate at batch {dim.dim_value} or export with a dynamic batch")
                continue
            name = dim.dim_param
            if name in dims:
                dim.dim_value = dims[name]
            elif index == 0:
                dim.dim_value = batch
            else:
                raise ConfigError(f"input {value.name!r} dimension {index} ({name or 'unnamed'}) is symbolic",
                                  hint=f"pass dims={{{name or 'name'!r}: value}}")
    del graph.value_info[:]
    for value in graph.output:
        if value.type.HasField("tensor_type"):
            value.type.tensor_type.ClearField("shape")
    return model


def _infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except (onnx.shape_inference.InferenceError, ValueError) as exc:
        raise ModelFileError(f"ONNX shape inference failed: {exc}") from exc


def _itemsize(dtype: int) -> int:
    import onnx

    if dtype == 0:
        return 4  # unknown element type: assume 32-bit
    return int(onnx.helper.tensor_dtype_to_np_dtype(dtype).itemsize)


class _Analysis:
    """One pass over a shape-inferred graph: constants, QDQ groups, fusions, then one cost per node."""

    def __init__(self, model: onnx.ModelProto, float_precision: FloatPrecision | None, fuse: bool) -> None:
        graph = model.graph
        self.nodes = list(graph.node)
        self.float_precision = float_precision
        self.types: dict[str, tuple[int, tuple[int, ...] | None]] = {}
        for value in (*graph.input, *graph.value_info, *graph.output):
            if value.type.HasField("tensor_type"):
                tensor = value.type.tensor_type
                shape: tuple[int, ...] | None = None
                if tensor.HasField("shape") and all(d.HasField("dim_value") for d in tensor.shape.dim):
                    shape = tuple(int(d.dim_value) for d in tensor.shape.dim)
                self.types[value.name] = (tensor.elem_type, shape)
        for init in graph.initializer:
            self.types[init.name] = (init.data_type, tuple(int(d) for d in init.dims))
        self.producer = {out: node for node in self.nodes for out in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        self.constants = self._constants(graph)
        self.quantized = self._quantized_nodes()
        self.fused_into: dict[int, onnx.NodeProto] = {}  # id(follower) -> compute node it folds into
        self.chain_end: dict[int, onnx.NodeProto] = {}  # id(compute node) -> last node of its fused chain
        self.extra_reads: dict[int, list[str]] = {}  # id(compute node) -> tensors its fused Adds read
        if fuse:
            self._fuse()

    # -- graph facts -------------------------------------------------------------------------------------------
    def _constants(self, graph: onnx.GraphProto) -> set[str]:
        """Initializers, Constant outputs, Shape of a known shape, and whatever is computed from those alone."""
        constants = {init.name for init in graph.initializer}
        for node in self.nodes:
            inputs = [name for name in node.input if name]
            known_shape = node.op_type in ("Shape", "Size") and self._shape(inputs[0]) is not None
            if node.op_type == "Constant" or known_shape or (inputs and all(n in constants for n in inputs)):
                constants.update(node.output)
        return constants

    def _shape(self, name: str) -> tuple[int, ...] | None:
        return self.types.get(name, (0, None))[1]

    def _dtype(self, name: str) -> int:
        return self.types.get(name, (0, None))[0]

    def _numel(self, name: str) -> int | None:
        shape = self._shape(name)
        return None if shape is None else math.prod(shape)

    def _is_const(self, name: str) -> bool:
        return name in self.constants

    def _from_dq(self, name: str) -> bool:
        node = self.producer.get(name)
        return node is not None and node.op_type == "DequantizeLinear"

    def _quantized_nodes(self) -> set[int]:
        """Float ops a QDQ graph runs as int8: every activation input from DQ, every output read only by Q."""
        quantized = set()
        for node in self.nodes:
            if node.op_type not in QDQ_CAPABLE or self._is_const(node.output[0]):
                continue
            data = [n for n in node.input if n and not self._is_const(n)]
            if not data or not all(self._from_dq(n) for n in data):
                continue
            outputs_to_q = all(
                self.consumers.get(out) and all(c.op_type == "QuantizeLinear" for c in self.consumers[out])
                for out in node.output if out
            )
            if outputs_to_q:
                quantized.add(id(node))
        return quantized

    def _fuse(self) -> None:
        for node in self.nodes:
            if node.op_type not in FUSE_INTO or id(node) in self.quantized:
                continue
            end = node
            while True:
                out = end.output[0]
                readers = self.consumers.get(out, [])
                if len(readers) != 1 or readers[0].op_type not in FUSABLE_FOLLOWERS:
                    break
                follower = readers[0]
                if id(follower) in self.fused_into:
                    break  # the other branch of a residual Add already took it
                if follower.op_type == "Add":
                    others = [n for n in follower.input if n and n != out]
                    shape_out = self._shape(follower.output[0])
                    # a residual Add: same shape as the layer output, one other operand
                    if len(others) != 1 or shape_out is None or shape_out != self._shape(out):
                        break
                    if not self._is_const(others[0]):
                        self.extra_reads.setdefault(id(node), []).append(others[0])
                self.fused_into[id(follower)] = node
                end = follower
            if end is not node:
                self.chain_end[id(node)] = end

    # -- bytes at run time -------------------------------------------------------------------------------------
    def _float_size(self, dtype: int) -> int:
        if dtype in _FLOAT_DTYPES and self.float_precision is not None:
            return 2 if self.float_precision == "fp16" else 4
        return _itemsize(dtype)

    def _runtime_itemsize(self, name: str, reader_quantized: bool = False) -> int:
        """Bytes per element of a tensor as the runtime stores it: a fused DQ's output is still int8."""
        node = self.producer.get(name)
        if reader_quantized and node is not None and node.op_type == "DequantizeLinear":
            return _itemsize(self._dtype(node.input[0]))
        return self._float_size(self._dtype(name))

    def _output_itemsize(self, name: str, quantized: bool) -> int:
        readers = self.consumers.get(name, [])
        if quantized and readers and all(r.op_type == "QuantizeLinear" for r in readers):
            return _itemsize(self._dtype(readers[0].output[0]))
        return self._float_size(self._dtype(name))

    def _tensor_bytes(self, name: str, reader_quantized: bool = False) -> int | None:
        numel = self._numel(name)
        return None if numel is None else numel * self._runtime_itemsize(name, reader_quantized)

    def _weight_bytes(self, name: str, quantized: bool) -> int | None:
        """A constant input: an int8 initializer behind a DQ counts as int8 only where the layer runs int8."""
        numel = self._numel(name)
        if numel is None:
            return None
        node = self.producer.get(name)
        if node is not None and node.op_type == "DequantizeLinear" and self._is_const(node.input[0]):
            if quantized:
                return numel * _itemsize(self._dtype(node.input[0]))
            return numel * self._float_size(self._dtype(name))
        return numel * self._float_size(self._dtype(name))

    # -- costs -------------------------------------------------------------------------------------------------
    def costs(self) -> list[LayerCost]:
        return [self._cost(index, node) for index, node in enumerate(self.nodes)]

    def _precision(self, node: onnx.NodeProto, quantized: bool) -> str:
        if quantized or node.op_type in INT8_OPS:
            return "int8"
        dtype = self._dtype(node.output[0]) if node.output else 0
        if dtype in _FLOAT_DTYPES:
            if self.float_precision is not None:
                return self.float_precision
            return "fp16" if _itemsize(dtype) == 2 else "fp32"
        return onnx_type_name(dtype)

    def _cost(self, index: int, node: onnx.NodeProto) -> LayerCost:
        name = node.name or f"{node.op_type}_{index}"
        quantized = id(node) in self.quantized or node.op_type in INT8_OPS
        precision = self._precision(node, quantized)

        def row(kind: CostKind, macs: int = 0, weights: int = 0,
                activations: int = 0) -> LayerCost:
            return LayerCost(name, node.op_type, precision, macs, weights, activations, kind, self._detail(node))

        if id(node) in self.fused_into:
            return row("fused")
        if node.op_type in FREE_OPS or all(self._is_const(out) for out in node.output if out):
            return row("free")
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and self._qdq_is_fused(node):
            return row("free")
        if node.op_type in ("If", "Loop", "Scan"):
            return row("unknown")

        weights = 0
        activations = 0
        for position, input_name in enumerate(node.input):
            if not input_name:
                continue
            if self._is_const(input_name):
                if node.op_type == "Gather" and position == 0:
                    continue  # an embedding lookup reads only the rows it outputs (counted with the output)
                size = self._weight_bytes(input_name, quantized)
                if size is None:
                    return row("unknown")
                weights += size
            else:
                size = self._tensor_bytes(input_name, reader_quantized=quantized)
                if size is None:
                    return row("unknown")
                activations += size
        for extra in self.extra_reads.get(id(node), []):
            size = self._tensor_bytes(extra)
            if size is None:
                return row("unknown")
            activations += size
        end = self.chain_end.get(id(node), node)
        for out in end.output:
            if not out:
                continue
            numel = self._numel(out)
            if numel is None:
                return row("unknown")
            activations += numel * self._output_itemsize(out, quantized)
        if node.op_type == "Gather" and self._is_const(node.input[0]):
            weights += self._numel(node.output[0]) or 0
        if node.op_type not in COMPUTE_OPS:
            return row("memory", weights=weights, activations=activations)
        macs = self._macs(node)
        if macs is None:
            return row("unknown")
        return row("compute", macs, weights, activations)

    def _detail(self, node: onnx.NodeProto) -> str:
        """``[dw ]KHxKW[/stride]`` for a convolution (depthwise: one input channel per group), else empty."""
        if "Conv" not in node.op_type:
            return ""
        weight = self._shape(node.input[WEIGHT_INPUT.get(node.op_type, 1)])
        if weight is None or len(weight) < 3:
            return ""
        attrs = {a.name: list(a.ints) if a.ints else a.i for a in node.attribute}
        groups = attrs.get("group", 1)
        kernel = "x".join(str(k) for k in weight[2:])
        strides = attrs.get("strides") or [1]
        stride = f"/{max(strides)}" if isinstance(strides, list) and max(strides) > 1 else ""
        depthwise = "dw " if isinstance(groups, int) and groups > 1 and weight[1] == 1 else ""
        return f"{depthwise}{kernel}{stride}"

    def _qdq_is_fused(self, node: onnx.NodeProto) -> bool:
        """A DQ of a constant or one read only by int8 layers, or a Q after an int8 layer, costs nothing."""
        if node.op_type == "DequantizeLinear":
            if self._is_const(node.input[0]):
                return True
            readers = self.consumers.get(node.output[0], [])
            return bool(readers) and all(id(r) in self.quantized for r in readers)
        producer = self.producer.get(node.input[0])
        return producer is not None and id(producer) in self.quantized

    def _macs(self, node: onnx.NodeProto) -> int | None:
        op = node.op_type
        weight = self._shape(node.input[WEIGHT_INPUT[op]])
        out = self._numel(node.output[0])
        if weight is None or out is None:
            return None
        if op in ("Conv", "QLinearConv", "ConvInteger"):
            # W is (Cout, Cin / groups, *kernel): each output element is Cin/groups * prod(kernel) MACs
            return out * math.prod(weight[1:])
        if op == "ConvTranspose":
            # W is (Cin, Cout / groups, *kernel): each *input* element is scattered to Cout/groups * prod(kernel)
            data = self._numel(node.input[0])
            return None if data is None else data * math.prod(weight[1:])
        data_shape = self._shape(node.input[0])
        if data_shape is None or not data_shape:
            return None
        if op == "Gemm":
            trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
            depth = data_shape[0] if trans_a else data_shape[-1]
        else:  # MatMul family: (..., M, K) x (..., K, N); a 1-D A is (K,)
            depth = data_shape[-1]
        return out * depth


def onnx_type_name(dtype: int) -> str:
    """A short name for an ONNX element type (``int64``, ``uint8``...)."""
    import onnx

    if dtype == 0:
        return "unknown"
    return str(onnx.helper.tensor_dtype_to_np_dtype(dtype).name)
