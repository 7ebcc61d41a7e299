"""The int8 proof against a precision plan, by layer name: "expected in float: A, B; found in float: A, B".

A runtime reports the layers it runs in float under its own names: ONNX Runtime names the nodes of its optimised
graph after the ONNX nodes or their outputs, with suffixes of its rewrites (``conv2d_3_nchwc``); OpenVINO names
its runtime ops after the ONNX node with a suffix of its own (``node_conv2d_3/WithoutBiases``) or after the output
tensor (``logits``). ``onnx_layer_aliases`` maps every ONNX compute node's name and output names to the module path
the dynamo exporter records (``pkg.torch.onnx.name_scopes``), so that both runtimes' names resolve to the module
paths a precision plan lists. A name that resolves to nothing is "unidentified"; the proof then still counts it.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMPUTE_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "ConvInteger", "QLinearConv", "QLinearMatMul"}
_SUFFIX = re.compile(r"(_[A-Za-z0-9]+)$")


def onnx_layer_aliases(path: Path) -> dict[str, str]:
    """ONNX node name and output names -> module path (``blocks.0.0``), for every conv/matmul node of the file."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    aliases: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type not in COMPUTE_OPS:
            continue
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
        try:
            parts = ast.literal_eval(scopes) if scopes else []
        except (ValueError, SyntaxError):
            parts = []
        # name_scopes ends with the fx node name; the one before it is the module that called the op
        module = str(parts[-2]) if len(parts) >= 2 and parts[-2] else None
        if module:
            for alias in [node.name, *node.output]:
                if alias:
                    aliases[alias] = module
    return aliases


def resolve(runtime_name: str, aliases: dict[str, str]) -> str | None:
    """The module path of a runtime's layer name, or None: the name up to " (precision)" and "/", then with its
    rewrite suffixes (``_nchwc``, ...) stripped one at a time until it is a known ONNX name."""
    name = runtime_name.split(" (")[0].split("/")[0].strip()
    while name:
        if name in aliases:
            return aliases[name]
        stripped = _SUFFIX.sub("", name)
        if stripped == name:
            return None
        name = stripped
    return None


@dataclass
class PlanCheck:
    """What a runtime runs in float, against what the plan keeps in float."""

    expected: list[str]  # plan layers (module paths; ":part" suffixes of attention matmuls kept)
    found: list[str]  # module paths of the runtime's float layers that resolved
    unidentified: list[str] = field(default_factory=list)  # runtime names that resolved to no ONNX layer
    unplanned: list[str] = field(default_factory=list)  # found in float, not in the plan
    missing: list[str] = field(default_factory=list)  # in the plan, but the runtime runs them in int8
    int8: int = 0

    @property
    def ok(self) -> bool:
        return not self.unplanned

    def describe(self) -> str:
        def names(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f", ... ({len(items)})" if len(items) > 8 else "") if items else "none"

        text = (f"expected in float: {names(self.expected)}; found in float: "
                f"{names(self.found + self.unidentified)}; all others int8 ({self.int8})")
        if self.unplanned:
            text += f"; NOT in the plan: {names(self.unplanned)}"
        if self.missing:
            text += f"; planned float but running int8: {names(self.missing)}"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"expected_float": self.expected, "found_float": self.found, "unidentified": self.unidentified,
                "unplanned": self.unplanned, "missing": self.missing, "int8": self.int8, "ok": self.ok,
                "summary": self.describe()}


def check_plan(float_names: list[str], int8_count: int, kept: list[dict[str, Any]],
               aliases: dict[str, str]) -> PlanCheck:
    """Match a runtime's float layers (names) to the plan's float layers (module paths), as multisets.

    A name that does not resolve is unplanned when there is no plan entry left to account for it (the count rule
    of the proof), so the proof never gets weaker where names are missing.
    """
    expected = [str(k["layer"]) for k in kept]
    left = Counter(e.split(":")[0] for e in expected)
    found, unidentified, unplanned = [], [], []
    for raw in float_names:
        path = resolve(raw, aliases)
        if path is None:
            unidentified.append(raw)
            continue
        found.append(path)
        if left[path] > 0:
            left[path] -= 1
        else:
            unplanned.append(path)
    spare = sum(left.values())
    if len(unidentified) > spare:  # more unnamed float layers than planned ones they could be
        unplanned += unidentified[spare:]
    missing = [] if unidentified else [p for p, n in left.items() for _ in range(n)]
    return PlanCheck(expected, found, unidentified, unplanned, missing, int8_count)
