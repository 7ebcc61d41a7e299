"""The built-in stages as registry entries (``edgetl.pipeline.engine.StageDef``).

Each runner only resolves its inputs through the context and calls its ``edgetl.stages`` function; a new stage
(for example ``prune``, producing a ``float_model`` between ``train`` and ``quantize``) is one more entry here or in
its own module, and needs no edit to the others.
"""

from __future__ import annotations

from typing import Any

from edgetl.config import BuildConfig
from edgetl.errors import ConfigError
from edgetl.pipeline.engine import Context, StageDef, register_stage


def _target_part(ctx: Context, *fields: str) -> dict[str, Any]:
    dumped = ctx.target.model_dump(mode="json")
    return {f: dumped[f] for f in fields}


def _need(ctx: Context, kind: str) -> Any:
    path = ctx.input_dir(kind)
    if path is None:
        raise ConfigError(f"stage {ctx.current} needs a {kind.replace('_', ' ')}, and no enabled stage before it "
                          "produces one")
    return path


# ------------------------------------------------------------------------------------------------ train
def _train_key(ctx: Context) -> dict[str, Any]:
    from edgetl.backbones import get_backbone
    from edgetl.config import HELD_OUT_TEST_RATIO
    from edgetl.tasks import resolve_input, task_for_backbone

    spec = get_backbone(ctx.cfg.train.backbone)
    return {
        "data": ctx.cfg.data.model_dump(mode="json", exclude={"num_workers", "adapt"}),  # adapt: its own stage
        "held_out_test_ratio": HELD_OUT_TEST_RATIO,  # data.test_ratio None means it: a new default is a new split
        "train": ctx.cfg.train.model_dump(mode="json", exclude={"device", "threads"}),  # speed, not results
        "image_size": resolve_input(ctx.cfg, ctx.target, spec).size,
        "dataset": task_for_backbone(spec).data_fingerprint(ctx.cfg.data),
        "teacher": _teacher_digest(ctx.cfg.train.teacher),
    }


def _teacher_digest(path: str | None) -> str | None:
    """The teacher's model sha256 (from its manifest), so a retrained teacher at the same path retrains the
    student; a path that holds no teacher keys as the path and fails in the stage with the teacher's message."""
    if path is None:
        return None
    from edgetl.compress.distill import teacher_artifact
    from edgetl.errors import EdgetlError

    try:
        artifact = teacher_artifact(path)
    except EdgetlError:
        return path
    return artifact.manifest.outputs.get(artifact.card.file, path)


def _run_train(ctx: Context, resume: bool) -> Any:
    from edgetl.stages.finetune import finetune

    return finetune(ctx.cfg, ctx.target, ctx.dir("train"), resume=resume)


# ------------------------------------------------------------------------------------------------ student_alone
# With a teacher, the same student trained without it: same config, data split, seed and recipe, cross-entropy only,
# through the train stage's own function. Nothing downstream consumes it (it produces no artifact kind); bench puts
# its evaluation-split accuracy beside the distilled student's and the teacher's (results.json ``distillation``).
# It runs right after train: its key is train's without the teacher, so it reruns only when train's settings or
# data change (and, as every stage after a rerun one, when train reruns for a new teacher).
_TEACHER_FIELDS = {"teacher", "teacher_temperature", "teacher_alpha"}


def _alone_config(cfg: BuildConfig) -> BuildConfig:
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"teacher": None})})


def _alone_disabled(ctx: Context) -> str | None:
    return None if ctx.cfg.train.teacher else "no teacher to compare with (train.teacher, --teacher)"


def _alone_key(ctx: Context) -> dict[str, Any]:
    key = _train_key(ctx)
    key["train"] = {k: v for k, v in key["train"].items() if k not in _TEACHER_FIELDS}
    del key["teacher"]
    return key


def _run_alone(ctx: Context, resume: bool) -> Any:
    from edgetl.stages.finetune import finetune

    return finetune(_alone_config(ctx.cfg), ctx.target, ctx.dir("student_alone"), resume=resume,
                    stage="student_alone")


# ------------------------------------------------------------------------------------------------ prune
def _run_prune(ctx: Context, resume: bool) -> Any:
    from edgetl.stages.prune import prune

    return prune(ctx.cfg, ctx.target, _need(ctx, "float_model"), ctx.dir("prune"), resume=resume)


def _prune_disabled(ctx: Context) -> str | None:
    return None if ctx.cfg.prune.enabled else "not asked for (prune.enabled, --prune-ratio or --prune-macs)"


def _prune_key(ctx: Context) -> dict[str, Any]:
    # recovery trains with train's batch size, augmentation, patience and precision
    return {"prune": ctx.cfg.prune.model_dump(mode="json"),
            "train": ctx.cfg.train.model_dump(mode="json", exclude={"device", "threads"})}


# ------------------------------------------------------------------------------------------------ adapt
def _run_adapt(ctx: Context, resume: bool) -> Any:
    from edgetl.stages.adapt import adapt

    return adapt(ctx.cfg, ctx.target, _need(ctx, "float_model"), ctx.dir("adapt"))


def _adapt_disabled(ctx: Context) -> str | None:
    return None if ctx.cfg.data.adapt else "no unlabelled deployment images (data.adapt, --adapt-data)"


def _adapt_key(ctx: Context) -> dict[str, Any]:
    from edgetl.data.unlabelled import folder_fingerprint

    return {"adapt": ctx.cfg.adapt.model_dump(mode="json"), "folder": ctx.cfg.data.adapt,
            "images": folder_fingerprint(ctx.cfg.data.adapt) if ctx.cfg.data.adapt else None,
            "strict": ctx.cfg.data.strict}


# ------------------------------------------------------------------------------------------------ quantize
def _run_quantize(ctx: Context, resume: bool) -> Any:
    from edgetl.stages.quantize import quantize

    return quantize(ctx.cfg, ctx.target, _need(ctx, "float_model"), ctx.dir("quantize"))


def _quantize_disabled(ctx: Context) -> str | None:
    return None if ctx.target.wants_int8 else f"target {ctx.target.name} asks for no int8"


# ------------------------------------------------------------------------------------------------ export
def _run_export(ctx: Context, resume: bool) -> Any:
    from edgetl.stages.export import export

    return export(ctx.cfg, ctx.target, _need(ctx, "float_model"), ctx.input_dir("int8_models"), ctx.dir("export"))


def _run_bench(ctx: Context, resume: bool) -> Any:
    from edgetl.stages.benchmark import benchmark

    return benchmark(ctx.cfg, ctx.target, ctx.out, ctx.dir("bench"))


def _run_report(ctx: Context, resume: bool) -> Any:
    from edgetl.report.render import write_report

    return write_report(_need(ctx, "results") / "results.json", ctx.dir("report"), run_dir=ctx.out)


def _run_bundle(ctx: Context, resume: bool) -> Any:
    from edgetl.stages.bundle import make_bundle

    results = ctx.input_dir("results")
    return make_bundle(_need(ctx, "exported"), results / "results.json" if results else None, ctx.target,
                       ctx.dir("bundle"))


register_stage(StageDef("train", 10, (), ("dataset", "float_model"), _train_key, _run_train))
register_stage(StageDef("student_alone", 15, (), (), _alone_key, _run_alone, disabled=_alone_disabled))
register_stage(StageDef("prune", 20, ("float_model", "dataset"), ("float_model",), _prune_key, _run_prune,
                        disabled=_prune_disabled))
register_stage(StageDef("adapt", 25, ("float_model", "dataset"), ("float_model",), _adapt_key, _run_adapt,
                        disabled=_adapt_disabled))
register_stage(StageDef("quantize", 30, ("float_model", "dataset"), ("int8_models",),
                        lambda ctx: {"quantize": ctx.cfg.quantize.model_dump(mode="json")}, _run_quantize,
                        disabled=_quantize_disabled))
register_stage(StageDef("export", 40, ("float_model", "int8_models"), ("exported",),
                        lambda ctx: {"export": ctx.cfg.export.model_dump(mode="json"),
                                     **_target_part(ctx, "export", "input")}, _run_export))
register_stage(StageDef("bench", 50, ("exported",), ("results",),
                        lambda ctx: {"bench": ctx.cfg.bench.model_dump(mode="json"),
                                     **_target_part(ctx, "runtimes", "input", "benchmark", "hardware", "device")},
                        _run_bench))
register_stage(StageDef("report", 60, ("results",), ("report",), lambda ctx: {}, _run_report))
register_stage(StageDef("bundle", 70, ("exported", "results"), ("bundle",),
                        lambda ctx: _target_part(ctx, "name", "runtimes", "input", "export"), _run_bundle))
