"""The report's transfer section: shots per class of a few-shot build, its accuracy-against-shots curve, and the
warning when validation and test disagree by more than their noise (a sign of a distribution shift).

Everything comes from the run's ``train/metrics.json`` (``shots_per_class``, ``shots_curve``, ``val_test_check``,
written by the train stage); nothing is measured here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetl.stats import format_interval


@dataclass
class TransferInfo:
    head: str  # "linear" or "prototype"
    shots_per_class: dict[str, int] = field(default_factory=dict)
    curve: list[dict[str, Any]] = field(default_factory=list)  # edgetl.training.fewshot.shots_curve rows
    val_test_check: dict[str, Any] | None = None  # edgetl.stats.split_disagreement
    eval_split: str | None = None

    @property
    def few_shot(self) -> bool:
        from edgetl.training.fewshot import FEW_SHOT_MAX_SHOTS

        return self.head == "prototype" or (bool(self.shots_per_class)
                                            and min(self.shots_per_class.values()) <= FEW_SHOT_MAX_SHOTS)


def load_transfer(run_dir: Path) -> TransferInfo | None:
    """The transfer facts of the run at ``run_dir`` (None without a ``train/metrics.json``)."""
    from edgetl.report.training import _read

    metrics = _read(Path(run_dir) / "train" / "metrics.json")
    if not metrics:
        return None
    counts = (metrics.get("class_counts") or {}).get("train") or metrics.get("shots_per_class") or {}
    curve = metrics.get("shots_curve")
    return TransferInfo(head=str(metrics.get("head") or "linear"),
                        shots_per_class={str(k): int(v) for k, v in counts.items()},
                        curve=[r for r in curve if isinstance(r, dict)] if isinstance(curve, list) else [],
                        val_test_check=metrics.get("val_test_check") or None, eval_split=metrics.get("eval_split"))


def transfer_lines(info: TransferInfo | None) -> list[str]:
    """Sentences for the report's headline: the shots per class of a few-shot build, and the shift warning."""
    if info is None:
        return []
    lines = []
    if info.few_shot and info.shots_per_class:
        shots = sorted(set(info.shots_per_class.values()))
        per = f"{shots[0]}" if len(shots) == 1 else f"{shots[0]}-{shots[-1]}"
        head = ("the prototype head (class-mean embeddings, no gradient step)" if info.head == "prototype"
                else "a fine-tuned linear head")
        listed = ", ".join(f"{k} {v}" for k, v in sorted(info.shots_per_class.items()))
        lines.append(f"Few-shot build: **{per} labelled image(s) per class** ({listed}), {head}. With so few "
                     "labels every figure is noisy: read each accuracy with its 95 % interval.")
    check = info.val_test_check
    if check and check.get("disagree"):
        lines.append(
            f"**Warning: val and test disagree beyond their noise** (val "
            f"{format_interval(check['val_accuracy'], check['val_images'])}, test "
            f"{format_interval(check['test_accuracy'], check['test_images'])}: {check['test']}; two-proportion "
            f"z-test p = {check['p_value']:.2g}): the test images may come from another distribution "
            "than the training images (a shift). Unlabelled images of the deployment domain can adapt the model "
            "(`--adapt-data DIR`).")
    return lines


def shots_table(info: TransferInfo | None) -> Any:
    """The accuracy-against-shots curve as a table (None without one)."""
    from edgetl.report.render import Table

    if info is None or not info.curve:
        return None
    rows = [[str(r["shots"]), format_interval(r["accuracy"], r.get("eval_images")),
             ", ".join(f"{100 * a:.1f}%" for a in r.get("seed_accuracies", []))] for r in info.curve]
    split = info.eval_split or "evaluation"
    return Table(f"Prototype head: top-1 on {split} against labelled images per class (prototypes rebuilt from k "
                 "training images per class, drawn with fixed seeds)",
                 ["images per class", f"top-1 on {split}, mean of seeds (95% CI)", "per seed"], rows)


def plot_shots(info: TransferInfo | None) -> str | None:
    """The curve with its Wilson band, as a base64 PNG (None without one)."""
    if info is None or not info.curve:
        return None
    import matplotlib.pyplot as plt

    from edgetl.report.render import _png

    ks = [r["shots"] for r in info.curve]
    acc = [100 * r["accuracy"] for r in info.curve]
    lo = [100 * r["ci95"][0] for r in info.curve]
    hi = [100 * r["ci95"][1] for r in info.curve]
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.fill_between(ks, lo, hi, color="#1f77b4", alpha=0.18, label="95% Wilson interval")
    ax.plot(ks, acc, "o-", color="#1f77b4", label="mean of seeds")
    for r in info.curve:
        ax.scatter([r["shots"]] * len(r.get("seed_accuracies", [])),
                   [100 * a for a in r.get("seed_accuracies", [])], s=12, color="#7f7f7f", zorder=3)
    ax.set_xticks(ks)
    ax.set_xlabel("labelled images per class")
    ax.set_ylabel(f"top-1 on {info.eval_split or 'eval'} (%)")
    ax.set_ylim(max(0.0, min(lo) - 5), 100.5)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)
