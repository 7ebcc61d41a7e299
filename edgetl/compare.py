"""``edgetl compare``: what transfer learning bought, measured on the same data and the same split.

Each strategy is the build's fine-tuning recipe with one thing changed, trained by the one fine-tune stage
(``edgetl.stages.finetune.finetune``) into ``OUT/<strategy>/``:

- ``feature_extraction``: the pretrained backbone stays frozen (its BatchNorm statistics too); only the new
  classifier trains, for the warm-up recipe's epochs (``train.strategy: warmup_finetune``, ``train.unfreeze: 0``);
- ``finetune``: head warm-up, then every layer at a lower backbone rate (``train.strategy: warmup_finetune``);
- ``lp_ft``: LP-FT (Kumar et al., ICLR 2022): a linear probe on the frozen features, then a gentle fine-tune of
  every layer at ``train.lp_ft_lr`` (``train.strategy: lp_ft``);
- ``scratch``: the build's recipe from random weights (``train.weights: none``; ``train.strategy: auto``, the
  default, then resolves to the warm-up recipe, as random weights have no features for LP-FT's probe).

A strategy is one ``STRATEGIES`` entry (a name, a sentence, the config overrides), so another recipe is one more
``STRATEGIES.register`` call. Every strategy reads the same ``data`` config and so the same recorded
split (checked: the runs' ``split.json`` must hold the same images); accuracies are on its evaluation split (test
when there is one) and wall times include the test pass. ``compare.json`` and ``compare.png`` go in ``OUT``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgetl import __version__
from edgetl.config import BuildConfig
from edgetl.errors import ConfigError, DataError
from edgetl.fsutil import atomic_path, read_json, sha256_json, write_json
from edgetl.registry import Registry
from edgetl.targets import TargetProfile

log = logging.getLogger("edgetl.compare")

COMPARE_NAME, PLOT_NAME = "compare.json", "compare.png"


@dataclass(frozen=True)
class Strategy:
    """One way to train the classifier: the build config's fine-tuning with ``overrides`` applied.

    Attributes:
        name: the registry name, also the run's folder under ``OUT``.
        description: one sentence for the table and the JSON.
        overrides: dotted config overrides (``{"train.unfreeze": 0}``) for a given build config.
    """

    name: str
    description: str
    overrides: Callable[[BuildConfig], dict[str, Any]]


STRATEGIES: Registry[Strategy] = Registry("comparison strategy")
STRATEGIES.register("feature_extraction", Strategy(
    "feature_extraction", "frozen pretrained backbone, head only, the warm-up recipe's epochs",
    lambda cfg: {"train.strategy": "warmup_finetune", "train.unfreeze": 0}))
STRATEGIES.register("finetune", Strategy(
    "finetune", "head warm-up, then every layer fine-tuned (head at lr, backbone at backbone_lr)",
    lambda cfg: {"train.strategy": "warmup_finetune"}))
STRATEGIES.register("lp_ft", Strategy(
    "lp_ft", "LP-FT: linear probe on frozen features, then a gentle full fine-tune at lp_ft_lr",
    lambda cfg: {"train.strategy": "lp_ft"}))
STRATEGIES.register("scratch", Strategy(
    "scratch", "same architecture and recipe from random weights", lambda cfg: {"train.weights": "none"}))
DEFAULT_STRATEGIES = ("feature_extraction", "finetune", "lp_ft", "scratch")


@dataclass(frozen=True)
class StrategyResult:
    strategy: str
    description: str
    eval_split: str
    eval_accuracy: float  # top-1 of the kept weights on eval_split, 0..1
    best_val_accuracy: float  # what the kept epoch was chosen on
    best_epoch: int
    epochs_run: int
    wall_time_s: float  # training and the test pass
    stopped_early: bool
    run_dir: str  # relative to the compare output directory


@dataclass(frozen=True)
class CompareResult:
    out_dir: Path
    results: list[StrategyResult]
    eval_split: str
    eval_images: int
    split_selected_on: bool  # the evaluation split is val, which every strategy kept its best epoch on
    json_path: Path
    plot_path: Path


def _split_digest(run_dir: Path) -> tuple[str, dict[str, int]]:
    splits = read_json(run_dir / "split.json")["splits"]
    return sha256_json(splits), {name: len(samples) for name, samples in splits.items()}


def compare(cfg: BuildConfig, target: TargetProfile, out_dir: Path,
            strategies: Sequence[str] = DEFAULT_STRATEGIES) -> CompareResult:
    """Train each strategy on ``cfg.data`` with ``cfg.train`` (changed as the strategy says) and compare them.

    Args:
        cfg: the build config (reads ``data`` and ``train``, as ``edgetl train`` does).
        target: the target profile (its input size, unless ``train.image_size`` is set).
        out_dir: where each strategy's run (``OUT/<strategy>/``), ``compare.json`` and ``compare.png`` go.
        strategies: ``STRATEGIES`` names, in table order.

    Returns:
        A ``CompareResult``. An interrupted run (Ctrl-C) continues from its ``last.pt`` when rerun.

    Example:
        >>> compare(load_build_config().with_overrides({"data.path": "digits"}), load_target("cpu"), Path("runs/cmp"))
    """
    from edgetl.stages.finetune import finetune

    if not strategies:
        raise ConfigError("no strategy to compare", hint=f"name some of: {', '.join(STRATEGIES.names())}")
    if len(set(strategies)) != len(strategies):
        raise ConfigError(f"a strategy is named twice: {list(strategies)}")
    chosen = [STRATEGIES.get(name) for name in strategies]  # unknown names fail before any training
    out_dir = Path(out_dir)
    results: list[StrategyResult] = []
    digests: dict[str, str] = {}
    counts: dict[str, int] = {}
    for strategy in chosen:
        run_cfg = cfg.with_overrides(strategy.overrides(cfg))
        log.info("compare: %s (%s)", strategy.name, strategy.description)
        trained = finetune(run_cfg, target, out_dir / strategy.name, resume=True)
        digests[strategy.name], counts = _split_digest(trained.out_dir)
        results.append(StrategyResult(
            strategy=strategy.name, description=strategy.description, eval_split=trained.eval_split,
            eval_accuracy=trained.eval_accuracy, best_val_accuracy=trained.best_val_accuracy,
            best_epoch=trained.best_epoch, epochs_run=trained.epochs_run, wall_time_s=trained.wall_time_s,
            stopped_early=trained.stopped_early, run_dir=strategy.name))
    if len(set(digests.values())) > 1:  # the same data config gives the same split; anything else is a bug
        raise DataError(f"the strategies were trained on different splits: {digests}",
                        hint="rerun `edgetl compare` on data nothing changes meanwhile")
    eval_split = results[0].eval_split
    eval_images = counts.get(eval_split, 0)
    selected_on = eval_split == "val"  # val is what every strategy kept its best epoch on: optimistic, for all alike
    payload: dict[str, Any] = {
        "edgetl_version": __version__,
        "dataset": cfg.data.path,
        "backbone": cfg.train.backbone,
        "target": target.name,
        "eval_split": eval_split,
        "eval_images": eval_images,
        "split_images": counts,
        "split_sha256": next(iter(digests.values())),
        "split_selected_on": selected_on,
        "train": cfg.train.model_dump(mode="json", exclude={"device"}),
        "strategies": [asdict(r) for r in results],
    }
    json_path = write_json(out_dir / COMPARE_NAME, payload)
    plot_path = plot_compare(payload, out_dir / PLOT_NAME)
    return CompareResult(out_dir=out_dir, results=results, eval_split=eval_split, eval_images=eval_images,
                         split_selected_on=selected_on, json_path=json_path, plot_path=plot_path)


def plot_compare(payload: dict[str, Any], path: Path) -> Path:
    """One figure, two panels: top-1 on the evaluation split and wall time, one bar per strategy."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rows = payload["strategies"]
    names = [r["strategy"].replace("_", " ") for r in rows]
    colors = ["#1f77b4", "#2ca02c", "#7f7f7f", "#9467bd", "#ff7f0e"]
    fig, (acc_ax, time_ax) = plt.subplots(1, 2, figsize=(10, 0.6 * len(rows) + 1.8), sharey=True)
    accs = [100 * r["eval_accuracy"] for r in rows]
    acc_ax.barh(names, accs, color=colors[: len(rows)] if len(rows) <= len(colors) else None)
    for i, v in enumerate(accs):
        acc_ax.text(v, i, f" {v:.2f}%", va="center", fontsize=9)
    acc_ax.set_xlim(0, 112)
    split = f"{payload['eval_split']} split, {payload['eval_images']} images"
    acc_ax.set_xlabel(f"top-1 on the {split} (%)")
    acc_ax.invert_yaxis()
    walls = [r["wall_time_s"] for r in rows]
    time_ax.barh(names, walls, color="#bbbbbb")
    for i, v in enumerate(walls):
        time_ax.text(v, i, f" {v:.0f} s", va="center", fontsize=9)
    time_ax.set_xlim(0, max(walls) * 1.25 if walls else 1)
    time_ax.set_xlabel("wall time, training + test pass (s)")
    note = " (val: the split each kept its best epoch on)" if payload["split_selected_on"] else ""
    fig.suptitle(f"What transfer bought: {payload['backbone']} on {Path(payload['dataset']).name}{note}",
                 fontsize=11)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
