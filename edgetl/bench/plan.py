"""What a benchmark measures: the source (a run or one model file) and the rows planned from a target.

The rows are the target's runtime specs crossed with the artifacts each can run, as each runtime adapter states
(``formats``, ``capabilities``, ``reduces_precision``). What this host lacks is a ``skipped`` row with its reason.
When the target's device is not this host (a Jetson, an NPU), the host's ONNX Runtime CPU and OpenVINO CPU run the
same artifacts as labelled proxies (``proxy: true``): useful for comparing artifacts, never a claim about the device.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetl.errors import ModelFileError
from edgetl.execution.base import Planned
from edgetl.manifest import Artifact, read_manifest
from edgetl.targets import TargetProfile

HOST_PROXIES = (("onnxruntime", "cpu"), ("openvino", "CPU"))


@dataclass
class Source:
    """What is being benchmarked: artifacts plus what the run says about task, inputs, data and preprocessing."""

    path: Path
    artifacts: list[tuple[Artifact, Path]]
    from_run: bool
    task: str = "image_classification"
    backbone: str | None = None
    classes: list[str] | None = None
    preprocess: dict[str, Any] | None = None
    io: Any = None  # edgetl.artifacts.ModelIO of the run's models (None for a bare file)
    split_file: Path | None = None
    notes: list[str] = field(default_factory=list)
    # the run's float model (export manifest and its model card), carried into every row
    model_facts: dict[str, Any] = field(default_factory=dict)  # macs, params, float_source, float_method
    # each int8 route's top-1 on val as the build recorded it (export manifest), which the route is chosen on
    int8_selection: dict[str, Any] | None = None


def _ov_size(xml: Path) -> int:
    return xml.stat().st_size + (xml.with_suffix(".bin").stat().st_size if xml.with_suffix(".bin").is_file() else 0)


def _guess_precision(path: Path, fmt: str, meta: dict[str, str]) -> str:
    """int8 when the graph holds quantization ops, else fp16 when its weights are fp16, else fp32."""
    stated = meta.get("precision") or meta.get("edgetl.precision") or meta.get("framework.precision")
    if stated in ("fp32", "fp16", "bf16", "int8"):
        return stated
    if fmt == "onnx":
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        ops = {n.op_type for n in model.graph.node}
        if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger"}:
            return "int8"
        if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
            return "fp16"
        return "fp32"
    import openvino

    model = openvino.Core().read_model(str(path))
    if any(op.get_type_name() == "FakeQuantize" for op in model.get_ops()):
        return "int8"
    constants = [op for op in model.get_ops() if op.get_type_name() == "Constant"]
    if any(str(op.get_output_element_type(0)) in ("i8", "u8") for op in constants):
        return "int8"
    return "fp32"


def _file_source(path: Path) -> Source:
    from edgetl.runtimes import model_format
    from edgetl.runtimes.base import check_onnx_file, check_openvino_files, short_error
    from edgetl.runtimes.metadata import model_classes, model_preprocess, read_metadata

    fmt = model_format(path)
    if fmt == "torch":
        raise ModelFileError(f"{path}: benchmark a torch model through its run directory",
                             hint="pass the run directory (OUT/) or an exported .onnx / .xml file")
    (check_onnx_file if fmt == "onnx" else check_openvino_files)(path)
    try:
        meta = read_metadata(path)
        precision = _guess_precision(path, fmt, meta)
    except RuntimeError as exc:  # openvino read_model: unreadable XML or weights
        raise ModelFileError(f"{path} is not a readable OpenVINO IR (corrupt or truncated): {short_error(exc)}",
                             hint="re-export it; the .xml and .bin must come from one export") from exc
    size = path.stat().st_size if fmt == "onnx" else _ov_size(path)
    artifact = Artifact(name=path.stem, format=fmt, precision=precision, source="file", path=path.name,
                        size_bytes=size)
    source = Source(path=path, artifacts=[(artifact, path)], from_run=False, classes=model_classes(meta),
                    preprocess=model_preprocess(meta))
    source.task = meta.get("task") or meta.get("edgetl.task") or "image_classification"
    source.backbone = meta.get("backbone") or meta.get("framework.backbone") or meta.get("edgetl.backbone")
    return source


def _run_source(path: Path) -> Source:
    from edgetl.artifacts import ModelIO

    run_dir = path.parent if (path / "manifest.json").is_file() and not (path / "export").is_dir() else path
    export_dir = run_dir / "export"
    export = read_manifest(export_dir)
    bad = export.verify_outputs(export_dir)
    if bad:
        raise ModelFileError(f"{export_dir}: {', '.join(bad)} missing or not matching the sha256 in its manifest "
                             "(modified, truncated or corrupt)", hint="rerun `edgetl export` (or `edgetl build`)")
    artifacts = []
    for entry in export.info.get("artifacts", []):
        artifact = Artifact.model_validate(entry)
        artifacts.append((artifact, export_dir / artifact.path))
    info = export.info
    source = Source(path=run_dir, artifacts=artifacts, from_run=True, task=info.get("task", "image_classification"),
                    backbone=info.get("backbone"), classes=info.get("classes"), preprocess=info.get("preprocess"),
                    io=ModelIO.model_validate(info["io"]) if info.get("io") else None,
                    int8_selection=info.get("int8_selection"))
    float_model = info.get("float_model")  # the torch model every artifact was exported from, relative to export/
    if float_model and (export_dir / float_model).is_file():
        model_file = export_dir / float_model
        torch_artifact = Artifact(name="torch-fp32", format="torch", precision="fp32", source="fp32",
                                  path=float_model, size_bytes=model_file.stat().st_size)
        source.artifacts.insert(0, (torch_artifact, model_file))
    split = info.get("split")
    if split and (export_dir / split).is_file():
        source.split_file = export_dir / split
    source.model_facts = {"macs": info.get("macs"), "params": info.get("params"),
                          "float_source": info.get("float_source"),
                          "float_method": _float_method(export_dir / float_model) if float_model else None}
    return source


def _float_method(model_file: Path) -> str | None:
    """The lineage method of the float model's card (finetune, distill, prune); None when unreadable."""
    try:
        manifest = read_manifest(model_file.parent)
    except ModelFileError:
        return None
    for card in manifest.info.get("models", []):
        if card.get("file") == model_file.name:
            return (card.get("lineage") or {}).get("method")
    return None


def open_source(path: str | Path) -> Source:
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"{p} does not exist", hint="pass a run directory (OUT/) or an .onnx / .xml file")
    return _run_source(p) if p.is_dir() else _file_source(p)


def host_is_target(target: TargetProfile) -> bool:
    """True when this machine is an instance of the target (a generic x86-64 CPU profile on an x86-64 host)."""
    return target.is_host_cpu and platform.machine().lower() in ("x86_64", "amd64")


def plan_rows(target: TargetProfile, source: Source) -> list[Planned]:
    """Every (artifact, runtime, device, precision) row: the target's specs, then host proxies where needed."""
    from edgetl.runtimes import RUNTIMES

    on_target = host_is_target(target)
    rows: list[Planned] = []
    unavailable: list[str] = []
    for spec in target.runtimes:
        adapter = RUNTIMES.get(spec.runtime)
        ok, why = adapter.available(spec.device)
        if not ok:
            unavailable.append(spec.label)
        for precision in spec.precisions:
            matches = [(a, f) for a, f in source.artifacts if adapter.runs(a.format, a.precision, precision)]
            fmt = adapter.format
            if not matches and source.from_run and (fmt != "torch" or precision != "fp32"):
                produced = ", ".join(a.name for a, _ in source.artifacts) or "none"
                placeholder = Artifact(name=f"{fmt}-{precision}", format=fmt, precision=precision, source="-",
                                       path="", size_bytes=0)
                rows.append(Planned(placeholder, Path(), spec.runtime, spec.device, precision, False,
                                    skip=f"no {precision} {fmt} artifact was exported (artifacts: {produced})"))
            for artifact, file in matches:
                stand_in = ok and not on_target  # runs here, on a machine that is not the target
                rows.append(Planned(artifact, file, spec.runtime, spec.device, precision, proxy=stand_in,
                                    note=f"host stand-in for {target.name}'s {spec.label}" if stand_in else "",
                                    skip="" if ok else f"not on this host: {why}"))
    planned = {(p.artifact.name, p.runtime, p.device, p.precision) for p in rows}
    if unavailable or not rows or all(p.skip for p in rows):
        for runtime, device in HOST_PROXIES:
            adapter = RUNTIMES.get(runtime)
            runnable = adapter.capabilities[device]
            for artifact, file in source.artifacts:
                key = (artifact.name, runtime, device, artifact.precision)
                if (artifact.precision in runnable and adapter.runs(artifact.format, artifact.precision,
                                                                    artifact.precision) and key not in planned):
                    rows.append(Planned(artifact, file, runtime, device, artifact.precision, proxy=True,
                                        note=f"host proxy for {', '.join(unavailable) or target.name}"))
                    planned.add(key)
    # the float torch model is the reference every artifact is compared with
    for artifact, file in source.artifacts:
        if artifact.format == "torch" and not any(p.runtime == "torch" for p in rows):
            rows.append(Planned(artifact, file, "torch", "cpu", "fp32", proxy=not on_target,
                                note="reference: the float model in eager PyTorch"))
    return rows
