"""Host facts recorded with every measurement."""

from __future__ import annotations

import platform

from edgetl.host import host_facts, host_summary


def test_host_facts_name_the_cpu_cores_isa_and_versions() -> None:
    facts = host_facts()
    assert facts["cpu"] and facts["arch"] == platform.machine()
    assert facts["cores_logical"] >= 1 and facts["memory_gb"] > 0
    assert isinstance(facts["isa"], list)
    if platform.machine() == "x86_64":
        assert "avx2" in facts["isa"] or "sse4_2" in facts["isa"]
    assert "CPUExecutionProvider" in facts["onnxruntime_providers"]
    assert "CPU" in facts["openvino_devices"]
    assert {"python", "edgetl", "onnxruntime", "openvino"} <= set(facts["versions"])
    assert len(facts["hostname_hash"]) == 12 and platform.node() not in str(facts)


def test_summary_is_one_line() -> None:
    line = host_summary()
    assert "\n" not in line and "cores" in line
