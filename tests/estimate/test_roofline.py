"""Roofline estimate on hand-computed layers built with onnx.helper, and the peaks it runs on."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgetl.errors import ConfigError, ModelFileError
from edgetl.estimate import DevicePeaks, estimate_latency, layer_costs, measure_host_peaks, roofline
from edgetl.targets import load_target

F32 = 4
# Round numbers so expected times are easy to write: 1 TOPS int8, 0.5 TFLOPS fp16, 0.25 TFLOPS fp32, 10 GB/s.
PEAKS = DevicePeaks(int8_ops_per_s=1e12, fp16_ops_per_s=5e11, fp32_ops_per_s=2.5e11, bandwidth_bytes_per_s=1e10,
                    source="test")


def make_model(nodes: list[onnx.NodeProto], inputs: dict[str, tuple[int, list[int | str]]], output: str,
               initializers: dict[str, np.ndarray] | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info(name, dtype, shape) for name, (dtype, shape) in inputs.items()],
        [helper.make_tensor_value_info(output, TensorProto.UNDEFINED, None)],
        [numpy_helper.from_array(value, name) for name, value in (initializers or {}).items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def weights(*shape: int) -> np.ndarray:
    return np.zeros(shape, dtype=np.float32)


def conv_model(n: int | str, cin: int, cout: int, h: int, w: int, k: int, **attrs: object) -> onnx.ModelProto:
    groups = int(attrs.get("group", 1))  # type: ignore[call-overload]
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[k, k], **attrs)
    return make_model([node], {"x": (TensorProto.FLOAT, [n, cin, h, w])}, "y",
                      {"w": weights(cout, cin // groups, k, k), "b": weights(cout)})


def only(costs: list, op: str):  # type: ignore[no-untyped-def]
    rows = [c for c in costs if c.op == op]
    assert len(rows) == 1, rows
    return rows[0]


def test_3x3_conv_macs_and_bytes() -> None:
    cost = only(layer_costs(conv_model(2, 3, 8, 16, 16, 3, pads=[1, 1, 1, 1]), batch=2), "Conv")
    # N * Cout * Hout * Wout * Cin/groups * kh * kw
    assert cost.macs == 2 * 8 * 16 * 16 * 3 * 3 * 3
    assert cost.weight_bytes == (8 * 3 * 3 * 3 + 8) * F32
    assert cost.activation_bytes == (2 * 3 * 16 * 16 + 2 * 8 * 16 * 16) * F32
    assert (cost.kind, cost.precision) == ("compute", "fp32")


def test_depthwise_conv_divides_by_groups() -> None:
    cost = only(layer_costs(conv_model(1, 16, 16, 10, 10, 3, pads=[1, 1, 1, 1], group=16)), "Conv")
    assert cost.macs == 16 * 10 * 10 * 1 * 3 * 3
    assert cost.detail == "dw 3x3"
    assert cost.weight_bytes == (16 * 1 * 3 * 3 + 16) * F32


def test_strided_dilated_asymmetric_padded_conv() -> None:
    model = conv_model(1, 4, 6, 15, 15, 3, strides=[2, 2], dilations=[2, 2], pads=[1, 0, 2, 1])
    cost = only(layer_costs(model), "Conv")
    # effective kernel 5; H: (15 + 1 + 2 - 5) // 2 + 1 = 7, W: (15 + 0 + 1 - 5) // 2 + 1 = 6
    assert cost.macs == 1 * 6 * 7 * 6 * 4 * 3 * 3
    assert cost.detail == "3x3/2"
    assert cost.activation_bytes == (4 * 15 * 15 + 6 * 7 * 6) * F32


def test_conv_transpose_scatters_each_input() -> None:
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], kernel_shape=[3, 3], strides=[2, 2])
    model = make_model([node], {"x": (TensorProto.FLOAT, [1, 4, 5, 5])}, "y", {"w": weights(4, 2, 3, 3)})
    cost = only(layer_costs(model), "ConvTranspose")
    assert cost.macs == 1 * 4 * 5 * 5 * 2 * 3 * 3  # N * Cin * Hin * Win * Cout/groups * kh * kw
    assert cost.activation_bytes == (4 * 5 * 5 + 2 * 11 * 11) * F32  # (5 - 1) * 2 + 3 = 11


def test_gemm_with_transposed_weight() -> None:
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], transB=1)
    model = make_model([node], {"a": (TensorProto.FLOAT, [4, 64])}, "y", {"b": weights(32, 64), "c": weights(32)})
    cost = only(layer_costs(model, batch=4), "Gemm")
    assert cost.macs == 4 * 32 * 64
    assert cost.weight_bytes == (32 * 64 + 32) * F32
    assert cost.activation_bytes == (4 * 64 + 4 * 32) * F32


def test_batched_matmul_with_sequence_length_substituted() -> None:
    node = helper.make_node("MatMul", ["q", "k"], ["scores"])
    model = make_model([node], {"q": (TensorProto.FLOAT, ["batch", 8, "seq", 32]),
                                "k": (TensorProto.FLOAT, ["batch", 8, 32, "seq"])}, "scores")
    cost = only(layer_costs(model, batch=2, dims={"seq": 16}), "MatMul")
    assert cost.macs == 2 * 8 * 16 * 16 * 32
    assert cost.weight_bytes == 0  # both operands are activations (attention)
    assert cost.activation_bytes == (2 * 8 * 16 * 32 * 2 + 2 * 8 * 16 * 16) * F32
    with pytest.raises(ConfigError, match="seq"):
        layer_costs(model, batch=2)


def qdq_conv_model() -> onnx.ModelProto:
    """x -> Q -> DQ -> Conv(DQ(int8 w), DQ(int32 b)) -> Q -> DQ -> y, as quantize_static writes it."""
    scalar = {"s": np.array(0.1, np.float32), "zp": np.array(128, np.uint8), "ws": np.array(0.01, np.float32),
              "bs": np.array(0.001, np.float32), "w_q": np.zeros((8, 3, 3, 3), np.int8),
              "b_q": np.zeros(8, np.int32)}
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "s", "zp"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "ws"], ["w"]),
        helper.make_node("DequantizeLinear", ["b_q", "bs"], ["b"]),
        helper.make_node("Conv", ["x_dq", "w", "b"], ["y_f"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["y_f", "s", "zp"], ["y_q"]),
        helper.make_node("DequantizeLinear", ["y_q", "s", "zp"], ["y"]),
    ]
    return make_model(nodes, {"x": (TensorProto.FLOAT, [1, 3, 16, 16])}, "y", scalar)


def test_int8_qdq_conv_counts_int8_bytes_and_runs_int8() -> None:
    costs = layer_costs(qdq_conv_model())
    conv = only(costs, "Conv")
    assert conv.precision == "int8"
    assert conv.macs == 8 * 16 * 16 * 3 * 3 * 3
    assert conv.weight_bytes == 8 * 3 * 3 * 3 * 1 + 8 * 4  # int8 weights, int32 bias
    assert conv.activation_bytes == 3 * 16 * 16 * 1 + 8 * 16 * 16 * 1  # uint8 in and out
    kinds = [(c.op, c.kind) for c in costs]
    # the graph's first Q and last DQ convert real float tensors; the ones around the conv fold into it
    assert kinds == [("QuantizeLinear", "memory"), ("DequantizeLinear", "free"), ("DequantizeLinear", "free"),
                     ("DequantizeLinear", "free"), ("Conv", "compute"), ("QuantizeLinear", "free"),
                     ("DequantizeLinear", "memory")]
    assert costs[0].activation_bytes == 3 * 16 * 16 * (F32 + 1)


def test_qlinearconv_runs_int8() -> None:
    init = {"xs": np.array(0.1, np.float32), "xz": np.array(128, np.uint8), "w": np.zeros((8, 3, 3, 3), np.int8),
            "ws": np.array(0.01, np.float32), "wz": np.array(0, np.int8), "ys": np.array(0.2, np.float32),
            "yz": np.array(128, np.uint8)}
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"],
                            kernel_shape=[3, 3])
    model = make_model([node], {"x": (TensorProto.UINT8, [1, 3, 10, 10])}, "y", init)
    cost = only(layer_costs(model), "QLinearConv")
    assert (cost.precision, cost.macs) == ("int8", 8 * 8 * 8 * 27)
    assert cost.activation_bytes == 3 * 10 * 10 + 8 * 8 * 8
    assert cost.weight_bytes == 8 * 27 + 3 * (4 + 1)  # int8 weights plus scalar scales/zero points


def test_add_is_memory_bound_bytes_only() -> None:
    node = helper.make_node("Add", ["a", "b"], ["y"])
    shape = [1, 8, 4, 4]
    model = make_model([node], {"a": (TensorProto.FLOAT, shape), "b": (TensorProto.FLOAT, shape)}, "y")
    est = estimate_latency(model, PEAKS)
    (row,) = est.layers
    assert (row.macs, row.activation_bytes, row.bound) == (0, 3 * 128 * F32, "memory")
    assert row.time_s == pytest.approx(3 * 128 * F32 / 1e10)
    assert est.label.startswith("estimate")


def test_bound_follows_the_peaks() -> None:
    costs = layer_costs(conv_model(1, 64, 64, 28, 28, 3, pads=[1, 1, 1, 1]))
    cost = only(costs, "Conv")
    compute_s, memory_s = 2 * cost.macs / 2.5e11, cost.bytes / 1e10
    assert compute_s > memory_s  # 64 x 64 x 3 x 3 conv: about 256 MACs per byte
    fast_memory = roofline(costs, PEAKS)
    assert fast_memory.layers[0].bound == "compute"
    assert fast_memory.total_s == pytest.approx(compute_s)
    slow_memory = DevicePeaks(int8_ops_per_s=None, fp16_ops_per_s=None, fp32_ops_per_s=1e15,
                              bandwidth_bytes_per_s=1e9, source="test")
    est = roofline(costs, slow_memory)
    assert est.layers[0].bound == "memory"
    assert est.total_s == pytest.approx(cost.bytes / 1e9)


def test_dynamic_batch_substituted_and_fixed_batch_checked() -> None:
    one = only(layer_costs(conv_model("N", 3, 8, 16, 16, 3), batch=1), "Conv")
    four = only(layer_costs(conv_model("N", 3, 8, 16, 16, 3), batch=4), "Conv")
    assert four.macs == 4 * one.macs == 4 * 8 * 14 * 14 * 27
    assert four.activation_bytes == 4 * one.activation_bytes
    assert four.weight_bytes == one.weight_bytes
    with pytest.raises(ConfigError, match="fixed batch of 1"):
        layer_costs(conv_model(1, 3, 8, 16, 16, 3), batch=4)


def test_activation_after_conv_fuses_unless_disabled() -> None:
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]), helper.make_node("Relu", ["c"], ["y"])]
    model = make_model(nodes, {"x": (TensorProto.FLOAT, [1, 4, 8, 8])}, "y", {"w": weights(4, 4, 1, 1)})
    conv, relu = layer_costs(model)
    assert (relu.kind, relu.bytes) == ("fused", 0)
    assert conv.activation_bytes == 2 * 4 * 8 * 8 * F32
    conv, relu = layer_costs(model, fuse=False)
    assert (relu.kind, relu.activation_bytes) == ("memory", 2 * 4 * 8 * 8 * F32)


def test_overhead_and_fp16_precision() -> None:
    model = conv_model(1, 3, 8, 16, 16, 3)
    base = estimate_latency(model, PEAKS)
    with_overhead = estimate_latency(model, PEAKS, overhead_s_per_layer=1e-5)
    assert with_overhead.total_s == pytest.approx(base.total_s + 1e-5)
    half = estimate_latency(model, PEAKS, float_precision="fp16")
    assert half.layers[0].precision == "fp16"
    assert half.bytes * 2 == base.bytes
    with pytest.raises(ConfigError, match="fp16"):
        estimate_latency(model, DevicePeaks(None, None, 1e12, 1e10, "no fp16"), float_precision="fp16")


def test_missing_model_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelFileError):
        layer_costs(tmp_path / "absent.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(ModelFileError):
        layer_costs(tmp_path / "junk.onnx")


def test_from_hardware_on_the_shipped_jetson_profile() -> None:
    profile = load_target("jetson")
    peaks = DevicePeaks.from_target(profile)
    assert peaks.int8_ops_per_s == pytest.approx(20e12)
    assert peaks.fp16_ops_per_s == pytest.approx(10e12)
    assert peaks.bandwidth_bytes_per_s == pytest.approx(68e9)
    assert peaks.fp32_ops_per_s == pytest.approx(10e12 / 8)
    assert peaks.labels["int8"].startswith("published")
    assert peaks.labels["fp32"].startswith("derived")
    assert "jetson-orin-nano" in peaks.source and peaks.source.startswith("published")
    assert DevicePeaks.from_hardware(profile.hardware).to_dict()["labels"] == peaks.labels


def test_from_hardware_without_compute_peaks_says_so() -> None:
    with pytest.raises(ConfigError, match="peak_int8_tops"):
        DevicePeaks.from_target(load_target("raspberry-pi-5"))
    npu = DevicePeaks.from_target(load_target("intel-core-ultra"))
    assert npu.fp32_ops_per_s is None
    with pytest.raises(ConfigError, match="no fp32 peak"):
        npu.ops_per_s("fp32")


def test_host_peaks_tiny_run_is_positive_and_finite() -> None:
    host = measure_host_peaks(threads=1, matmul_size=64, bandwidth_mb=1, rounds=2, min_time_s=0.005)
    figures = [host.fp32_flops_per_s, host.int8_ops_per_s, host.bandwidth_bytes_per_s, host.op_overhead_s]
    for figure in figures:
        assert math.isfinite(figure.median) and 0 < figure.low <= figure.median <= figure.high
    peaks = host.to_device_peaks()
    assert peaks.labels["fp32"].startswith("measured")
    assert peaks.ops_per_s("int8") == host.int8_ops_per_s.median


def test_encoder_block_weights_norms_and_shape_arithmetic() -> None:
    hidden, seq = 16, 10
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),  # a projection: the weight is an initializer
        helper.make_node("Add", ["h", "bias"], ["hb"]),  # bias add folds into the projection
        helper.make_node("LayerNormalization", ["hb", "gamma", "beta"], ["n"], axis=-1),
        helper.make_node("Softmax", ["n"], ["p"], axis=-1),
        helper.make_node("Shape", ["p"], ["shape"]),  # shape arithmetic: constant once the batch is fixed
        helper.make_node("Reshape", ["p", "shape"], ["y"]),
    ]
    init = {"w": weights(hidden, hidden), "bias": weights(hidden), "gamma": weights(hidden), "beta": weights(hidden)}
    model = make_model(nodes, {"x": (TensorProto.FLOAT, ["batch", "seq", hidden])}, "y", init)
    costs = {c.op: c for c in layer_costs(model, batch=3, dims={"seq": seq})}
    tokens = 3 * seq
    assert costs["MatMul"].macs == tokens * hidden * hidden
    assert costs["MatMul"].weight_bytes == hidden * hidden * F32
    assert costs["Add"].kind == "fused"
    for op in ("LayerNormalization", "Softmax"):
        assert (costs[op].kind, costs[op].activation_bytes) == ("memory", 2 * tokens * hidden * F32)
    assert costs["Shape"].kind == costs["Reshape"].kind == "free"
