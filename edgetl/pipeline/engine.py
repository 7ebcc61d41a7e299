"""``edgetl build``: every registered stage in order, cached by the hash of its inputs, resumable.

The stage contract (``StageDef``): a stage declares the artifact kinds it consumes and produces, its cache key,
whether it is enabled (and why not), and one run function that returns the stage's typed result. The engine
resolves what a stage consumes as the output of the latest enabled stage before it that produced that kind, so an
optional stage between fine-tuning and quantization (pruning, distillation) that produces a ``float_model`` is
picked up by quantize, export, bench and bundle with no edit to them.

Each stage's cache key hashes the config sections and target fields it reads, the content of the stage
directories it consumes from, and the library versions. ``OUT/build.json`` records, per stage, that key and the
hash of what the stage wrote. A rerun reuses a stage only when both still match, so a half-written or edited
stage directory is never trusted; changing one setting reruns that stage and the ones after it.
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
from edgetl.fsutil import dir_lock, read_json, sha256_file, sha256_json, write_json
from edgetl.manifest import library_versions
from edgetl.registry import Registry
from edgetl.targets import TargetProfile

log = logging.getLogger("edgetl.build")

STATE_FILE = "build.json"
# artifact kinds that flow between stages
KINDS = ("dataset", "float_model", "int8_models", "exported", "results", "report", "bundle")


@dataclass(frozen=True)
class StageDef:
    """One pipeline stage.

    Attributes:
        name: the stage and its directory under OUT/.
        order: position in the pipeline (stages run by increasing order).
        consumes: artifact kinds it reads; each resolves to the latest enabled stage before it producing the kind.
        produces: artifact kinds it writes.
        key: what it reads from config and target (hashed into its cache key).
        run: ``run(ctx, resume) -> result``; reads its inputs through ``ctx.input_dir(kind)``.
        disabled: ``disabled(ctx) -> reason`` when the stage does not run for this build, else None.
    """

    name: str
    order: int
    consumes: tuple[str, ...]
    produces: tuple[str, ...]
    key: Callable[[Context], Any]
    run: Callable[[Context, bool], Any]
    disabled: Callable[[Context], str | None] = lambda ctx: None


STAGES: Registry[StageDef] = Registry("stage")


def register_stage(stage: StageDef) -> StageDef:
    unknown = [k for k in (*stage.consumes, *stage.produces) if k not in KINDS]
    if unknown:
        raise ValueError(f"stage {stage.name}: unknown artifact kind(s) {unknown}; known: {KINDS}")
    return STAGES.register(stage.name, stage)


def ordered_stages() -> list[StageDef]:
    from edgetl.pipeline import stages as _builtin  # noqa: F401  (registers the built-in stages)

    return sorted((STAGES.get(n) for n in STAGES.names()), key=lambda s: s.order)


def stage_names() -> tuple[str, ...]:
    return tuple(s.name for s in ordered_stages())


@dataclass
class Context:
    """One build: config, target, run directory, and which stage provides each artifact kind."""

    cfg: BuildConfig
    target: TargetProfile
    out: Path
    current: str | None = None  # the stage running now

    def dir(self, stage: str) -> Path:
        return self.out / stage

    def provider(self, kind: str, before: str | None = None) -> StageDef | None:
        """The latest enabled stage before ``before`` (default: the running stage) that produces ``kind``.

        Outside a build (a single-stage command) a provider must also have written its manifest.
        """
        before = before or self.current
        found = None
        for stage in ordered_stages():
            if stage.name == before:
                break
            if kind in stage.produces and stage.disabled(self) is None:
                found = stage
        return found

    def input_dir(self, kind: str) -> Path | None:
        """The stage directory holding the ``kind`` this stage consumes (None: no enabled stage produces it)."""
        stage = self.provider(kind)
        return self.dir(stage.name) if stage is not None else None


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


def _record_end(out: Path, state: dict[str, Any], name: str, key: str, exc: BaseException) -> None:
    """``build.json`` says how a stage that did not finish ended: interrupted (resumable) or failed (and why)."""
    if isinstance(exc, KeyboardInterrupt):
        state[name] = {"input_hash": key, "status": "interrupted"}
    else:
        why = (str(exc).strip().splitlines() or [""])[0]
        state[name] = {"input_hash": key, "status": "failed", "error": f"{type(exc).__name__}: {why}"}
    try:
        write_json(out / STATE_FILE, state)
    except OSError as write_error:  # a full disk must not hide the stage's own error
        log.warning("could not record the %s stage's end in %s: %s", name, out / STATE_FILE, write_error)


def build(
    cfg: BuildConfig,
    target: TargetProfile,
    *,
    force: tuple[str, ...] = (),
    on_stage: Callable[[StageOutcome], None] | None = None,
) -> BuildResult:
    """Run (or reuse) every stage for ``target``; raise ``BudgetExceededError`` after the bundle on a budget miss."""
    stages = ordered_stages()
    names = tuple(s.name for s in stages)
    unknown = [s for s in force if s not in names]
    if unknown:
        raise ConfigError(f"--force: unknown stage {unknown[0]!r}", hint=f"stages: {', '.join(names)}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    with dir_lock(out):  # a second build into the same directory refuses instead of sharing its files
        return _build(cfg, target, stages, force, on_stage, out)


def _build(cfg: BuildConfig, target: TargetProfile, stages: list[StageDef], force: tuple[str, ...],
           on_stage: Callable[[StageOutcome], None] | None, out: Path) -> BuildResult:
    names = tuple(s.name for s in stages)
    ctx = Context(cfg, target, out)
    state = _load_state(out)
    versions = library_versions()
    result = BuildResult(out=out)
    output_hash: dict[str, str] = {}
    for stage in stages:
        ctx.current = stage.name
        reason = stage.disabled(ctx)
        if reason is not None:
            outcome = StageOutcome(stage.name, "skipped", reason=reason)
            result.stages.append(outcome)
            if on_stage:
                on_stage(outcome)
            continue
        upstream = {}
        for kind in stage.consumes:
            provider = ctx.provider(kind)
            upstream[kind] = (provider.name, output_hash.get(provider.name, "")) if provider else None
        key = sha256_json({"stage": stage.name, "key": stage.key(ctx), "upstream": upstream, "versions": versions})
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
            # resume only an interrupted run of the very same inputs (e.g. training's last.pt); "started" is what
            # a killed process leaves; a failed stage starts over
            resume = record.get("input_hash") == key and record.get("status") in ("started", "interrupted")
            state[stage.name] = {"input_hash": key, "status": "started"}
            # every later stage must rerun: forget them before this one starts
            for later in names[names.index(stage.name) + 1 :]:
                state.pop(later, None)
            write_json(out / STATE_FILE, state)
            start = time.perf_counter()
            try:
                stage.run(ctx, resume)
            except BaseException as exc:
                _record_end(out, state, stage.name, key, exc)
                raise
            seconds = time.perf_counter() - start
            state[stage.name] = {"input_hash": key, "status": "done", "output_hash": dir_hash(stage_dir),
                                 "seconds": round(seconds, 2)}
            write_json(out / STATE_FILE, state)
            outcome = StageOutcome(stage.name, "ran", seconds=seconds,
                                   reason="resumed" if resume else ("forced" if stage.name in force else ""))
        output_hash[stage.name] = state[stage.name]["output_hash"]
        result.stages.append(outcome)
        if on_stage:
            on_stage(outcome)
    ctx.current = None

    results_stage = ctx.provider("results", before="\0end")
    bundle_stage = ctx.provider("bundle", before="\0end")
    result.results_path = ctx.dir(results_stage.name) / "results.json" if results_stage else None
    result.bundle_dir = ctx.dir(bundle_stage.name) if bundle_stage else None
    from edgetl.bench.budgets import budget_table, check_budgets

    if result.results_path is None:
        return result
    result.budget_rows = check_budgets(target, read_json(result.results_path))
    write_json(out / "budgets.json", result.budget_rows)
    failed = [r for r in result.budget_rows if r["status"] == "fail"]
    if failed and cfg.budget_check:
        raise BudgetExceededError(
            f"{len(failed)} budget(s) of target {target.name} missed: " + ", ".join(r["budget"] for r in failed),
            table=budget_table(result.budget_rows),
            hint="see OUT/budgets.json; pass --no-budget-check to build anyway",
        )
    return result
