"""Stage ``export``: ONNX (fp32, int8 QDQ) and OpenVINO IR, each self-describing and checked against torch.

Sources: the current float model artifact (whichever stage made it) and the quantize stage's int8 program
artifacts. ONNX goes through the dynamo exporter (``edgetl.export.writers``); OpenVINO IR is converted from the ONNX
files and saved with fp32 weights. Every artifact then passes the parity check through the runtime adapters
(``edgetl.export.parity``): top-1 agreement and logit difference against its torch model, and (int8) the proof
that its compute layers run in int8, checked against the precision plan its model card carries.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetl import __version__
from edgetl.config import BuildConfig
from edgetl.errors import ExportError, ModelFileError
from edgetl.export.parity import describe_agreement
from edgetl.export.plan_check import check_plan, onnx_layer_aliases
from edgetl.export.uint8_input import PixelFront, uint8_variant_path, variant_metadata, write_uint8_variant
from edgetl.export.writers import export_onnx, export_openvino
from edgetl.fsutil import atomic_dir, sha256_json, write_json
from edgetl.manifest import Artifact, InputVariant, Manifest, hash_outputs, library_versions
from edgetl.targets import TargetProfile

if TYPE_CHECKING:
    from edgetl.artifacts import ModelArtifact
    from edgetl.runtimes.base import OpCount
    from edgetl.stages.quantize import FloatInputs

log = logging.getLogger("edgetl.export")

__all__ = ["ExportResult", "artifact_name", "export", "export_onnx", "export_openvino", "model_metadata"]

STAGE = "export"
ONNX_FILES = {"fp32": "model_fp32.onnx", "qat": "model_int8_qat.onnx", "ptq": "model_int8_ptq.onnx",
              "dynamic": "model_int8_dynamic.onnx"}
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


def model_metadata(model: ModelArtifact, source: str, precision: str) -> dict[str, str]:
    """What an exported model says about itself (ONNX ``metadata_props``, OpenVINO ``rt_info["edgetl"]``)."""
    card = model.card
    meta = {
        "task": card.task,
        "labels": json.dumps(list(card.classes)),
        "preprocess": json.dumps(card.preprocess),
        "inputs": json.dumps([t.model_dump(mode="json") for t in card.io.inputs]),
        "backbone": card.backbone,
        "source": source,
        "precision": precision,
        "source_manifest": model.manifest.hash,
        "edgetl_version": __version__,
    }
    # the preprocessing fields one by one too, for readers that look for loose keys (image_size, mean, std, ...)
    for key, value in card.preprocess.items():
        meta.setdefault(key, value if isinstance(value, str) else json.dumps(value))
    return meta


@dataclass
class _Source:
    name: str  # fp32 | qat | ptq
    artifact: ModelArtifact
    model: Any  # what the ONNX exporter takes
    reference: Any  # torch callable producing the logits the artifact must reproduce
    reference_label: str
    aliases: dict[str, str] = field(default_factory=dict)  # ONNX layer names -> module paths (the plan check)


def _sources(inputs: FloatInputs, quant_dir: Path | None, dynamic: bool) -> tuple[list[_Source], Manifest | None]:
    from edgetl.artifacts import read_model_artifacts

    fp32 = inputs.artifact.load()
    sources = [_Source("fp32", inputs.artifact, fp32, fp32, f"torch fp32 ({inputs.artifact.ref})")]
    if quant_dir is None:
        return sources, None
    order = ("qat", "ptq")  # the QAT model first: it is the one a build ships when both are as good
    quantized = sorted(read_model_artifacts(quant_dir),
                       key=lambda a: order.index(a.card.name) if a.card.name in order else len(order))
    quant = quantized[0].manifest if quantized else None
    for artifact in quantized:
        if artifact.card.lineage.parent_manifest != inputs.artifact.manifest.hash:
            raise ModelFileError(f"{quant_dir} was quantized from another float model than {inputs.artifact.stage_dir}",
                                 hint="rerun `edgetl quantize` on this model")
        program = artifact.load_program()
        module = program.module()
        sources.append(_Source(artifact.card.name, artifact, program if dynamic else module, module,
                               f"torch int8 ({artifact.card.name}, converted)"))
    return sources, quant


def export_dims(target: TargetProfile) -> tuple[bool, int]:
    """(dynamic batch?, the example/fixed batch size): a deployment choice of the target."""
    if target.input.dynamic_batch:
        return True, 2  # 2, not 1: torch.export specialises a dimension whose example size is 1
    return False, target.input.batch_sizes[0]


# --------------------------------------------------------------------------------------------------- checks
def _check_int8(artifact: Artifact, counts: OpCount, kept: list[dict[str, Any]]) -> str | None:
    """A failure message when an int8 artifact runs convolutions/matmuls in float beyond its precision plan."""
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
            + f" against {parity['reference']} on {parity['n']} samples ({parity['runtime']})")


def _explain_float(counts: OpCount, kept: list[dict[str, Any]], precision: str) -> list[str]:
    names = counts.float_names["conv"] + counts.float_names["matmul"]
    if precision != "int8":
        return []
    return names + [f"expected: {k['layer']} ({k['kind']}) kept in float by {k['reason']}" for k in kept]


# --------------------------------------------------------------------------------------------------- the stage
def export(cfg: BuildConfig, target: TargetProfile, model_dir: Path, quant_dir: Path | None,
           out_dir: Path) -> ExportResult:
    """Export the float model artifact in ``model_dir`` (and the int8 programs in ``quant_dir``) for the target.

    Args:
        cfg: the build config; reads ``cfg.export`` (opset, parity thresholds, parity_images).
        target: decides the formats (``export.formats``), opset and the batch dimension (``input``).
        model_dir: the stage directory of the float model (``train/``, or a later stage that made one).
        quant_dir: the quantize stage's directory, or None for fp32 only.
        out_dir: where the models, ``parity.json`` and ``manifest.json`` go (replaced whole).

    Raises:
        ExportError: an op cannot be exported, or an artifact fails parity or runs layers in float off-plan.
        ModelFileError: an input file is missing, modified or corrupt.
    """
    from rich.progress import Progress

    from edgetl.stages.quantize import read_float_model

    started = time.perf_counter()
    out_dir = Path(out_dir)
    inputs = read_float_model(Path(model_dir))
    card = inputs.artifact.card
    dynamic, batch = export_dims(target)
    opset = cfg.export.opset or target.export.opset
    sources, quant = _sources(inputs, Path(quant_dir) if quant_dir else None, dynamic)
    example = inputs.task.example_inputs(card.io, batch)
    want_ov = "openvino" in target.export.formats
    want_onnx = "onnx" in target.export.formats
    # the uint8-input variant of every artifact (image tasks): raw camera pixels in, preprocessing in the graph
    front = inputs.task.pixel_front(card.io, card.preprocess) if cfg.export.uint8_input else None
    artifacts: list[tuple[Artifact, _Source]] = []
    folded: dict[str, int] = {}
    # a text encoder's dynamic int8 (int8 weights, activations quantized at run time) beside its PT2E models
    text_dynamic = quant_dir is not None and cfg.export.text_dynamic_int8 and _is_text_encoder(sources[0].model)
    with atomic_dir(out_dir) as tmp:
        with Progress(transient=True) as progress:
            task = progress.add_task("exporting", total=len(sources) * (1 + want_ov))
            for src in sources:
                precision = src.artifact.card.precision if src.name != "fp32" else "fp32"
                meta = model_metadata(inputs.artifact if src.name == "fp32" else src.artifact, src.name, precision)
                meta["source_manifest"] = inputs.artifact.manifest.hash  # every artifact names the float model
                onnx_rel = ONNX_FILES.get(src.name, f"model_int8_{src.name}.onnx")
                progress.update(task, description=f"ONNX {src.name}")
                folded[src.name] = export_onnx(src.model, example, tmp / onnx_rel, opset=opset, dynamic=dynamic,
                                               metadata=meta, what=f"the {src.name} model", io=card.io)
                progress.advance(task)
                if src.name != "fp32":
                    src.aliases = onnx_layer_aliases(tmp / onnx_rel)
                pixels_rel = uint8_variant_path(onnx_rel)
                if front is not None:
                    write_uint8_variant(tmp / onnx_rel, tmp / pixels_rel, front, meta)
                if want_onnx:
                    artifacts.append((_artifact("onnx", src.name, precision, tmp, onnx_rel,
                                                (pixels_rel, front) if front is not None else None), src))
                if want_ov:
                    progress.update(task, description=f"OpenVINO {src.name}")
                    xml_rel = f"openvino/{Path(onnx_rel).stem}.xml"
                    export_openvino(tmp / onnx_rel, tmp / xml_rel, meta)
                    variant = None
                    if front is not None:
                        variant = (uint8_variant_path(xml_rel), front)
                        export_openvino(tmp / pixels_rel, tmp / variant[0], variant_metadata(meta, front))
                    artifacts.append((_artifact("openvino", src.name, precision, tmp, xml_rel, variant), src))
                    progress.advance(task)
                    if src.name == "fp32" and text_dynamic:  # from the float ONNX, before it may go
                        artifacts.append(_openvino_dynamic_artifact(inputs, src, tmp, tmp / onnx_rel))
                if not want_onnx:
                    (tmp / onnx_rel).unlink()  # only the intermediate of the IR
                    if front is not None:
                        (tmp / pixels_rel).unlink()
        # each int8 route's top-1 on val, which the deployed route is chosen on (edgetl.bench.budgets)
        selection: dict[str, Any] = {src.name: float(src.artifact.card.metrics["val_accuracy"]) for src in sources
                     if src.name != "fp32" and (src.artifact.card.metrics or {}).get("val_accuracy") is not None}
        if text_dynamic and want_onnx:
            artifacts.append(_dynamic_int8_artifact(inputs, sources, tmp))
        if selection:  # the dynamic route per format: two different models under one route name
            dynamic_val = {a.format: _val_accuracy(cfg, inputs, tmp / a.path, a.format)
                           for a, _ in artifacts if a.source == "dynamic"}
            if dynamic_val:
                selection["dynamic"] = dynamic_val
        parity = _run_parity(cfg, inputs, tmp, artifacts, batch if not dynamic else 1)
        write_json(tmp / "parity.json", parity)
        paths = [a.path for a, _ in artifacts] + [a.uint8_variant.path for a, _ in artifacts if a.uint8_variant]
        files = paths + [p.replace(".xml", ".bin") for p in paths if p.endswith(".xml")]
        float_dir = inputs.artifact.stage_dir
        rel = lambda p: os.path.relpath(p, out_dir)  # noqa: E731  paths that stay valid inside the run directory
        kept = [layer for a in quantized_cards(sources) for layer in a]
        Manifest(
            stage=STAGE,
            input_hash=sha256_json({"train": inputs.artifact.manifest.hash, "quantize": quant.hash if quant else None,
                                    "export": cfg.export.model_dump(mode="json"),
                                    "target": target.model_dump(mode="json", include={"input", "export"}),
                                    "versions": library_versions()}),
            config={"export": cfg.export.model_dump(mode="json"), "target": target.name},
            inputs={f"{float_dir.name}/manifest.json": inputs.artifact.manifest.hash,
                    **({"quantize/manifest.json": quant.hash} if quant else {})},
            outputs=hash_outputs(tmp, [*files, "parity.json"]),
            info={
                "artifacts": [a.model_dump(mode="json") for a, _ in artifacts],
                "task": card.task, "io": card.io.model_dump(mode="json"), "backbone": card.backbone,
                "classes": list(card.classes), "preprocess": dict(card.preprocess),
                "float_model": rel(inputs.artifact.path), "float_source": inputs.artifact.ref,
                "split": rel(inputs.artifact.split_path) if inputs.artifact.split_path else None,
                "macs": card.macs, "params": card.params, "adaptation": (card.metrics or {}).get("adaptation"),
                "source_manifest": inputs.artifact.manifest.hash,
                "opset": opset, "dynamic_batch": dynamic, "batch_size": None if dynamic else batch,
                "pads_folded": folded, "eval_split": inputs.index.eval_split, "kept_float": kept,
                **({"int8_selection": {"split": "val", "accuracy": selection}} if selection else {}),
            },
        ).write(tmp)
    return ExportResult(out_dir=out_dir, artifacts=[a for a, _ in artifacts], parity=parity,
                        wall_time_s=round(time.perf_counter() - started, 2))


def _is_text_encoder(model: Any) -> bool:
    """A ``TextClassifier`` over a ``transformers`` BERT-class encoder (what ONNX Runtime's BERT fusion knows)."""
    config = getattr(getattr(model, "encoder", None), "config", None)
    return config is not None and getattr(config, "model_type", "") == "bert"


def _dynamic_int8_artifact(inputs: FloatInputs, sources: list[_Source], tmp: Path) -> tuple[Artifact, _Source]:
    """``onnx-int8-dynamic`` (``edgetl.export.text_int8``): the fused graph with int8 weights, activations
    quantized at run time; checked against the float torch model (it has no torch int8 twin). ONNX Runtime only:
    its fused ops are ONNX Runtime's own (``com.microsoft``)."""
    import tempfile

    from edgetl.artifacts import Lineage, ModelArtifact, PrecisionPlan
    from edgetl.export.text_int8 import write_dynamic_int8

    fp32 = sources[0]
    card = fp32.artifact.card.model_copy(update={
        "name": "dynamic", "file": ONNX_FILES["dynamic"],
        "precision_plan": PrecisionPlan(default="int8"),
        "lineage": Lineage(stage=STAGE, method="dynamic", parent=fp32.artifact.ref,
                           parent_manifest=fp32.artifact.manifest.hash)})
    artifact = ModelArtifact(stage_dir=fp32.artifact.stage_dir, card=card, manifest=fp32.artifact.manifest)
    meta = model_metadata(artifact, "dynamic", "int8")
    meta["quantization"] = "onnxruntime quantize_dynamic (int8 weights per channel, activations at run time)"
    with tempfile.TemporaryDirectory(prefix="edgetl-text-int8-") as scratch:
        fused = write_dynamic_int8(fp32.model, tmp / ONNX_FILES["dynamic"], meta, Path(scratch))
    log.info("onnx-int8-dynamic: fused %s", ", ".join(f"{v} {k}" for k, v in fused.items()))
    src = _Source("dynamic", artifact, None, fp32.reference, fp32.reference_label)
    return _artifact("onnx", "dynamic", "int8", tmp, ONNX_FILES["dynamic"]), src


def _openvino_dynamic_artifact(inputs: FloatInputs, fp32: _Source, tmp: Path,
                               onnx_path: Path) -> tuple[Artifact, _Source]:
    """``openvino-int8-dynamic`` (``edgetl.export.text_int8.write_openvino_dynamic_int8``): the float ONNX with
    int8 weights on every linear layer; OpenVINO quantizes their activations at run time. The attention matmuls
    (two activations) run in float, as planned; the reference is the float torch model."""
    import tempfile

    from edgetl.artifacts import FloatLayer, Lineage, ModelArtifact, PrecisionPlan
    from edgetl.export.text_int8 import activation_matmuls, write_openvino_dynamic_int8

    xml_rel = "openvino/model_int8_dynamic.xml"
    aliases = onnx_layer_aliases(onnx_path)
    attention = [FloatLayer(layer=f"{aliases.get(n, n)}:{n}", kind="linear",
                            reason="a matmul of two activations: dynamic int8 quantizes weight layers")
                 for n in activation_matmuls(onnx_path)]
    card = fp32.artifact.card.model_copy(update={
        "name": "dynamic", "file": xml_rel,
        "precision_plan": PrecisionPlan(default="int8", float_layers=tuple(attention)),
        "lineage": Lineage(stage=STAGE, method="dynamic", parent=fp32.artifact.ref,
                           parent_manifest=fp32.artifact.manifest.hash)})
    artifact = ModelArtifact(stage_dir=fp32.artifact.stage_dir, card=card, manifest=fp32.artifact.manifest)
    meta = model_metadata(artifact, "dynamic", "int8")
    meta["quantization"] = ("int8 weights per output channel; OpenVINO quantizes the activations at run time "
                            "(DYNAMIC_QUANTIZATION_GROUP_SIZE in the IR's runtime_options)")
    with tempfile.TemporaryDirectory(prefix="edgetl-ov-int8-") as scratch:
        layers = write_openvino_dynamic_int8(onnx_path, tmp / xml_rel, Path(scratch), meta)
    log.info("openvino-int8-dynamic: %d linear layers with int8 weights", layers)
    src = _Source("dynamic", artifact, None, fp32.reference, fp32.reference_label)
    src.aliases = aliases
    return _artifact("openvino", "dynamic", "int8", tmp, xml_rel), src


def _val_accuracy(cfg: BuildConfig, inputs: FloatInputs, path: Path, fmt: str) -> float:
    """Top-1 on val of an exported model (``fmt``: onnx or openvino) in its runtime, batch 1 as deployed: the int8
    route without a quantize-stage figure."""
    from edgetl.execution.base import trim_padding
    from edgetl.quant.judge import logits_stats
    from edgetl.runtimes import get_runtime

    batches = list(inputs.task.eval_batches(inputs.index.splits["val"], inputs.preprocess, 1))  # as deployed
    runtime, device = ("onnxruntime", "cpu") if fmt == "onnx" else ("openvino", "CPU")
    session = get_runtime(runtime).load(path, device, "int8", cfg.train.threads)
    try:
        logits = [np.asarray(session.run(trim_padding(batch, inputs.task.padding_mask)), dtype=np.float64)
                  for batch, _ in batches]
    finally:
        session.close()
    return logits_stats(logits, batches)[1]


def quantized_cards(sources: list[_Source]) -> list[list[dict[str, str]]]:
    """The layers each int8 source keeps in float by its precision plan (deduplicated by layer)."""
    seen: dict[str, dict[str, str]] = {}
    for src in sources:
        for layer in src.artifact.card.precision_plan.kept_float():
            seen.setdefault(layer["layer"], layer)
    return [list(seen.values())]


def _artifact(fmt: str, source: str, precision: str, root: Path, rel: str,
              variant: tuple[str, PixelFront] | None = None) -> Artifact:
    def size(path: Path) -> int:
        return path.stat().st_size + (path.with_suffix(".bin").stat().st_size if fmt == "openvino" else 0)

    uint8 = None
    if variant:
        v_rel, front = variant
        uint8 = InputVariant(path=v_rel, size_bytes=size(root / v_rel), io=front.io.model_dump(mode="json"),
                             preprocessing=front.describe())
    return Artifact(name=artifact_name(fmt, source), format=fmt, precision=precision, source=source, path=rel,
                    size_bytes=size(root / rel), uint8_variant=uint8)



def _run_parity(cfg: BuildConfig, inputs: FloatInputs, root: Path, artifacts: list[tuple[Artifact, _Source]],
                runtime_batch: int) -> dict[str, dict[str, Any]]:
    """Stream the evaluation split through every artifact and its torch reference; fill in each ``Artifact``.

    A uint8-input variant takes the same samples as uint8 pixels (resized and cropped, not normalised) and is
    compared with its float-input artifact in the same runtime: the same predictions are what it must give.
    """
    import torch
    from rich.progress import Progress

    from edgetl.export.parity import ParityTally, open_checked_session, run_in_chunks

    samples = inputs.eval_samples[: cfg.export.parity_images] if cfg.export.parity_images else inputs.eval_samples
    sessions, tallies, counts = {}, {}, {}
    variants = {a.name: a.uint8_variant for a, _ in artifacts if a.uint8_variant is not None}
    for artifact, src in artifacts:
        sessions[artifact.name], counts[artifact.name], runtime = open_checked_session(
            root / artifact.path, artifact.format, artifact.precision)
        ties = cfg.export.tie_margin_int8 if artifact.precision == "int8" else 0.0
        tallies[artifact.name] = ParityTally(runtime, src.reference_label, runtime_batch, tie_margin=ties)
        if artifact.name in variants:
            key = f"{artifact.name}:uint8"
            sessions[key], counts[key], _ = open_checked_session(root / variants[artifact.name].path,
                                                                 artifact.format, artifact.precision)
            tallies[key] = ParityTally(runtime, f"{artifact.name} (float input)", runtime_batch, tie_margin=ties)
    references = {src.name: src.reference for _, src in artifacts}
    if variants:
        batches = inputs.task.eval_pixel_batches(samples, inputs.preprocess, REFERENCE_BATCH)
    else:
        batches = ((b, {}) for b in inputs.task.eval_batches(samples, inputs.preprocess, REFERENCE_BATCH))
    try:
        with Progress(transient=True) as progress, torch.inference_mode():
            task = progress.add_task("parity", total=len(samples))
            for (batch, labels), pixels in batches:
                args = [torch.from_numpy(v) for v in batch.values()]
                expected = {name: np.asarray(ref(*args), dtype=np.float64) for name, ref in references.items()}
                for artifact, src in artifacts:
                    logits = run_in_chunks(sessions[artifact.name], batch, runtime_batch)
                    tallies[artifact.name].update(logits, expected[src.name], labels)
                    if artifact.name in variants:
                        from_pixels = run_in_chunks(sessions[f"{artifact.name}:uint8"], pixels, runtime_batch)
                        tallies[f"{artifact.name}:uint8"].update(from_pixels, logits.astype(np.float64), labels)
                progress.advance(task, len(labels))
    finally:
        for session in sessions.values():
            session.close()
    failures: list[str] = []
    report: dict[str, dict[str, Any]] = {}
    for artifact, src in artifacts:
        c = counts[artifact.name]
        kept = src.artifact.card.precision_plan.kept_float() if artifact.precision == "int8" else []
        artifact.parity = tallies[artifact.name].as_dict()
        artifact.int8_ops, artifact.float_ops = c.int8_total, c.float_total
        artifact.float_op_names = _explain_float(c, kept, artifact.precision)
        report[artifact.name] = {**artifact.parity, "int8": c.int8, "float": c.float}
        plan_problem = None
        if artifact.precision == "int8":
            plan = check_plan(c.float_names["conv"] + c.float_names["matmul"], c.int8_total, kept, src.aliases)
            report[artifact.name]["precision_plan"] = plan.as_dict()
            log.info("%s: %s", artifact.name, plan.describe())
            if not plan.ok:
                plan_problem = f"{artifact.name}: float layers outside the precision plan: {plan.describe()}"
        problems = [_check_parity(cfg, artifact, artifact.parity),
                    _check_int8(artifact, c, kept) if artifact.precision == "int8" else None, plan_problem]
        variant = artifact.uint8_variant
        if variant is not None:  # the same checks, against the float-input artifact, under the variant's name
            key, vc = f"{artifact.name}:uint8", counts[f"{artifact.name}:uint8"]
            variant.parity = tallies[key].as_dict()
            variant.int8_ops, variant.float_ops = vc.int8_total, vc.float_total
            report[f"{artifact.name}-uint8-input"] = {**variant.parity, "int8": vc.int8, "float": vc.float}
            named = artifact.model_copy(update={"name": f"{artifact.name} uint8-input variant"})
            problems += [_check_parity(cfg, named, variant.parity),
                         _check_int8(named, vc, kept) if artifact.precision == "int8" else None]
        failures.extend(p for p in problems if p)
    if failures:
        raise ExportError(f"{STAGE}: {len(failures)} artifact check(s) failed: " + "; ".join(failures),
                          hint="see the figures above; loosen export.min_top1_agreement / max_logit_diff_* only "
                               "if the runtime's rounding explains them")
    return report
