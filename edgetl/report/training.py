"""The report's training curves: loss and accuracy per epoch, train and val, from the run's ``metrics.json`` files.

Fine-tuning (``train/metrics.json``: its ``epochs``, each with its ``phase``: ``head`` then ``finetune``), the prune
stage's recovery (``prune/metrics.json``, phase ``recover``) and QAT (``quantize/metrics.json``: ``qat.history``,
where epoch 0 is the PTQ-initialised model before any QAT step) are drawn on one epoch axis, in that order, each
phase shaded and named, with the epoch each stage kept marked. Nothing is measured here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgetl.errors import ModelFileError
from edgetl.fsutil import read_json

PHASE_NAMES = {"head": "head only (backbone frozen)", "probe": "linear probe (LP-FT, backbone frozen)",
               "finetune": "fine-tuning", "recover": "prune recovery", "qat": "QAT (int8 fake-quant)"}
PHASE_COLORS = {"head": "#fde9c9", "probe": "#fde9c9", "finetune": "#dcebf7", "recover": "#e6e0f2", "qat": "#f8d7d7"}


@dataclass
class Epoch:
    x: int  # position on the shared axis (1-based, stages one after another)
    stage: str  # train | prune | quantize
    phase: str  # head | finetune | recover | qat
    epoch: int  # the stage's own epoch number
    train_loss: float | None = None
    train_accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None


@dataclass
class History:
    """Every recorded epoch of the run's training-shaped stages, and the epochs each stage kept."""

    epochs: list[Epoch] = field(default_factory=list)
    kept: dict[str, int] = field(default_factory=dict)  # stage -> x of the epoch it kept
    sources: list[str] = field(default_factory=list)  # the metrics files read, relative to the run
    # the split every stage selects its epoch on (a held-out test split, where there is one, is never seen here)
    val_split: str = "val"
    val_images: int | None = None  # its image count, for the intervals of the val figures

    def keep(self, stage: str, epoch: Any) -> None:
        """Mark ``stage``'s epoch number ``epoch`` as the one it kept (ignored when no such epoch was recorded)."""
        for e in self.epochs:
            if e.stage == stage and e.epoch == epoch:
                self.kept[stage] = e.x

    def phases(self) -> list[tuple[str, int, int]]:
        """(phase, first x, last x) spans in order."""
        spans: list[tuple[str, int, int]] = []
        for e in self.epochs:
            if spans and spans[-1][0] == e.phase and spans[-1][2] == e.x - 1:
                spans[-1] = (e.phase, spans[-1][1], e.x)
            else:
                spans.append((e.phase, e.x, e.x))
        return spans


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _read(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except ValueError as exc:
        raise ModelFileError(f"{path} is not valid JSON: {exc}", hint="re-run the stage that wrote it") from exc
    return data if isinstance(data, dict) else None


def load_history(run_dir: Path) -> History | None:
    """The training history of the run at ``run_dir``; None when it has no training metrics (a bare model file)."""
    run_dir = Path(run_dir)
    history = History()
    x = 0
    for stage, default_phase in (("train", "finetune"), ("prune", "recover")):
        metrics = _read(run_dir / stage / "metrics.json")
        if not metrics or not isinstance(metrics.get("epochs"), list):
            continue
        history.sources.append(f"{stage}/metrics.json")
        start = x
        for row in metrics["epochs"]:
            if not isinstance(row, dict):
                continue
            x += 1
            history.epochs.append(Epoch(x, stage, str(row.get("phase") or default_phase), _int(row.get("epoch"), x - start),
                                        _num(row.get("train_loss")), _num(row.get("train_accuracy")),
                                        _num(row.get("val_loss")), _num(row.get("val_accuracy"))))
        history.keep(stage, metrics.get("best_epoch"))
        val_counts = (metrics.get("class_counts") or {}).get("val")
        if isinstance(val_counts, dict) and history.val_images is None:
            history.val_images = sum(int(v) for v in val_counts.values())
    quantize = _read(run_dir / "quantize" / "metrics.json")
    qat = (quantize or {}).get("qat") or {}
    if isinstance(qat.get("history"), list) and qat["history"]:
        history.sources.append("quantize/metrics.json")
        start = x
        for row in qat["history"]:
            if not isinstance(row, dict):
                continue
            x += 1
            history.epochs.append(Epoch(x, "quantize", "qat", _int(row.get("epoch"), x - start - 1),
                                        _num(row.get("train_loss")), _num(row.get("train_accuracy")),
                                        _num(row.get("val_loss")), _num(row.get("val_accuracy"))))
        history.keep("quantize", qat.get("kept_epoch"))
    return history if history.epochs else None


def plot_training(history: History) -> str | None:
    """Loss and accuracy per epoch, train and val, phases shaded, kept epochs starred."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from edgetl.report.render import _png

    if not history.epochs:
        return None
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(13, 4.6))
    spans = history.phases()
    for ax in (loss_ax, acc_ax):
        for phase, lo, hi in spans:
            ax.axvspan(lo - 0.5, hi + 0.5, color=PHASE_COLORS.get(phase, "#eee"), alpha=0.8, zorder=0, linewidth=0)
        ax.grid(True, alpha=0.3)
        ax.set_xlabel("epoch (stages in order)")
    series = (("train", "train_loss", "train_accuracy", "-", "#1f77b4"),
              (history.val_split, "val_loss", "val_accuracy", "--", "#d62728"))
    for stage in dict.fromkeys(e.stage for e in history.epochs):
        epochs = [e for e in history.epochs if e.stage == stage]
        for split, loss_key, acc_key, style, color in series:
            for ax, key, scale in ((loss_ax, loss_key, 1.0), (acc_ax, acc_key, 100.0)):
                points = [(e.x, getattr(e, key) * scale) for e in epochs if getattr(e, key) is not None]
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(xs, ys, style, marker="o", markersize=3.5, color=color, linewidth=1.5,
                            label=split if stage == history.epochs[0].stage else None)
    for x in history.kept.values():
        kept = next((e for e in history.epochs if e.x == x), None)
        if kept is not None and kept.val_accuracy is not None:
            acc_ax.scatter([x], [kept.val_accuracy * 100], marker="*", s=180, color="#ff7f0e", zorder=5,
                           edgecolors="black", linewidths=0.6)
    qat_start = next((e for e in history.epochs if e.stage == "quantize" and e.train_loss is None), None)
    if qat_start is not None and qat_start.val_accuracy is not None:
        acc_ax.annotate("before QAT\n(PTQ ranges)", (qat_start.x, qat_start.val_accuracy * 100),
                        textcoords="offset points", xytext=(0, -26), ha="center", fontsize=7, color="#555")
    loss_ax.set_ylabel("loss (cross-entropy)")
    loss_ax.set_title("Loss per epoch", fontsize=10)
    acc_ax.set_ylabel("top-1 accuracy (%)")
    acc_ax.set_title("Accuracy per epoch (star: the epoch each stage kept)", fontsize=10)
    ticks = [e.x for e in history.epochs]
    tick_labels = [str(e.epoch) for e in history.epochs]
    for ax in (loss_ax, acc_ax):
        ax.set_xlim(min(ticks) - 0.5, max(ticks) + 0.5)
        if len(ticks) <= 40:
            ax.set_xticks(ticks, tick_labels, fontsize=7)
    phases = [Patch(color=PHASE_COLORS.get(p, "#eee"), label=PHASE_NAMES.get(p, p))
              for p in dict.fromkeys(s[0] for s in spans)]
    handles, _ = acc_ax.get_legend_handles_labels()
    acc_ax.legend(handles=[*handles, *phases], fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0)
    return _png(fig)


def training_table(history: History) -> Any:
    """One line per phase: epochs, and the last and best val figures."""
    from edgetl.report.render import Table, _fmt, _pct
    from edgetl.stats import format_interval

    def val_pct(value: float | None) -> str:
        return format_interval(value, history.val_images)

    rows = []
    for phase, lo, hi in history.phases():
        epochs = [e for e in history.epochs if lo <= e.x <= hi]
        last = epochs[-1]
        accs = [e.val_accuracy for e in epochs if e.val_accuracy is not None]
        kept = [e for e in epochs if history.kept.get(e.stage) == e.x]
        rows.append([PHASE_NAMES.get(phase, phase), f"{epochs[0].epoch}-{last.epoch}" if len(epochs) > 1
                     else str(last.epoch), _fmt(last.train_loss, ".4f"), _pct(last.train_accuracy),
                     _fmt(last.val_loss, ".4f"), val_pct(last.val_accuracy), val_pct(max(accs)) if accs else "-",
                     f"epoch {kept[0].epoch}" if kept else "-"])
    return Table(f"Training phases ({', '.join(history.sources)}; {history.val_split} is the selection split)",
                 ["phase", "epochs", "last train loss", "last train top-1", f"last {history.val_split} loss",
                  f"last {history.val_split} top-1", f"best {history.val_split} top-1", "kept"], rows)
