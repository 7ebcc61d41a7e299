"""``edgetl build``: every stage in order, cached by the hash of its inputs, resumable after an interruption.

Each stage's cache key hashes the config sections and target fields it reads, the content of the upstream stage
directories, and the library versions. ``OUT/build.json`` records, per stage, that key and the hash of what the stage
wrote. A rerun reuses a stage only when both still match, so a half-written or edited stage directory is never
trusted; changing one setting reruns that stage and the ones after it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetl.config import BuildConfig
from edgetl.errors import BudgetExceededError, ConfigError
from edgetl.fsutil import read_json, sha256_file, sha256_json, write_json
from edgetl.manifest import library_versions
from edgetl.targets import TargetProfile

log = logging.getLogger("edgetl.build")

STATE_FILE = "build.json"


@dataclass
class Context:
    cfg: BuildConfig
    target: TargetProfile
    out: Path

    def dir(self, stage: str) -> Path:
        return self.out / stage


@dataclass(frozen=True)
class Stage:
    name: str
    depends: tuple[str, ...]
    key: Callable[[Context], Any]  # what the stage reads from config/target/data (hashed)
    run: Callable[[Context, bool], None]  # (context, resume)
    enabled: Callable[[Context], bool] = lambda ctx: True


@dataclass
class StageOutcome:
    name: str
    status: str  # ran | reused | skipped
    seconds: float = 0.0
    reason: str = ""


@dataclass
class BuildResult:
    out: Path
    stages: list[StageOutcome] = field(default_factory=list)
    results_path: Path | None = None
    bundle_dir: Path | None = None
    budget_rows: list[dict[str, Any]] = field(default_factory=list)


# ------------------------------------------------------------------------------------------- stage runners
def _run_train(ctx: Context, resume: bool) -> None:
    from edgetl.stages.finetune import finetune

    finetune(ctx.cfg, ctx.target, ctx.dir("train"), resume=resume)


def _run_quantize(ctx: Context, resume: bool) -> None:
    from edgetl.stages.quantize import quantize

    quantize(ctx.cfg, ctx.target, ctx.dir("train"), ctx.dir("quantize"))


def _run_export(ctx: Context, resume: bool) -> None:
    from edgetl.stages.export import export

    quant = ctx.dir("quantize") if ctx.target.wants_int8 else None
    export(ctx.cfg, ctx.target, ctx.dir("train"), quant, ctx.dir("export"))


def _run_bench(ctx: Context, resume: bool) -> None:
    from edgetl.stages.benchmark import benchmark

    benchmark(ctx.cfg, ctx.target, ctx.out, ctx.dir("bench"))


def _run_report(ctx: Context, resume: bool) -> None:
    from edgetl.report.render import write_report

    write_report(ctx.dir("bench") / "results.json", ctx.dir("report"))


def _run_bundle(ctx: Context, resume: bool) -> None:
    from edgetl.stages.bundle import make_bundle

    make_bundle(ctx.out, ctx.target, ctx.dir("bundle"))


def _target_part(ctx: Context, *fields: str) -> dict[str, Any]:
    dumped = ctx.target.model_dump(mode="json")
    return {f: dumped[f] for f in fields}


def _image_size(ctx: Context) -> int:
    return ctx.cfg.train.image_size or ctx.target.input.image_size


def _train_key(ctx: Context) -> dict[str, Any]:
    from edgetl.data import dataset_fingerprint

    return {
        "data": ctx.cfg.data.model_dump(mode="json", exclude={"num_workers"}),
        "train": ctx.cfg.train.model_dump(mode="json", exclude={"device", "threads"}),  # speed, not results
        "image_size": _image_size(ctx),
        "dataset": dataset_fingerprint(ctx.cfg.data.path),
    }


STAGES: tuple[Stage, ...] = (
    Stage("train", (), _train_key, _run_train),
    Stage(
        "quantize",
        ("train",),
        lambda ctx: {"quantize": ctx.cfg.quantize.model_dump(mode="json")},
        _run_quantize,
        enabled=lambda ctx: ctx.target.wants_int8,
    ),
    Stage(
        "export",
        ("train", "quantize"),
        lambda ctx: {"export": ctx.cfg.export.model_dump(mode="json"), **_target_part(ctx, "export", "input")},
        _run_export,
    ),
    Stage(
        "bench",
        ("export",),
        lambda ctx: {
            "bench": ctx.cfg.bench.model_dump(mode="json"),
            **_target_part(ctx, "runtimes", "input", "benchmark", "hardware"),
        },
        _run_bench,
    ),
    Stage("report", ("bench",), lambda ctx: {}, _run_report),
    Stage("bundle", ("export", "bench"), lambda ctx: _target_part(ctx, "name", "runtimes", "input", "export"),
          _run_bundle),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def dir_hash(path: Path) -> str:
    """Hash of every file under ``path`` (names and contents); temporary files are ignored."""
    rows = [
        (str(p.relative_to(path)), sha256_file(p))
        for p in sorted(path.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    ]
    return sha256_json(rows)


def _load_state(out: Path) -> dict[str, Any]:
    path = out / STATE_FILE
    if not path.is_file():
        return {}
    try:
        state = read_json(path)
        return state if isinstance(state, dict) else {}
    except ValueError:
        log.warning("%s is unreadable; every stage will run again", path)
        return {}


def build(
    cfg: BuildConfig,
    target: TargetProfile,
    *,
    force: tuple[str, ...] = (),
    on_stage: Callable[[StageOutcome], None] | None = None,
) -> BuildResult:
    """Run (or reuse) every stage for ``target``; raise ``BudgetExceededError`` after the bundle on a budget miss."""
    unknown = [s for s in force if s not in STAGE_NAMES]
    if unknown:
        raise ConfigError(f"--force: unknown stage {unknown[0]!r}", hint=f"stages: {', '.join(STAGE_NAMES)}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(cfg, target, out)
    state = _load_state(out)
    versions = library_versions()
    result = BuildResult(out=out)
    upstream_hash: dict[str, str] = {}
    for stage in STAGES:
        if not stage.enabled(ctx):
            outcome = StageOutcome(stage.name, "skipped", reason=f"target {target.name} asks for no int8")
            upstream_hash[stage.name] = "skipped"
            result.stages.append(outcome)
            if on_stage:
                on_stage(outcome)
            continue
        key = sha256_json({
            "stage": stage.name,
            "key": stage.key(ctx),
            "upstream": {d: upstream_hash.get(d, "") for d in stage.depends},
            "versions": versions,
        })
        stage_dir = ctx.dir(stage.name)
        record = state.get(stage.name, {})
        reusable = (
            stage.name not in force
            and record.get("input_hash") == key
            and record.get("status") == "done"
            and stage_dir.is_dir()
            and dir_hash(stage_dir) == record.get("output_hash")
        )
        if reusable:
            outcome = StageOutcome(stage.name, "reused", reason="inputs unchanged")
        else:
            # resume only an interrupted run of the very same inputs (e.g. training's last.pt)
            resume = record.get("input_hash") == key and record.get("status") == "started"
            state[stage.name] = {"input_hash": key, "status": "started"}
            # every later stage must rerun: forget them before this one starts
            for later in STAGE_NAMES[STAGE_NAMES.index(stage.name) + 1 :]:
                state.pop(later, None)
            write_json(out / STATE_FILE, state)
            start = time.perf_counter()
            stage.run(ctx, resume)
            seconds = time.perf_counter() - start
            state[stage.name] = {"input_hash": key, "status": "done", "output_hash": dir_hash(stage_dir),
                                 "seconds": round(seconds, 2)}
            write_json(out / STATE_FILE, state)
            outcome = StageOutcome(stage.name, "ran", seconds=seconds,
                                   reason="resumed" if resume else ("forced" if stage.name in force else ""))
        upstream_hash[stage.name] = state[stage.name]["output_hash"]
        result.stages.append(outcome)
        if on_stage:
            on_stage(outcome)

    result.results_path = ctx.dir("bench") / "results.json"
    result.bundle_dir = ctx.dir("bundle")
    from edgetl.bench.budgets import check_budgets

    result.budget_rows = check_budgets(target, read_json(result.results_path))
    write_json(out / "budgets.json", result.budget_rows)
    failed = [r for r in result.budget_rows if r["status"] == "fail"]
    if failed and cfg.budget_check:
        from edgetl.bench.budgets import budget_table

        raise BudgetExceededError(
            f"{len(failed)} budget(s) of target {target.name} missed: " + ", ".join(r["budget"] for r in failed),
            table=budget_table(result.budget_rows),
            hint="see OUT/budgets.json; pass --no-budget-check to build anyway",
        )
    return result
