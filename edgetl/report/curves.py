"""The report's ranking and calibration figures: ROC and precision-recall curves (one-vs-rest, per class) and a
reliability diagram, for the float model and the int8 model the bundle ships.

They need every evaluation sample's scores, which ``edgetl bench`` keeps in ``scores.npz`` beside ``results.json``
(``edgetl.bench.results.write_scores``): the logits of every evaluated row, host and device rows alike (the device
runner returns its logits with its predictions). The figures are drawn from those with scikit-learn's
``roc_curve`` and ``precision_recall_curve``; the AUC, average precision and ECE figures printed on them and in the
tables are the ones ``results.json`` records (``edgetl.bench.measure.accuracy_metrics``), so the page and the file
never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgetl.bench.measure import ECE_BINS, reliability, softmax
from edgetl.bench.results import BenchResults, BenchRow, row_id

# classes drawn as separate, labelled curves; above this the per-class curves are thin grey lines and the legend
# names only the macro average (a 20-entry legend hides the plot)
MAX_LABELLED_CLASSES = 10


@dataclass(frozen=True)
class Scored:
    """A row with the probabilities of its evaluation pass."""

    row: BenchRow
    role: str  # "float" or "shipped int8"
    probabilities: np.ndarray  # N x classes (softmax of the logits)
    labels: np.ndarray  # N


def shipped_int8_source(results: BenchResults) -> str:
    """The quantization route (``qat``/``ptq``) whose artifacts the bundle carries (``choose_int8_source``)."""
    from edgetl.bench.budgets import choose_int8_source

    return choose_int8_source(results.model_dump(mode="json"))


def scored_rows(results: BenchResults, scores: tuple[np.ndarray, dict[str, np.ndarray]] | None) -> list[Scored]:
    """The float reference and the shipped int8 row of the confusion matrices, each with its probabilities."""
    from edgetl.report.render import pick_confusion_rows

    if scores is None:
        return []
    labels, logits = scores
    out = []
    for r in pick_confusion_rows(results):
        if row_id(r) in logits and len(logits[row_id(r)]) == len(labels):
            role = "float" if r.precision != "int8" else f"shipped int8 ({r.source.upper()})"
            out.append(Scored(r, role, softmax(logits[row_id(r)]), labels))
    return out


def _class_colors(n: int) -> list[Any]:
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _title(s: Scored) -> str:
    from edgetl.report.render import row_label

    return f"{s.role}: {row_label(s.row)}"


def _curve_figure(scored: list[Scored], classes: list[str], kind: str) -> str | None:
    """One panel per scored row, one one-vs-rest curve per class (``kind``: "roc" or "pr")."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    from edgetl.report.render import _png

    if not scored:
        return None
    n = len(classes)
    labelled = n <= MAX_LABELLED_CLASSES
    colors = _class_colors(n)
    fig, axes = plt.subplots(1, len(scored), figsize=(6.2 * len(scored), 5.2), squeeze=False)
    for ax, s in zip(axes[0], scored, strict=True):
        per_class = s.row.per_class or {}
        summary = s.row.roc_auc if kind == "roc" else s.row.average_precision
        for c, name in enumerate(classes):
            positive = s.labels == c
            if positive.all() or not positive.any():
                continue  # one-sided: no curve (results.json records null for it)
            if kind == "roc":
                x, y, _ = roc_curve(positive, s.probabilities[:, c])
                value = per_class[name].roc_auc if name in per_class else None
            else:
                y, x, _ = precision_recall_curve(positive, s.probabilities[:, c])
                value = per_class[name].average_precision if name in per_class else None
            label = f"{name} ({'AUC' if kind == 'roc' else 'AP'} {value:.3f})" if labelled and value is not None \
                else None
            ax.plot(x, y, color=colors[c] if labelled else "#999", linewidth=1.6 if labelled else 0.7,
                    alpha=0.9 if labelled else 0.5, label=label, drawstyle="steps-post" if kind == "pr" else None)
        if kind == "roc":
            ax.plot([0, 1], [0, 1], color="#bbb", linestyle="--", linewidth=1, label="chance")
            ax.set_xlabel("false positive rate")
            ax.set_ylabel("true positive rate")
            name = "ROC AUC"
        else:
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
            name = "mean AP"
        if not labelled:
            ax.plot([], [], color="#999", linewidth=0.7, label=f"{n} classes, one line each")
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.02)
        ax.grid(True, alpha=0.3)
        figure = "-" if summary is None else f"{summary:.3f}"
        ax.set_title(f"{_title(s)}\n{name} {figure} (mean over classes), top-1 {100 * (s.row.accuracy or 0):.2f}%",
                     fontsize=9)
        ax.legend(fontsize=7.5, loc="lower right" if kind == "roc" else "lower left")
    return _png(fig)


def plot_roc(results: BenchResults, scored: list[Scored]) -> str | None:
    return _curve_figure(scored, results.classes, "roc")


def plot_pr(results: BenchResults, scored: list[Scored]) -> str | None:
    return _curve_figure(scored, results.classes, "pr")


def plot_reliability(scored: list[Scored]) -> str | None:
    """Accuracy against confidence in ``ECE_BINS`` bins for each scored row, over the share of samples per bin."""
    import matplotlib.pyplot as plt

    from edgetl.report.render import PRECISION_COLORS, _png

    if not scored:
        return None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="#bbb", linestyle="--", linewidth=1, label="perfect calibration")
    width = 1.0 / ECE_BINS
    for k, s in enumerate(scored):
        rel = reliability(s.labels, s.probabilities)
        color = PRECISION_COLORS.get(s.row.precision, "gray")
        full = rel.count > 0
        centers = (rel.edges[:-1] + rel.edges[1:]) / 2
        ece = s.row.ece if s.row.ece is not None else rel.ece
        # the float model hollow and solid, int8 filled and dashed: where they coincide both stay visible
        hollow = s.row.precision != "int8"
        top.plot(rel.confidence[full], rel.accuracy[full], marker="o", markersize=9 if hollow else 5, color=color,
                 markerfacecolor="none" if hollow else color, linestyle="-" if hollow else "--", linewidth=1.6,
                 label=f"{s.role}: {s.row.name} (ECE {ece:.3f})")
        shift = (k - (len(scored) - 1) / 2) * width / len(scored)
        bottom.bar(centers + shift, rel.count / max(1, rel.count.sum()), width=width / len(scored), color=color,
                   alpha=0.7)
    top.set_ylabel("top-1 accuracy in the bin")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.02)
    top.grid(True, alpha=0.3)
    top.legend(fontsize=8, loc="best")
    top.set_title(f"Reliability: top-1 probability vs accuracy ({ECE_BINS} equal-width bins)", fontsize=10)
    bottom.set_xlabel("top-1 probability (softmax of the logits)")
    bottom.set_ylabel("share of\nsamples")
    bottom.grid(True, axis="y", alpha=0.3)
    return _png(fig)


def ranking_table(results: BenchResults) -> Any:
    """Every evaluated row's ranking and calibration figures, as results.json records them."""
    from edgetl.report.render import Table, _acc, _fmt

    rows = [[r.name, f"{r.runtime}:{r.device}" + (" (proxy)" if r.proxy else ""), r.precision, r.where,
             _acc(r), _fmt(r.roc_auc, ".4f"), _fmt(r.average_precision, ".4f"), _fmt(r.ece, ".4f")]
            for r in results.ok_rows() if r.accuracy is not None and (r.roc_auc is not None or r.ece is not None)]
    return Table(f"Ranking and calibration (one-vs-rest, mean over classes; ECE over {ECE_BINS} bins)",
                 ["artifact", "runtime", "precision", "measured on", "top-1", "ROC AUC", "PR AUC (AP)", "ECE"], rows)
