"""``edgetl export``: ONNX (fp32, int8 QDQ) and OpenVINO IR, each self-describing and checked against torch.

Sources: the fine-tuned checkpoint (fp32) and the quantize stage's converted programs (``qat.pt2``, ``ptq.pt2``).
ONNX goes through the dynamo exporter (the TorchScript exporter cannot export PT2E models); zero ``Pad`` ops in front
of convs are folded into the conv (``edgetl.export.onnx_passes``). OpenVINO IR is converted from the ONNX files and
saved with fp32 weights. Every artifact then passes ``edgetl.export.parity``: top-1 agreement and logit difference
against its torch model, and (int8) the proof that its convolutions run in int8 in the runtime.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl import __version__
from edgetl.config import BuildConfig
from edgetl.errors import ExportError, ModelFileError
from edgetl.fsutil import atomic_dir, sha256_json, write_json
from edgetl.manifest import Artifact, Manifest, hash_outputs, library_versions, read_manifest
from edgetl.export.parity import describe_agreement
from edgetl.targets import TargetProfile

if TYPE_CHECKING:
    import torch

    from edgetl.stages.quantize import TrainInputs

log = logging.getLogger("edgetl.export")

STAGE = "export"
SOURCES = ("fp32", "qat", "ptq")
ONNX_FILES = {"fp32": "model_fp32.onnx", "qat": "model_int8_qat.onnx", "ptq": "model_int8_ptq.onnx"}
INPUT_NAME, OUTPUT_NAME = "input", "logits"
REFERENCE_BATCH = 32  # torch reference batch; the runtimes run at the deployed batch (1, or the fixed batch)


@dataclass
class ExportResult:
    """What ``export`` produced; the files are listed in ``out_dir/manifest.json`` (``info["artifacts"]``)."""

    out_dir: Path
    artifacts: list[Artifact]
    parity: dict[str, dict[str, Any]] = field(default_factory=dict)
    wall_time_s: float = 0.0


def artifact_name(fmt: str, source: str) -> str:
    return f"{fmt}-fp32" if source == "fp32" else f"{fmt}-int8-{source}"


def model_metadata(inputs: TrainInputs, source: str) -> dict[str, str]:
    """What an exported model says about itself (ONNX ``metadata_props``, OpenVINO ``rt_info["edgetl"]``)."""
    pp, ckpt = inputs.preprocess, inputs.checkpoint
    return {
        "labels": json.dumps(list(ckpt.classes)),
        "preprocess": json.dumps(pp.model_dump(mode="json")),
        "image_size": str(pp.image_size),
        "resize_size": str(pp.resize_size),
        "crop_pct": str(ckpt.crop_pct),
        "interpolation": pp.interpolation,
        "mean": json.dumps(list(pp.mean)),
        "std": json.dumps(list(pp.std)),
        "input_layout": "NCHW RGB float32, (x / 255 - mean) / std",
        "backbone": ckpt.backbone,
        "source": source,
        "precision": "fp32" if source == "fp32" else "int8",
        "source_manifest": inputs.manifest.hash,
        "edgetl_version": __version__,
    }


# --------------------------------------------------------------------------------------------------- ONNX
def export_onnx(model: Any, example: torch.Tensor, path: Path, *, opset: int, dynamic: bool,
                metadata: dict[str, str], what: str) -> int:
    """Dynamo-export ``model`` (an ``nn.Module`` or ``ExportedProgram``) to ``path``; returns the pads folded."""
    import onnx
    import torch

    from edgetl.export.onnx_passes import fold_pads
    from edgetl.quant.pt2e import batch_dim, export_failure

    try:
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes=batch_dim(dynamic), verbose=False)
    except Exception as exc:  # torch.export errors and the exporter's ConversionError / DispatchError
        raise export_failure(STAGE, what, exc) from exc
    if program is None:
        raise ExportError(f"{STAGE}: the ONNX exporter returned nothing for {what}")
    proto = program.model_proto
    folded = fold_pads(proto)
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return folded


def export_openvino(onnx_path: Path, xml: Path, metadata: dict[str, str]) -> None:
    """ONNX -> OpenVINO IR with fp32 weights (``compress_to_fp16=False``) and edgetl's rt_info."""
    import openvino as ov

    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:  # OpenVINO's converter raises RuntimeError / OpConversionFailure
        from edgetl.runtimes.base import short_error

        raise ExportError(f"{STAGE}: OpenVINO cannot convert {onnx_path.name}: {short_error(exc)}",
                          hint="check the ONNX opset (target export.opset) and the op it names") from exc
    for key, value in metadata.items():
        model.set_rt_info(value, ["edgetl", key])
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(xml), compress_to_fp16=False)


# --------------------------------------------------------------------------------------------------- sources
@dataclass
class _Source:
    name: str  # fp32 | qat | ptq
    model: Any  # what the ONNX exporter takes
    reference: Any  # torch callable producing the logits the artifact must reproduce
    reference_label: str


def _sources(inputs: TrainInputs, quant_dir: Path | None, dynamic: bool) -> tuple[list[_Source], list[dict[str, Any]],
                                                                                 Manifest | None]:
    from edgetl.quant.pt2e import load_program

    fp32 = inputs.checkpoint.build_model().eval()
    sources = [_Source("fp32", fp32, fp32, "torch fp32 (fine-tuned checkpoint)")]
    if quant_dir is None:
        return sources, [], None
    quant = read_manifest(quant_dir)
    bad = quant.verify_outputs(quant_dir)
    if bad:
        raise ModelFileError(f"{quant_dir}: {', '.join(bad)} missing or not matching the sha256 in its manifest",
                             hint="rerun `edgetl quantize` (or `edgetl build`)")
    if quant.info.get("source_manifest") != inputs.manifest.hash:
        raise ModelFileError(f"{quant_dir} was quantized from another fine-tuned model than {inputs.dir}",
                             hint="rerun `edgetl quantize` on this train/ directory")
    programs = quant.info.get("programs", {})
    for name in (n for n in SOURCES if n in programs):
        program = load_program(quant_dir / programs[name])
        module = program.module()
        sources.append(_Source(name, program if dynamic else module, module, f"torch int8 ({name}, converted)"))
    return sources, list(quant.info.get("kept_float", [])), quant


def _export_dims(target: TargetProfile) -> tuple[bool, int]:
    """(dynamic batch?, the example/fixed batch size)."""
    if target.input.dynamic_batch:
        return True, 2  # 2, not 1: torch.export specialises a dimension whose example size is 1
    return False, target.input.batch_sizes[0]


# --------------------------------------------------------------------------------------------------- checks
def _check_int8(artifact: Artifact, counts: Any, kept: list[dict[str, Any]]) -> str | None:
    """A failure message when an int8 artifact runs convolutions/matmuls in float beyond those kept on purpose."""
    allowed = {"conv": sum(k.get("kind") == "conv" for k in kept),
               "matmul": sum(k.get("kind") == "linear" for k in kept)}
    problems = []
    for kind, label in (("conv", "convs"), ("matmul", "matmuls")):
        extra = counts.float[kind] - allowed[kind]
        if extra > 0:
            names = ", ".join(counts.float_names[kind][:5])
            problems.append(f"int8 model runs {counts.float[kind]} {label} in float "
                            f"({allowed[kind]} kept on purpose): {names}")
    return f"{artifact.name}: " + "; ".join(problems) if problems else None


def _check_parity(cfg: BuildConfig, artifact: Artifact, parity: dict[str, Any]) -> str | None:
    limit = cfg.export.max_logit_diff_fp32 if artifact.precision == "fp32" else cfg.export.max_logit_diff_int8
    problems = []
    if parity["top1_agreement_beyond_ties"] < cfg.export.min_top1_agreement:
        problems.append(f"top-1 agreement {describe_agreement(parity)} < {cfg.export.min_top1_agreement:.2%}")
    if parity["max_logit_diff"] > limit:
        problems.append(f"max |logit diff| {parity['max_logit_diff']:.4g} > {limit:g}")
    if not problems:
        return None
    return (f"{artifact.name}: " + ", ".join(problems)
            + f" against {parity['reference']} on {parity['n']} images ({parity['runtime']})")


def _explain_float(counts: Any, kept: list[dict[str, Any]], precision: str) -> list[str]:
    names = counts.float_names["conv"] + counts.float_names["matmul"]
    if precision != "int8":
        return []
    return names + [f"expected: {k['layer']} ({k['kind']}) kept in float by {k['reason']}" for k in kept]


# --------------------------------------------------------------------------------------------------- the stage
def export(cfg: BuildConfig, target: TargetProfile, train_dir: Path, quant_dir: Path | None,
           out_dir: Path) -> ExportResult:
    """Export the fine-tuned model (and the int8 programs in ``quant_dir``) to the target's formats.

    Args:
        cfg: the build config; reads ``cfg.export`` (opset, parity thresholds, parity_images).
        target: decides the formats (``export.formats``), opset and the batch dimension (``input``).
        train_dir: the fine-tune stage's directory.
        quant_dir: the quantize stage's directory, or None for fp32 only.
        out_dir: where the models, ``parity.json`` and ``manifest.json`` go (replaced whole).

    Raises:
        ExportError: an op cannot be exported, or an artifact fails parity or runs convs in float.
        ModelFileError: an input file is missing, modified or corrupt.
    """
    from rich.progress import Progress

    from edgetl.stages.quantize import read_train_dir

    started = time.perf_counter()
    train_dir, out_dir = Path(train_dir), Path(out_dir)
    inputs = read_train_dir(train_dir)
    dynamic, batch = _export_dims(target)
    opset = cfg.export.opset or target.export.opset
    sources, kept, quant = _sources(inputs, Path(quant_dir) if quant_dir else None, dynamic)
    size = inputs.preprocess.image_size
    import torch

    example = torch.randn(batch, 3, size, size)
    want_ov = "openvino" in target.export.formats
    want_onnx = "onnx" in target.export.formats
    artifacts: list[tuple[Artifact, _Source]] = []
    folded: dict[str, int] = {}
    with atomic_dir(out_dir) as tmp:
        with Progress(transient=True) as progress:
            task = progress.add_task("exporting", total=len(sources) * (1 + want_ov))
            for src in sources:
                meta = model_metadata(inputs, src.name)
                onnx_rel = ONNX_FILES[src.name]
                progress.update(task, description=f"ONNX {src.name}")
                folded[src.name] = export_onnx(src.model, example, tmp / onnx_rel, opset=opset, dynamic=dynamic,
                                               metadata=meta, what=f"the {src.name} model")
                progress.advance(task)
                if want_onnx:
                    artifacts.append((_artifact("onnx", src.name, tmp, onnx_rel), src))
                if want_ov:
                    progress.update(task, description=f"OpenVINO {src.name}")
                    xml_rel = f"openvino/{Path(onnx_rel).stem}.xml"
                    export_openvino(tmp / onnx_rel, tmp / xml_rel, meta)
                    artifacts.append((_artifact("openvino", src.name, tmp, xml_rel), src))
                    progress.advance(task)
                if not want_onnx:
                    (tmp / onnx_rel).unlink()  # only the intermediate of the IR
        parity = _run_parity(cfg, inputs, tmp, artifacts, kept, batch if not dynamic else 1)
        write_json(tmp / "parity.json", parity)
        files = [a.path for a, _ in artifacts] + [a.path.replace(".xml", ".bin") for a, _ in artifacts
                                                   if a.format == "openvino"]
        Manifest(
            stage=STAGE,
            input_hash=sha256_json({"train": inputs.manifest.hash, "quantize": quant.hash if quant else None,
                                    "export": cfg.export.model_dump(mode="json"),
                                    "target": target.model_dump(mode="json", include={"input", "export"}),
                                    "versions": library_versions()}),
            config={"export": cfg.export.model_dump(mode="json"), "target": target.name},
            inputs={"train/manifest.json": inputs.manifest.hash,
                    **({"quantize/manifest.json": quant.hash} if quant else {})},
            outputs=hash_outputs(tmp, [*files, "parity.json"]),
            info={
                "artifacts": [a.model_dump(mode="json") for a, _ in artifacts],
                "backbone": inputs.checkpoint.backbone, "classes": list(inputs.checkpoint.classes),
                "preprocess": inputs.preprocess.model_dump(mode="json"), "source_manifest": inputs.manifest.hash,
                "opset": opset, "dynamic_batch": dynamic, "batch_size": None if dynamic else batch,
                "pads_folded": folded, "eval_split": inputs.index.eval_split, "kept_float": kept,
            },
        ).write(tmp)
    return ExportResult(out_dir=out_dir, artifacts=[a for a, _ in artifacts], parity=parity,
                        wall_time_s=round(time.perf_counter() - started, 2))


def _artifact(fmt: str, source: str, root: Path, rel: str) -> Artifact:
    path = root / rel
    size = path.stat().st_size + (path.with_suffix(".bin").stat().st_size if fmt == "openvino" else 0)
    return Artifact(name=artifact_name(fmt, source), format=fmt, precision="fp32" if source == "fp32" else "int8",
                    source=source, path=rel, size_bytes=size)


def _run_parity(cfg: BuildConfig, inputs: TrainInputs, root: Path, artifacts: list[tuple[Artifact, _Source]],
                kept: list[dict[str, Any]], runtime_batch: int) -> dict[str, dict[str, Any]]:
    """Stream the evaluation split through every artifact and its torch reference; fill in each ``Artifact``."""
    import torch
    from rich.progress import Progress

    from edgetl.data import iter_eval_batches
    from edgetl.export.parity import ParityTally, onnxruntime_runner, openvino_runner, run_in_chunks

    samples = inputs.eval_samples[: cfg.export.parity_images] if cfg.export.parity_images else inputs.eval_samples
    runners, tallies, counts = {}, {}, {}
    for artifact, src in artifacts:
        load = onnxruntime_runner if artifact.format == "onnx" else openvino_runner
        runners[artifact.name], counts[artifact.name] = load(root / artifact.path)
        runtime = "onnxruntime:cpu" if artifact.format == "onnx" else "openvino:CPU (f32 hint)"
        ties = cfg.export.tie_margin_int8 if artifact.precision == "int8" else 0.0
        tallies[artifact.name] = ParityTally(runtime, src.reference_label, runtime_batch, tie_margin=ties)
    references = {src.name: src.reference for _, src in artifacts}
    with Progress(transient=True) as progress, torch.inference_mode():
        task = progress.add_task("parity", total=len(samples))
        for images, labels in iter_eval_batches(samples, inputs.preprocess, REFERENCE_BATCH):
            expected = {name: np.asarray(ref(torch.from_numpy(images)), dtype=np.float64)
                        for name, ref in references.items()}
            for artifact, src in artifacts:
                logits = run_in_chunks(runners[artifact.name], images, runtime_batch)
                tallies[artifact.name].update(logits, expected[src.name], labels)
            progress.advance(task, len(labels))
    failures: list[str] = []
    report: dict[str, dict[str, Any]] = {}
    for artifact, _ in artifacts:
        c = counts[artifact.name]
        artifact.parity = tallies[artifact.name].as_dict()
        artifact.int8_ops, artifact.float_ops = c.int8_total, c.float_total
        artifact.float_op_names = _explain_float(c, kept, artifact.precision)
        report[artifact.name] = {**artifact.parity, "int8": c.int8, "float": c.float}
        for problem in (_check_parity(cfg, artifact, artifact.parity),
                        _check_int8(artifact, c, kept) if artifact.precision == "int8" else None):
            if problem:
                failures.append(problem)
    if failures:
        raise ExportError(f"{STAGE}: {len(failures)} artifact check(s) failed: " + "; ".join(failures),
                          hint="see the figures above; loosen export.min_top1_agreement / max_logit_diff_* only "
                               "if the runtime's rounding explains them")
    return report
