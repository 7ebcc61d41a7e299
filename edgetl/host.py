"""Facts about the machine a measurement was taken on, recorded with every benchmark result.

A latency figure means nothing without the CPU, its instruction set, the thread count and the library versions
beside it; ``host_facts()`` gathers them once. Runtime-specific facts (ONNX Runtime providers, OpenVINO devices,
CUDA) are looked up only when the library is installed, and never fail.
"""

from __future__ import annotations

import importlib.util
import os
import platform
from functools import lru_cache
from typing import Any

from edgetl.manifest import library_versions

# Instruction-set flags that change which kernels the runtimes pick (int8 VNNI/AMX, bf16, fp16).
ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16",
    # Arm (aarch64 /proc/cpuinfo "Features")
    "asimd", "asimddp", "asimdhp", "sve", "sve2", "i8mm", "bf16",
)


# x86 instructions that multiply u8 x s8 into int32 without an int16 intermediate; without one, ONNX Runtime and
# OpenVINO use vpmaddubsw, whose pairwise int16 sums saturate on full-range int8 weights (edgetl/quant/quantizer.py)
X86_INT8_DOT = ("avx512_vnni", "avx_vnni", "amx_int8")


def u8s8_saturates() -> bool:
    """True on an x86 host without VNNI/AMX, where full-range u8 x s8 int8 kernels can saturate."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    return not (_cpuinfo()[1] & set(X86_INT8_DOT))


def _cpuinfo() -> tuple[str, set[str]]:
    """CPU model name and the set of feature flags, from /proc/cpuinfo (Linux) or platform (elsewhere)."""
    model, flags = "", set[str]()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and not model:
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass  # not Linux: fall back to platform below
    return model or platform.processor() or platform.machine(), flags


def _onnxruntime_providers() -> list[str]:
    if importlib.util.find_spec("onnxruntime") is None:
        return []
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def _openvino_devices() -> dict[str, str]:
    if importlib.util.find_spec("openvino") is None:
        return {}
    import openvino

    core = openvino.Core()
    devices = {}
    for device in core.available_devices:
        try:
            devices[device] = str(core.get_property(device, "FULL_DEVICE_NAME"))
        except RuntimeError:
            devices[device] = device
    return devices


def _cuda_devices() -> list[str]:
    """CUDA GPUs torch can see (torch is already a dependency; it is imported only here)."""
    if importlib.util.find_spec("torch") is None:
        return []
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def memory_gb() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        return None


def physical_cores() -> int | None:
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except ImportError:
        return None


@lru_cache(maxsize=1)
def host_facts() -> dict[str, Any]:
    """CPU model, cores, ISA flags, memory, OS, accelerators and library versions of this machine."""
    model, flags = _cpuinfo()
    return {
        "cpu": model,
        "arch": platform.machine(),
        "cores_logical": os.cpu_count(),
        "cores_physical": physical_cores(),
        "memory_gb": memory_gb(),
        "isa": [f for f in ISA_FLAGS if f in flags],
        "os": platform.platform(),
        "hostname_hash": _hostname_hash(),
        "onnxruntime_providers": _onnxruntime_providers(),
        "openvino_devices": _openvino_devices(),
        "cuda_devices": _cuda_devices(),
        "versions": library_versions(),
    }


def _hostname_hash() -> str:
    """A short stable id of the machine (not its name): tells two results files apart without leaking names."""
    import hashlib

    return hashlib.sha256(platform.node().encode()).hexdigest()[:12]


def host_summary(facts: dict[str, Any] | None = None) -> str:
    """One line for tables and reports, e.g. 'Intel Xeon, x86_64, 2 cores, avx512_vnni amx_int8'."""
    f = facts if facts is not None else host_facts()
    int8 = [x for x in f.get("isa", []) if x in ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")]
    isa = " ".join(int8) if int8 else ("avx2" if "avx2" in f.get("isa", []) else "no int8 ISA extensions")
    return f"{f.get('cpu')}, {f.get('arch')}, {f.get('cores_logical')} cores, {isa}"
