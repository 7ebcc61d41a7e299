"""Peak rates of a device (compute per precision, memory bandwidth), each labelled with where it came from.

A roofline estimate is only as honest as its peaks, so every figure carries a label: ``published`` (a target
profile's data-sheet figure), ``derived`` (computed from a published figure by a stated rule) or ``measured`` (a
microbenchmark on this host, :mod:`edgetl.estimate.host_peaks`). Ops are counted the usual way: one
multiply-accumulate is 2 ops, and data-sheet TOPS/TFLOPS are taken as dense figures (the target profiles already
halve NVIDIA's sparse figures).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from edgetl.errors import ConfigError

if TYPE_CHECKING:
    from edgetl.targets import Hardware, TargetProfile

ComputePrecision = Literal["fp32", "fp16", "int8"]

# fp32 is never published in a target profile; it is derived from the fp16 figure by the kind of accelerator.
# NVIDIA GPUs (the shipped profiles are Ampere Orin and an H100): the published fp16 figure is the dense
# tensor-core rate, and CUDA-core fp32 is about an eighth of it (Jetson AGX Orin 64GB: 2048 cores x 2 x 1.3 GHz
# = 5.3 TFLOPS against 42.5 dense fp16; H100 SXM: 67 against 989, a sixteenth). Integrated GPUs with matrix
# engines (Intel Arc Xe-cores: 1024 fp32 lanes x 2 x 2.25 GHz = 4.6 TFLOPS against 9 fp16) run fp32 at half.
FP32_PER_FP16 = {"gpu": 1 / 8, "igpu": 1 / 2}
# CPUs with int8 dot-product instructions (AVX-VNNI, AVX512-VNNI, Arm sdot) do 4 int8 MACs per 32-bit lane where
# an FMA does 1 fp32 MAC, so fp32 is a quarter of the int8 rate.
FP32_PER_INT8_CPU = 1 / 4
# Where only one of int8 and fp16 is published, the other is taken at 2x / 0.5x (same units, twice the lanes).
INT8_PER_FP16 = 2.0


@dataclass(frozen=True)
class DevicePeaks:
    """Peak compute per precision (ops/s, 1 MAC = 2 ops) and memory bandwidth (bytes/s) of one device.

    A compute figure is ``None`` where the device has no such rate (an NPU has no fp32) or none is known;
    :meth:`ops_per_s` then raises. ``labels`` says for each figure whether it is published, derived or measured,
    with the rule or the source.
    """

    int8_ops_per_s: float | None
    fp16_ops_per_s: float | None
    fp32_ops_per_s: float | None
    bandwidth_bytes_per_s: float
    source: str
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("int8_ops_per_s", "fp16_ops_per_s", "fp32_ops_per_s", "bandwidth_bytes_per_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"DevicePeaks.{name} must be positive, got {value!r}")

    def ops_per_s(self, precision: str) -> float:
        """Peak ops/s at ``precision`` (fp32, fp16 or int8).

        Raises:
            ConfigError: the device has no figure for that precision.
        """
        value = {"fp32": self.fp32_ops_per_s, "fp16": self.fp16_ops_per_s, "int8": self.int8_ops_per_s}.get(
            precision
        )
        if value is None:
            raise ConfigError(
                f"{self.source}: no {precision} peak", hint="estimate at a precision the device has a figure for "
                "(float_precision='fp16' for an NPU or a GPU), or give DevicePeaks explicitly",
            )
        return value

    @classmethod
    def from_hardware(cls, hardware: Hardware, *, source: str = "target profile") -> DevicePeaks:
        """Peaks from a target profile's published ``hardware`` figures; missing precisions derived by rule.

        Args:
            hardware: the ``hardware:`` section of a target profile.
            source: where the figures come from (a file name), written into :attr:`source`.

        Raises:
            ConfigError: the profile publishes no memory bandwidth, or neither an int8 nor an fp16 peak.
        """
        if hardware.memory_bandwidth_gbs is None:
            raise ConfigError(f"{source}: hardware.memory_bandwidth_gbs is not published",
                              hint="measure the host (edgetl.estimate.host_peaks) or give DevicePeaks explicitly")
        int8 = hardware.peak_int8_tops * 1e12 if hardware.peak_int8_tops else None
        fp16 = hardware.peak_fp16_tflops * 1e12 if hardware.peak_fp16_tflops else None
        if int8 is None and fp16 is None:
            raise ConfigError(f"{source}: neither hardware.peak_int8_tops nor hardware.peak_fp16_tflops is published",
                              hint="measure the host (edgetl.estimate.host_peaks) or give DevicePeaks explicitly")
        labels = {"bandwidth": "published (hardware.memory_bandwidth_gbs)"}
        labels["int8"] = "published (hardware.peak_int8_tops, dense)"
        labels["fp16"] = "published (hardware.peak_fp16_tflops, dense)"
        if int8 is None and fp16 is not None:
            int8, labels["int8"] = fp16 * INT8_PER_FP16, f"derived: {INT8_PER_FP16:g} x published fp16"
        if fp16 is None and int8 is not None:
            fp16, labels["fp16"] = int8 / INT8_PER_FP16, f"derived: published int8 / {INT8_PER_FP16:g}"
        fp32: float | None
        kind = hardware.accelerator
        if kind in FP32_PER_FP16 and fp16 is not None:
            ratio = FP32_PER_FP16[kind]
            fp32 = fp16 * ratio
            labels["fp32"] = f"derived: fp16 x 1/{1 / ratio:g} ({kind} fp32 units against fp16 matrix units)"
        elif kind == "none" and int8 is not None:
            fp32 = int8 * FP32_PER_INT8_CPU
            labels["fp32"] = f"derived: int8 x 1/{1 / FP32_PER_INT8_CPU:g} (CPU int8 dot-product vs fp32 FMA lanes)"
        else:
            fp32, labels["fp32"] = None, f"none: an {kind} has no published or derivable fp32 rate"
        return cls(int8_ops_per_s=int8, fp16_ops_per_s=fp16, fp32_ops_per_s=fp32,
                   bandwidth_bytes_per_s=hardware.memory_bandwidth_gbs * 1e9, source=f"published: {source}",
                   labels=labels)

    @classmethod
    def from_target(cls, profile: TargetProfile) -> DevicePeaks:
        """:meth:`from_hardware` on a loaded target profile, naming the profile and its file as the source."""
        return cls.from_hardware(profile.hardware, source=f"target {profile.name} ({profile.source})")

    def to_dict(self) -> dict[str, Any]:
        return {"int8_ops_per_s": self.int8_ops_per_s, "fp16_ops_per_s": self.fp16_ops_per_s,
                "fp32_ops_per_s": self.fp32_ops_per_s, "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s,
                "source": self.source, "labels": dict(self.labels)}
