"""What an exported model says about itself: labels and preprocessing from ONNX ``metadata_props`` / OpenVINO
``rt_info`` (the export stage writes them; ``ov.convert_model`` carries ONNX metadata into ``rt_info['framework']``).

Readers are tolerant: a model from elsewhere may carry none of it, or name it differently (``labels``, ``names``,
``model_info/labels``); what cannot be read is simply absent.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

CLASS_KEYS = ("classes", "labels", "names", "class_names")
PREPROCESS_KEYS = ("preprocess",)
# prefixes under which the same facts may be stored; stripped when looking a key up
PREFIXES = ("edgetl.", "edgetl/", "framework.", "model_info.")


def read_metadata(path: str | Path) -> dict[str, str]:
    """Flat ``key -> text`` metadata of an ``.onnx`` or OpenVINO ``.xml`` (nested rt_info keys joined by '.')."""
    p = Path(path)
    if p.suffix.lower() == ".onnx":
        import onnx

        model = onnx.load(str(p), load_external_data=False)
        return {prop.key: prop.value for prop in model.metadata_props}
    if p.suffix.lower() == ".xml":
        import openvino

        model = openvino.Core().read_model(str(p))
        return _flatten_rt_info(model.get_rt_info())
    return {}


def _flatten_rt_info(node: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key in node:
        value = node[key]
        name = f"{prefix}{key}"
        if isinstance(value, dict) or hasattr(value, "keys"):
            out.update(_flatten_rt_info(value, f"{name}."))
        else:
            out[name] = value.astype(str) if hasattr(value, "astype") else str(value)
    return out


def _lookup(meta: dict[str, str], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        if key in meta:
            return meta[key]
        for prefix in PREFIXES:
            if prefix + key in meta:
                return meta[prefix + key]
    return None


def _parse_list(text: str) -> list[str] | None:
    text = text.strip()
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, TypeError):
            continue
        if isinstance(value, list):
            return [str(v) for v in value]
        if isinstance(value, dict):  # {0: "cat", 1: "dog"} (ultralytics style)
            return [str(value[k]) for k in sorted(value, key=lambda k: int(k))]
    if text:
        sep = "," if "," in text else None
        return [part.strip() for part in text.split(sep) if part.strip()]
    return None


def model_classes(meta: dict[str, str]) -> list[str] | None:
    raw = _lookup(meta, CLASS_KEYS)
    return _parse_list(raw) if raw is not None else None


def model_preprocess(meta: dict[str, str]) -> dict[str, Any] | None:
    """The ``Preprocess`` fields as a dict, from a JSON ``preprocess`` entry or loose mean/std/image_size keys."""
    raw = _lookup(meta, PREPROCESS_KEYS)
    if raw is not None:
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
    loose = {k: _lookup(meta, (k,)) for k in ("image_size", "resize_size", "mean", "std", "interpolation")}
    if loose["mean"] is None or loose["std"] is None or loose["image_size"] is None:
        return None
    try:
        out: dict[str, Any] = {
            "image_size": int(loose["image_size"]),
            "mean": [float(v) for v in _parse_list(loose["mean"]) or []],
            "std": [float(v) for v in _parse_list(loose["std"]) or []],
        }
    except ValueError:
        return None
    if loose["resize_size"]:
        out["resize_size"] = int(loose["resize_size"])
    if loose["interpolation"]:
        out["interpolation"] = loose["interpolation"]
    return out
