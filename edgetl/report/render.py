"""``edgetl report``: ``report.md`` (tables) and a self-contained ``report.html`` (plots inlined as base64 PNGs).

The plots answer the questions a user brings: which artifact gives the best accuracy for its latency (the Pareto
front), how much int8 costs per class (confusion matrices), how well the float and the shipped int8 model rank and
how calibrated they are (ROC, precision-recall, reliability: ``edgetl.report.curves``), how training went
(``edgetl.report.training``), how steady the latency is (distributions), and how big each file is. Everything
comes from ``results.json``, the ``scores.npz`` beside it and the run's ``metrics.json`` files; nothing is
measured here.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetl.bench.results import BenchResults, BenchRow, load_results
from edgetl.export.parity import describe_agreement
from edgetl.fsutil import write_text

if TYPE_CHECKING:
    from edgetl.report.training import History
    from edgetl.report.transfer import TransferInfo

PRECISION_COLORS = {"fp32": "#1f77b4", "bf16": "#9467bd", "fp16": "#2ca02c", "int8": "#d62728"}
FORMAT_MARKERS = {"torch": "s", "onnx": "o", "openvino": "D", "tensorrt": "^"}


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]

    def markdown(self) -> str:
        if not self.rows:
            return ""
        out = [f"### {self.title}", "", "| " + " | ".join(self.headers) + " |",
               "| " + " | ".join("---" for _ in self.headers) + " |"]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in self.rows]
        return "\n".join(out) + "\n"

    def html(self) -> str:
        if not self.rows:
            return ""
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in self.rows)
        return f"<h3>{html.escape(self.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ------------------------------------------------------------------------------------------------- helpers
def _fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _acc(r: BenchRow) -> str:
    """A row's top-1 with its 95 % Wilson interval on the images it was measured on."""
    from edgetl.stats import format_interval

    return format_interval(r.accuracy, r.eval_images)


def row_label(r: BenchRow) -> str:
    label = f"{r.name} · {r.runtime}:{r.device}"
    if r.precision not in r.name:
        label += f" {r.precision}"
    return label + (" (proxy)" if r.proxy else "") + (f" on {r.where}" if r.measured_on == "device" else "")


def _p50_cell(r: BenchRow, spec: str = ".3f") -> str:
    """p50, or for an estimate row the estimate marked as one with its band (never a bare number)."""
    if r.latency_ms is not None:
        return _fmt(r.latency_ms.p50, spec) + _noise_suffix(r)
    if r.estimate is not None:
        e = r.estimate
        return f"~{e.latency_ms:{spec}} (estimate; real {e.low_ms:.3g}-{e.high_ms:.3g})"
    return "-"


def _noise_suffix(r: BenchRow) -> str:
    """`` ±N%``: half the min-max spread of the row's round medians (nothing for a single round)."""
    rounds = r.latency_rounds
    return f" ±{rounds.noise_pct:.1f}%" if rounds is not None and rounds.rounds > 1 else ""


def model_tag(r: BenchRow) -> str:
    """Which float model a row's artifact came from: "pruned", "distilled", "unpruned" ("" when unknown)."""
    if r.float_method == "prune" or (r.float_source or "").startswith("prune:"):
        return "pruned"
    if r.float_method == "distill":
        return "distilled"
    return "unpruned" if r.float_source else ""


def pareto_front(rows: list[BenchRow]) -> list[BenchRow]:
    """Rows no other row beats on both p50 latency (lower) and accuracy (higher), fastest first."""
    points = [r for r in rows if r.accuracy is not None and r.latency_ms is not None]
    front: list[BenchRow] = []
    best = -1.0
    for r in sorted(points, key=lambda r: (r.latency_ms.p50, -r.accuracy)):  # type: ignore[union-attr,operator]
        if r.accuracy > best:  # type: ignore[operator]
            front.append(r)
            best = r.accuracy  # type: ignore[assignment]
    return front


def pick_confusion_rows(results: BenchResults) -> list[BenchRow]:
    """The fp32 reference (an exported fp32 artifact, else torch; on the int8 row's runtime where it ran there)
    and the most accurate int8 row of the quantization route the bundle ships (``choose_int8_source``; another
    route only where that one has no row)."""
    from edgetl.report.curves import shipped_int8_source

    ok = [r for r in results.ok_rows() if r.confusion_matrix is not None]
    shipped = shipped_int8_source(results)
    int8 = sorted((r for r in ok if r.precision == "int8"),
                  key=lambda r: (r.source != shipped, -(r.accuracy or 0), r.latency_ms.p50 if r.latency_ms else 1e9))
    same = int8[0].key[1:3] + int8[0].key[4:] if int8 else None  # runtime, device, measured_on
    fp32 = sorted((r for r in ok if r.precision == "fp32"),
                  key=lambda r: (r.key[1:3] + r.key[4:] != same, r.format == "torch", r.proxy))
    return [*fp32[:1], *int8[:1]]


# ------------------------------------------------------------------------------------------------- tables
def summary_table(results: BenchResults) -> Table:
    batches = sorted({int(b) for r in results.rows for b in r.throughput}, key=int)
    split = f" ({results.eval_split})" if results.eval_split else ""
    headers = ["artifact", "runtime", "precision", "measured on", "status", f"top-1{split}", f"macro F1{split}",
               "p50 ms", "p90 ms",
               "p99 ms", *[f"img/s b{b}" for b in batches], "cold start ms", "peak MB", "size MB", "MMACs",
               "params M", "threads"]
    rows = []
    for r in results.rows:
        lat = r.latency_ms
        status = r.status if r.status == "ok" else f"{r.status}: {r.reason}"
        rows.append([
            r.name, f"{r.runtime}:{r.device}" + (" (proxy)" if r.proxy else ""), r.precision, r.where, status,
            _acc(r), _fmt(r.macro_f1, ".4f"), _p50_cell(r),
            _fmt(lat.p90 if lat else None, ".3f"), _fmt(lat.p99 if lat else None, ".3f"), *[_fmt(r.throughput.get(str(b)), ".1f") for b in batches],
            _fmt(r.cold_start_ms, ".1f"), _fmt(r.peak_memory_mb, ".1f"),
            _fmt(r.size_bytes / 1e6 if r.size_bytes else None, ".2f"),
            _fmt(r.macs / 1e6 if r.macs is not None else None, ".1f"),
            _fmt(r.params / 1e6 if r.params is not None else None, ".2f"), "-" if r.threads is None else str(r.threads),
        ])
    return Table("All rows", headers, rows)


def estimate_table(results: BenchResults) -> Table | None:
    """The estimate rows with their band and the peaks behind them: an estimate is never shown as a measurement."""
    rows = []
    for r in results.rows:
        e = r.estimate
        if r.measured_on != "estimate" or e is None:
            continue
        rows.append([r.name, f"{r.runtime}:{r.device}", r.precision, f"{e.latency_ms:.3g}",
                     f"{e.low_ms:.3g}-{e.high_ms:.3g}", f"{e.band[0]:g}-{e.band[1]:g}",
                     str(e.peaks.get("source", "-")), e.method])
    if not rows:
        return None
    return Table("Latency estimates (roofline, not measured; real latency by the band validated on the build host)",
                 ["artifact", "runtime", "precision", "estimate ms", "real latency ms (band)", "estimate/measured "
                  "on the build host", "peaks", "method"], rows)


def per_class_tables(results: BenchResults) -> list[Table]:
    tables = []
    for r in pick_confusion_rows(results):
        if r.per_class is None:
            continue
        ranked = any(m.roc_auc is not None for m in r.per_class.values())  # the one-vs-rest figures, with logits
        rows = [[name, f"{m.precision:.3f}", f"{m.recall:.3f}", f"{m.f1:.3f}", str(m.support),
                 *([_fmt(m.roc_auc, ".3f"), _fmt(m.average_precision, ".3f")] if ranked else [])]
                for name, m in r.per_class.items()]
        tables.append(Table(f"Per class: {row_label(r)}", ["class", "precision", "recall", "F1", "images",
                                                           *(["ROC AUC", "PR AUC (AP)"] if ranked else [])], rows))
    return tables


def export_checks_table(results: BenchResults) -> Table | None:
    """What the export stage checked per artifact: agreement with its torch model, and int8 layers really int8."""
    seen: dict[str, BenchRow] = {}
    for r in results.rows:
        if r.parity and r.name not in seen:
            seen[r.name] = r
    if not seen:
        return None
    rows = []
    for r in seen.values():
        p = r.parity or {}
        agreement = describe_agreement(p) if "top1_agreement" in p else "-"
        layers = "-" if r.int8_ops is None else f"{r.int8_ops}/{r.int8_ops + (r.float_ops or 0)}"
        rows.append([r.name, str(p.get("reference", "-")), str(p.get("runtime", "-")), str(p.get("n", "-")),
                     agreement, _fmt(p.get("max_logit_diff"), ".3g"), layers])
    return Table("Export checks (parity with the torch model, int8 layers)",
                 ["artifact", "torch reference", "runtime", "images", "top-1 agreement", "max |logit diff|",
                  "int8 convs+fc"], rows)


def host_table(results: BenchResults) -> Table:
    h = results.host
    versions = h.get("versions", {})
    s = results.settings
    rows = [
        ["host CPU", f"{h.get('cpu')} ({h.get('arch')}), {h.get('cores_logical')} logical / "
                     f"{h.get('cores_physical')} physical cores, {h.get('memory_gb')} GB"],
        ["instruction sets", " ".join(h.get("isa", [])) or "-"],
        ["ONNX Runtime providers", ", ".join(h.get("onnxruntime_providers", [])) or "-"],
        ["OpenVINO devices", ", ".join(f"{k} ({v})" for k, v in h.get("openvino_devices", {}).items()) or "-"],
        ["CUDA devices", ", ".join(h.get("cuda_devices", [])) or "none"],
        ["libraries", ", ".join(f"{k} {v}" for k, v in versions.items())],
        ["target", f"{results.target}: {results.target_hardware}"],
        ["timing", f"warm-up {s.warmup}, then at least {s.min_iterations} runs and {s.min_time_s} s per row; "
                   f"batch sizes {s.batch_sizes}; threads {s.threads or 'runtime default'}"],
        ["timing rounds", f"{s.rounds} per row, rows interleaved, runs and time shared out; p50 is the median of "
                          "the round medians, ± half their min-max spread" if s.rounds > 1 else "1 (no spread)"],
        ["accuracy", f"{results.dataset or '-'} ({results.eval_split or '-'} split"
                     + (", the split selection used" if results.eval_split_selected_on else "")
                     + (", held out from selection" if results.eval_split_selected_on is False else "")
                     + f"), eval batch {s.eval_batch_size}"],
        ["memory", s.memory_method],
    ]
    return Table("Host and settings", ["", ""], rows)


# -------------------------------------------------------------------------------------------------- plots
def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _legend_handles(rows: list[BenchRow]) -> list[Any]:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=PRECISION_COLORS.get(p, "gray"), marker="o", linestyle="", label=p)
               for p in sorted({r.precision for r in rows})]
    handles += [Line2D([], [], color="gray", marker=FORMAT_MARKERS.get(f, "o"), linestyle="", label=f)
                for f in sorted({r.format for r in rows})]
    if any(r.proxy for r in rows):
        handles.append(Line2D([], [], color="gray", marker="o", markerfacecolor="none", linestyle="",
                              label="host proxy"))
    return handles


def plot_tradeoff(results: BenchResults) -> str | None:
    """Accuracy vs p50 latency with the Pareto front; latency bars when there is no accuracy."""
    import matplotlib.pyplot as plt

    rows = [r for r in results.ok_rows() if r.latency_ms is not None]
    if not rows:
        return None
    with_acc = [r for r in rows if r.accuracy is not None]
    if not with_acc:
        rows = sorted(rows, key=lambda r: r.latency_ms.p50)  # type: ignore[union-attr]
        fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.2))
        p50 = [r.latency_ms.p50 for r in rows]  # type: ignore[union-attr]
        p90 = [r.latency_ms.p90 - r.latency_ms.p50 for r in rows]  # type: ignore[union-attr]
        ax.barh([row_label(r) for r in rows], p50, xerr=[[0] * len(rows), p90],
                color=[PRECISION_COLORS.get(r.precision, "gray") for r in rows], capsize=3)
        ax.invert_yaxis()
        ax.set_xlabel("batch-1 latency, ms (bar: p50, whisker: p90)")
        ax.set_title("Latency (no evaluation data: pass --data for accuracy)")
        return _png(fig)
    fig, ax = plt.subplots(figsize=(10, 5.5))
    with_acc.sort(key=lambda r: r.latency_ms.p50)  # type: ignore[union-attr]
    front = pareto_front(with_acc)
    ax.step([r.latency_ms.p50 for r in front], [r.accuracy * 100 for r in front], where="post",  # type: ignore
            color="#ff7f0e", linewidth=2, alpha=0.7, zorder=2)
    ax.scatter([r.latency_ms.p50 for r in front], [r.accuracy * 100 for r in front], s=260,  # type: ignore
               facecolors="none", edgecolors="#ff7f0e", linewidths=2, zorder=2, label="Pareto front")
    key = []
    tags = {model_tag(r) for r in with_acc}
    for i, r in enumerate(with_acc, start=1):
        color = PRECISION_COLORS.get(r.precision, "gray")
        ax.scatter(r.latency_ms.p50, r.accuracy * 100, s=80, marker=FORMAT_MARKERS.get(r.format, "o"),  # type: ignore
                   color=color, facecolors="none" if r.proxy else color, linewidths=1.5, zorder=3)
        if len(tags) > 1 and model_tag(r) in ("pruned", "distilled"):  # a ring marks what is not the unpruned model
            ax.scatter(r.latency_ms.p50, r.accuracy * 100, s=150, marker="o", facecolors="none",  # type: ignore
                       edgecolors="black", linestyle="--" if model_tag(r) == "distilled" else "-",
                       linewidths=1.0, zorder=4)
        # numbers, not names, beside the points: names of close points would overlap; the key lists them
        ax.annotate(str(i), (r.latency_ms.p50, r.accuracy * 100), textcoords="offset points",  # type: ignore
                    xytext=(5, 5 + 9 * ((i - 1) % 3)), fontsize=8, color="#333")
        model = ", ".join(part for part in (model_tag(r), f"{r.macs / 1e6:.3g} MMACs" if r.macs else "") if part)
        key.append(f"{i}  {row_label(r)}{f' [{model}]' if model else ''}  "
                   f"({r.latency_ms.p50:.3g} ms, {_acc(r)})")  # type: ignore[union-attr]
    lat = [r.latency_ms.p50 for r in with_acc]  # type: ignore[union-attr]
    if max(lat) / max(min(lat), 1e-9) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("p50 latency, batch 1 (ms) - lower is better")
    ax.set_ylabel(f"top-1 accuracy on {results.eval_split or 'eval'} (%) - higher is better")
    ax.set_title("Accuracy vs latency: every artifact on every runtime")
    ax.grid(True, alpha=0.3)
    rings = []
    if len(tags) > 1:
        from matplotlib.lines import Line2D

        rings = [Line2D([], [], color="black", marker="o", markerfacecolor="none", linestyle="",
                        label=f"{tag} (ring{', dashed' if tag == 'distilled' else ''})")
                 for tag in ("pruned", "distilled") if tag in tags]
    ax.legend(handles=[*_legend_handles(with_acc), *rings, *ax.get_legend_handles_labels()[0]], fontsize=8,
              loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.text(0.92, 0.08, "\n".join(key), fontsize=7.5, family="monospace", va="bottom", ha="left")
    return _png(fig)


def plot_confusions(results: BenchResults) -> str | None:
    import matplotlib.pyplot as plt
    import numpy as np

    picked = pick_confusion_rows(results)
    if not picked:
        return None
    n = len(results.classes)
    fig, axes = plt.subplots(1, len(picked), figsize=(min(6.5, 1.5 + 0.55 * n) * len(picked), min(6, 1.3 + 0.5 * n)),
                             squeeze=False)
    for ax, r in zip(axes[0], picked, strict=True):
        cm = np.asarray(r.confusion_matrix, dtype=float)
        norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        if n <= 20:
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if norm[i, j] > 0.5 else "black")
        ticks = range(n)
        ax.set_xticks(ticks, results.classes, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(ticks, results.classes, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{row_label(r)}\ntop-1 {_acc(r)}", fontsize=9)
    return _png(fig)


def plot_latency_distribution(results: BenchResults) -> str | None:
    import matplotlib.pyplot as plt

    rows = [r for r in results.ok_rows() if r.latency_samples_ms]
    if not rows:
        return None
    rows.sort(key=lambda r: r.latency_ms.p50 if r.latency_ms else 0)
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) + 1.5))
    box = ax.boxplot([r.latency_samples_ms for r in rows], orientation="horizontal", patch_artist=True, showfliers=True,
                     whis=(1, 99), flierprops={"markersize": 2, "alpha": 0.4},
                     medianprops={"color": "black"})
    for patch, r in zip(box["boxes"], rows, strict=True):
        patch.set_facecolor(PRECISION_COLORS.get(r.precision, "gray"))
        patch.set_alpha(0.6)
    ax.set_yticks(range(1, len(rows) + 1), [row_label(r) for r in rows], fontsize=8)
    ax.invert_yaxis()
    samples = [s for r in rows for s in r.latency_samples_ms]
    if max(samples) / max(min(samples), 1e-9) > 30:
        ax.set_xscale("log")
    ax.set_xlabel("batch-1 latency per run (ms); box: p25-p75, whiskers: p1-p99")
    ax.set_title("Latency distribution")
    ax.grid(True, axis="x", alpha=0.3)
    return _png(fig)


def plot_sizes(results: BenchResults) -> str | None:
    import matplotlib.pyplot as plt

    sizes: dict[str, tuple[float, str]] = {}
    for r in results.rows:
        if r.size_bytes and r.name not in sizes:
            sizes[r.name] = (r.size_bytes / 1e6, r.precision)
    if not sizes:
        return None
    names = sorted(sizes, key=lambda n: -sizes[n][0])
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.2))
    values = [sizes[n][0] for n in names]
    ax.barh(names, values, color=[PRECISION_COLORS.get(sizes[n][1], "gray") for n in names])
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.2f} MB", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("file size (MB; OpenVINO: .xml + .bin)")
    ax.set_title("Model size on disk")
    ax.set_xlim(0, max(values) * 1.25)
    return _png(fig)


# ------------------------------------------------------------------------------------------------- output
def shipped_rows(results: BenchResults) -> tuple[BenchRow, BenchRow | None] | None:
    """The measured row of the bundle's primary model, and the fp32 row it is compared with (same runtime, device
    and machine; None when it is fp32 itself or none ran); None when the results name no shipped artifact.

    The target's own measurement comes first: on the device, then on this host, then a host proxy.
    """
    if not results.shipped:
        return None
    timed = [r for r in results.ok_rows() if r.latency_ms is not None]
    candidates = [r for r in timed if r.name == results.shipped[0]]
    if not candidates:
        return None
    order = {"device": 0, "host": 1}
    row = min(candidates, key=lambda r: (order.get(r.measured_on, 2), r.proxy))
    if row.precision == "fp32":
        return row, None
    same_place = [r for r in timed if r.precision == "fp32" and (r.runtime, r.device, r.where, r.proxy)
                  == (row.runtime, row.device, row.where, row.proxy)]
    same_place.sort(key=lambda r: r.format != row.format)  # the same format first (onnx-fp32 for onnx-int8-qat)
    return row, (same_place[0] if same_place else None)


def _sample_noun(results: BenchResults) -> str:
    """How the report counts evaluation samples: the task's word ("images", "texts"); results without a task (an
    older edgetl's, all of image models) count images."""
    from edgetl.tasks import TASKS

    return TASKS.get(results.task).sample_noun if results.task and results.task in TASKS else "images"


def split_sentence(results: BenchResults) -> str | None:
    """Which samples every accuracy figure is on, and whether selection saw them."""
    if results.eval_split is None:
        return None
    images = next((r.eval_images for r in results.rows if r.eval_images), None)
    count = f" ({images} {_sample_noun(results)})" if images else ""
    if results.eval_split_selected_on:
        return (f"Every accuracy is on **{results.eval_split}**{count}, the split fine-tuning and QAT kept their "
                "best epochs on, so the figures are optimistic: the data came with val/ and no test/ (add a test/ "
                "split for figures nothing was selected on).")
    if results.eval_split_selected_on is False:
        return f"Every accuracy is on **{results.eval_split}**{count}, held out from training and from selection."
    return f"Every accuracy is on the {results.eval_split} split of {results.dataset or 'the data'}{count}."


def _shipped_line(results: BenchResults) -> str | None:
    picked = shipped_rows(results)
    if picked is None:
        return None
    row, fp32 = picked
    on = (f" on {row.where}" if row.measured_on == "device" else "") + (" (host proxy)" if row.proxy else "")
    text = (f"Ships: **{row.name}** ({row.runtime}:{row.device}{on}, the bundle's primary model): "
            f"p50 {row.latency_ms.p50:.3f} ms")  # type: ignore[union-attr]
    if fp32 is not None:
        speedup = fp32.latency_ms.p50 / row.latency_ms.p50  # type: ignore[union-attr]
        text += f", {speedup:.2f}x the speed of {fp32.name}"
    if row.accuracy is not None:
        text += f", top-1 {_acc(row)} on {results.eval_split or 'the evaluation split'}"
        if fp32 is not None and fp32.accuracy is not None:
            text += f" ({(row.accuracy - fp32.accuracy) * 100:+.2f} points vs fp32)"
    chosen_on = results.int8_selection or {}
    if row.precision == "int8" and len(chosen_on.get("accuracy") or {}) > 1:  # a choice was made
        def score(route: str, acc: Any) -> str:  # one figure, or one per format (the dynamic route)
            if isinstance(acc, dict):
                return f"{route} " + " / ".join(f"{100 * v:.2f} % ({f})" for f, v in sorted(acc.items()))
            return f"{route} {100 * acc:.2f} %"

        scores = ", ".join(score(route, acc) for route, acc in sorted(chosen_on["accuracy"].items()))
        text += f". Its int8 route ({row.source}) was chosen on {chosen_on.get('split', 'val')} ({scores})"
    return text + "."


def _headline(results: BenchResults) -> list[str]:
    """The sentences a reader needs first: what ships (its speed-up over fp32 and its accuracy change), on which
    split, and the fastest row when it is not what ships."""
    ok = [r for r in results.ok_rows() if r.latency_ms is not None]
    lines = [line for line in (_shipped_line(results), split_sentence(results)) if line]
    if ok:
        fastest = min(ok, key=lambda r: r.latency_ms.p50)  # type: ignore[union-attr]
        if not results.shipped or fastest.name != results.shipped[0]:
            lines.append(("Fastest measured (not the shipped model): " if results.shipped else "Fastest: ")
                         + f"**{row_label(fastest)}**, p50 {fastest.latency_ms.p50:.3f} ms"  # type: ignore
                         + (f", top-1 {_acc(fastest)}" if fastest.accuracy is not None else "") + ".")
    # without a shipped artifact (one model file benchmarked), the fastest int8 row of each runtime against fp32
    for runtime, where in [] if results.shipped else sorted({(r.runtime, r.where) for r in ok}):
        fp32 = [r for r in ok if r.runtime == runtime and r.where == where and r.precision == "fp32"]
        int8 = [r for r in ok if r.runtime == runtime and r.where == where and r.precision == "int8"]
        if fp32 and int8:
            best = min(int8, key=lambda r: r.latency_ms.p50)  # type: ignore[union-attr]
            speedup = fp32[0].latency_ms.p50 / best.latency_ms.p50  # type: ignore[union-attr]
            drop = ("" if fp32[0].accuracy is None or best.accuracy is None
                    else f", top-1 {(best.accuracy - fp32[0].accuracy) * 100:+.2f} points")
            on = f" on {where}" if best.measured_on == "device" else ""
            lines.append(f"{runtime}:{best.device}{on}: int8 ({best.name}) is {speedup:.2f}x the speed of fp32{drop}.")
    skipped = [r for r in results.rows if r.status != "ok"]
    if skipped:
        lines.append(f"{len(skipped)} row(s) skipped or failed; the reasons are in the table.")
    return lines


def headline_lines(results: BenchResults) -> list[str]:
    """The report's headline as plain text, for the terminal."""
    return [line.replace("**", "") for line in _headline(results)]


def render_markdown(results: BenchResults, scores: Any = None, history: History | None = None,
                    transfer: TransferInfo | None = None) -> str:
    from edgetl.report.transfer import shots_table, transfer_lines

    parts = [f"# edgetl benchmark: {results.backbone or results.source} on {results.target}", "",
             f"Host: {results.host.get('cpu')}; data: {results.dataset or '-'} ({results.eval_split or '-'}); "
             f"created {results.created} by edgetl {results.edgetl_version}.", ""]
    parts += [f"- {line}" for line in [*_headline(results), *transfer_lines(transfer)]] + [""]
    parts += [f"> note: {n}" for n in results.notes] + ([""] if results.notes else [])
    checks = export_checks_table(results)
    estimates = estimate_table(results)
    parts.append(summary_table(results).markdown())
    if results.distillation is not None:
        from edgetl.report.distillation import distillation_markdown

        parts.append(distillation_markdown(results))
    for table in (*([estimates] if estimates else []), *([checks] if checks else []),
                  *per_class_tables(results), *_extra_tables(results, history),
                  *[t for t in (shots_table(transfer),) if t is not None],
                  *accuracy_fallback_tables(accuracy_fallback_reports(results)), host_table(results)):
        parts.append(table.markdown())
    parts.append("Plots: see report.html (self-contained).")
    return "\n".join(parts) + "\n"


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222;
padding:0 1em}h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0 1.5em}th,td{border:1px solid #ddd;padding:4px 8px;
text-align:left}th{background:#f4f6f8}tr:nth-child(even){background:#fafafa}img{max-width:100%;margin:.5em 0}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em .8em;margin:.4em 0}
.headline{font-size:1.05em}.meta{color:#666}
"""


def _extra_tables(results: BenchResults, history: History | None) -> list[Table]:
    """The ranking/calibration table and the training phases (issue 17's report sections)."""
    from edgetl.report.curves import ranking_table
    from edgetl.report.training import training_table

    return [ranking_table(results), *([training_table(history)] if history is not None else [])]


def _curve_sections(results: BenchResults, scores: Any, figure: Any) -> list[str]:
    """ROC, precision-recall and reliability figures of the float and shipped int8 rows, and the ranking table."""
    from edgetl.report.curves import plot_pr, plot_reliability, plot_roc, ranking_table, scored_rows

    scored = scored_rows(results, scores)
    which = " and ".join(f"the {s.role} model ({s.row.name} on {s.row.runtime})" for s in scored)
    return [
        figure("ROC curves (one-vs-rest)", plot_roc(results, scored),
               f"One curve per class: that class against all the others, ranked by its softmax probability, for "
               f"{which}. AUC per class in the legend and the per-class tables; scikit-learn roc_curve."),
        figure("Precision-recall curves (one-vs-rest)", plot_pr(results, scored),
               "The same rankings as precision against recall; the area is the average precision (AP, "
               "scikit-learn average_precision_score), which a rare class's ROC AUC can flatter."),
        figure("Calibration", plot_reliability(scored),
               "How far the top-1 probability is from the accuracy it claims: points on the diagonal are "
               "calibrated; ECE is the sample-weighted mean gap. A quantized model can keep its top-1 and lose "
               "its calibration."),
        ranking_table(results).html(),
    ]


def _training_section(history: History | None, figure: Any) -> list[str]:
    from edgetl.report.training import plot_training, training_table

    if history is None:
        return []
    return [figure("Training curves", plot_training(history),
                   f"Per epoch, from {', '.join(history.sources)}: fine-tuning's head-only and unfrozen phases, "
                   "then the recovery of a pruned model and QAT where the build ran them. Validation figures are "
                   "on the split each stage selected its epoch on."),
            training_table(history).html()]


def render_html(results: BenchResults, scores: Any = None, history: History | None = None,
                transfer: TransferInfo | None = None) -> str:
    from edgetl.report.transfer import plot_shots, shots_table, transfer_lines

    def figure(title: str, png: str | None, caption: str) -> str:
        if png is None:
            return ""
        return (f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{png}'>"
                f"<p class='meta'>{html.escape(caption)}</p>")

    def md_bold(text: str) -> str:
        escaped = html.escape(text)
        while "**" in escaped:
            escaped = escaped.replace("**", "<b>", 1).replace("**", "</b>", 1)
        return escaped

    title = f"edgetl benchmark: {results.backbone or results.source} on {results.target}"
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p class='meta'>Host: {html.escape(str(results.host.get('cpu')))} · data: "
            f"{html.escape(results.dataset or '-')} ({html.escape(results.eval_split or '-')}) · "
            f"{html.escape(results.created)} · edgetl {html.escape(results.edgetl_version)}</p>",
            "<ul class='headline'>" + "".join(f"<li>{md_bold(line)}</li>"
                                              for line in [*_headline(results), *transfer_lines(transfer)]) + "</ul>",
            *[f"<div class='note'>{html.escape(n)}</div>" for n in results.notes]]
    body.append(figure("Accuracy vs latency", plot_tradeoff(results),
                       "Filled markers ran on the target (or on this host where the target is this host); hollow "
                       "markers are host proxies. The orange line joins the rows no other row beats on both axes."))
    body.append(summary_table(results).html())
    estimates = estimate_table(results)
    if estimates:
        body.append(estimates.html())
    checks = export_checks_table(results)
    if checks:
        body.append(checks.html())
    if results.distillation is not None:
        from edgetl.report.distillation import distillation_html

        body.append(distillation_html(results))
    body.append(figure("Latency distribution", plot_latency_distribution(results),
                       "Every timed batch-1 run (up to the kept samples), per row, fastest first."))
    body.append(figure("Confusion matrices", plot_confusions(results),
                       "The fp32 reference beside the most accurate int8 row of the route the bundle ships. Colour: "
                       "share of the true class; "
                       "numbers: images."))
    body += [t.html() for t in per_class_tables(results)]
    body += _curve_sections(results, scores, figure)
    body += _training_section(history, figure)
    shots = shots_table(transfer)
    if shots is not None:
        body.append(figure("Accuracy against labelled images per class", plot_shots(transfer),
                           "The prototype head rebuilt from k training images per class (embeddings computed once, "
                           "k drawn with fixed seeds; grey: each seed), scored on the evaluation split; the band is "
                           "the 95% Wilson interval of the mean on those images."))
        body.append(shots.html())
    body.append(figure("Model size", plot_sizes(results), "Bytes on disk, as shipped in a bundle."))
    fallbacks = accuracy_fallback_reports(results)
    body += [t.html() for t in accuracy_fallback_tables(fallbacks)]
    body.append(figure("Accuracy fallback: step curve", plot_step_curve(fallbacks),
                       "One point per fallback step (its number of float layers on the label): top-1 on the "
                       "validation split against batch-1 latency relative to fp32, measured side by side in "
                       "interleaved rounds. Dashed: the lowest accuracy within the target's budget."))
    body.append(figure("Layer sensitivity", plot_sensitivity(fallbacks), "Measured on the validation split."))
    body.append(host_table(results).html())
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n")


def write_report(results_path: Path, out_dir: Path, run_dir: Path | None = None) -> tuple[Path, Path]:
    """Write ``report.md`` and a self-contained ``report.html`` for a results file; returns both paths.

    ``run_dir``: the run whose training curves to draw (default: the results' ``source`` where it is a directory).
    The ROC, PR and calibration figures need the ``scores.npz`` that ``edgetl bench`` writes beside the results.
    """
    import matplotlib

    from edgetl.bench.results import load_scores
    from edgetl.report.training import load_history
    from edgetl.report.transfer import load_transfer

    matplotlib.use("Agg", force=True)  # files only: no display needed, works in CI
    results = load_results(results_path)
    scores = load_scores(results_path, results)
    run = Path(run_dir) if run_dir is not None else Path(results.source)
    history = load_history(run) if run.is_dir() else None
    transfer = load_transfer(run) if run.is_dir() else None
    out_dir = Path(out_dir)
    md = write_text(out_dir / "report.md", render_markdown(results, scores, history, transfer))
    page = write_text(out_dir / "report.html", render_html(results, scores, history, transfer))
    return md, page


def results_table(results: BenchResults) -> Any:
    """A rich table of the rows, for the terminal."""
    from rich.table import Table as RichTable

    batches = sorted({int(b) for r in results.rows for b in r.throughput})
    table = RichTable(title=f"{results.backbone or results.source} · target {results.target} · "
                            f"{results.host.get('cpu')}", title_style="bold")
    top1 = f"top-1 ({results.eval_split})" if results.eval_split else "top-1"
    for col in ("artifact", "runtime", "prec.", "measured on", "status", top1, "p50 ms", "p90 ms",
                *[f"img/s b{b}" for b in batches], "peak MB", "size MB"):
        table.add_column(col, justify="right" if col not in ("artifact", "runtime", "measured on", "status")
                         else "left")
    for r in results.rows:
        lat = r.latency_ms
        style = {"ok": "", "skipped": "dim", "failed": "red"}[r.status]
        status = "ok" if r.status == "ok" else f"{r.status}: {r.reason}"
        table.add_row(r.name, f"{r.runtime}:{r.device}" + (" proxy" if r.proxy else ""), r.precision, r.where_label,
                      status, _acc(r), _p50_cell(r), _fmt(lat.p90 if lat else None, ".3f"),
                      *[_fmt(r.throughput.get(str(b)), ".0f") for b in batches], _fmt(r.peak_memory_mb, ".1f"),
                      _fmt(r.size_bytes / 1e6 if r.size_bytes else None, ".2f"), style=style)
    return table


# ------------------------------------------------------------------------------------------------- accuracy fallback
def accuracy_fallback_reports(results: BenchResults) -> dict[str, dict[str, Any]]:
    """The quantize stage's accuracy-fallback reports (per int8 model) of the run benchmarked, if it ran one."""
    import json

    metrics = Path(results.source) / "quantize" / "metrics.json"
    try:
        return dict(json.loads(metrics.read_text(encoding="utf-8")).get("fallback") or {})
    except (OSError, ValueError):
        return {}


def accuracy_fallback_tables(reports: dict[str, dict[str, Any]]) -> list[Table]:
    """Per int8 model: the fallback's steps, i.e. the step curve (accuracy on val and batch-1 latency per number of
    float layers), and the sensitivity ranking (accuracy won back by reverting each layer alone, and the logit
    error it removes)."""
    tables = []
    from edgetl.stats import format_interval

    for name, rep in reports.items():
        val_images = rep.get("val_images") or (rep.get("sensitivity") or {}).get("images")
        steps = []
        for i, s in enumerate(rep.get("steps", [])):
            lat = s.get("latency") or {}
            cost = "-" if "vs_int8" not in lat else (
                f"{lat['vs_int8']:.2f} [{lat['vs_int8_range'][0]:.2f}-{lat['vs_int8_range'][1]:.2f}]"
                + (" over the cap" if lat.get("over_cap") else ""))
            vs_fp32 = "-" if "vs_fp32" not in lat else (
                f"{lat['vs_fp32']:.2f} [{lat['vs_fp32_range'][0]:.2f}-{lat['vs_fp32_range'][1]:.2f}]")
            steps.append([str(i), ", ".join(s["float_layers"]) or "none (all int8)", format_interval(s["accuracy"], val_images),
                          f"{s['drop_points']:.2f}", "yes" if s["within_budget"] else "no", cost, vs_fp32])
        lat = next((st["latency"] for st in rep.get("steps", []) if st.get("latency")), None)
        where = "" if lat is None else (f" ({lat['runtime']}, {lat['threads']} thread(s), batch 1, median of "
                                        f"{lat['rounds']} interleaved rounds [range])")
        tables.append(Table(f"Accuracy fallback ({name}): {rep.get('message', '')}",
                            ["step", "float layers", "val top-1", "drop (points)", "within budget",
                             f"p50 vs all-int8{where}", "p50 vs fp32"], steps))
        sens = rep.get("sensitivity", {})
        if not sens.get("layers"):
            continue
        rows = [[r["layer"], r["kind"], "-" if r.get("accuracy_gain") is None else f"{r['accuracy_gain']:+.2f}",
                 "-" if r.get("mse_drop") is None else f"{r['mse_drop']:.4g}",
                 "-" if r.get("screen_mse_drop") is None else f"{r['screen_mse_drop']:.4g}"]
                for r in sens.get("layers", [])[:20]]
        rho = sens.get("proxy_spearman")
        how = (f"screened on {sens.get('screen_images')} val images, the best confirmed on all "
               f"{sens.get('images', '-')}" if sens.get("method") == "screened"
               else f"{sens.get('images', '-')} val images")
        tables.append(Table(f"Layer sensitivity ({name}, {how}, top 20; "
                            f"Spearman(MSE drop, accuracy gain) = {'-' if rho is None else f'{rho:.2f}'})",
                            ["layer", "kind", "accuracy gain (points)", "logit MSE removed",
                             "logit MSE removed (screen)"], rows))
    return tables


def plot_step_curve(reports: dict[str, dict[str, Any]]) -> str | None:
    """The fallback's step curve: val top-1 against batch-1 latency (relative to fp32), one point per step."""
    import matplotlib.pyplot as plt

    curves = {n: [s for s in r.get("steps", []) if "vs_fp32" in (s.get("latency") or {})] for n, r in reports.items()}
    curves = {n: c for n, c in curves.items() if len(c) > 1}
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, steps in curves.items():
        x = [s["latency"]["vs_fp32"] for s in steps]
        y = [100 * s["accuracy"] for s in steps]
        ax.plot(x, y, "o-", label=name)
        for s, xi, yi in zip(steps, x, y, strict=True):
            ax.annotate(str(len(s["float_layers"])), (xi, yi), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
        rep = reports[name]
        ax.axhline(100 * rep["fp32_accuracy"] - rep["max_drop_points"], color="#999", ls="--", lw=1)
    ax.axvline(1.0, color="#d62728", ls=":", lw=1)
    ax.set_xlabel("batch-1 p50 / fp32 p50 (ONNX Runtime; red: as slow as fp32)")
    ax.set_ylabel("val top-1 (%)")
    ax.set_title("Accuracy fallback: accuracy vs latency per number of float layers (labels)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def plot_sensitivity(reports: dict[str, dict[str, Any]]) -> str | None:
    """Accuracy won back by reverting each layer alone, in graph order, per int8 model that was ranked."""
    import matplotlib.pyplot as plt

    ranked = {n: [la for la in r["sensitivity"]["layers"] if la.get("accuracy_gain") is not None]
              for n, r in reports.items() if r.get("sensitivity", {}).get("layers")}
    ranked = {n: layers for n, layers in ranked.items() if layers}
    if not ranked:
        return None
    fig, axes = plt.subplots(len(ranked), 1, figsize=(10, 3 * len(ranked)), squeeze=False)
    for ax, (name, layers) in zip(axes[:, 0], ranked.items(), strict=True):
        ax.bar(range(len(layers)), [r["accuracy_gain"] for r in layers], color="#d62728")
        ax.set_xticks(range(len(layers)), [r["layer"] for r in layers], rotation=90, fontsize=6)
        ax.set_ylabel("points won back")
        ax.set_title(f"{name}: accuracy gained by reverting one layer to float (most sensitive first)")
    fig.tight_layout()
    return _png(fig)
