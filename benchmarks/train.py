"""Fine-tuning recipe benchmark: efficientnet_lite0 on the shared data sets, pretrained vs random init.

Runs ``edgetl.stages.finetune.finetune`` with the default TrainConfig recipe (only the data set, weights and image
size change per row), prints a table (dataset, init, image size, epochs, best val accuracy, wall time) and writes
``benchmarks/results/train.json``; the summary is copied to ``benchmarks/reported/train.json``.

    python benchmarks/train.py                     # every row (about an hour on 2 CPU cores)
    python benchmarks/train.py --only hymenoptera-pretrained
    nohup python benchmarks/train.py --threads 1 --workers 1 > benchmarks/results/train.log 2>&1 &

Rows whose data set is missing (no ../shared) are recorded as skipped with the reason.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EDGETL_SHARED", ROOT.parent / "shared"))
RESULTS = ROOT / "benchmarks" / "results"
REPORTED = ROOT / "benchmarks" / "reported"

# name -> (data set under ../shared/datasets, weights, image size, train overrides of the default recipe).
# flowers5 images are 128 px, so 160 px (not the target's 224) already holds all their detail at half the cost.
ROWS: dict[str, tuple[str, str, int, dict]] = {
    "hymenoptera-pretrained": ("hymenoptera", "default", 224, {}),
    "flowers5-pretrained": ("flowers5", "default", 160, {}),
    "hymenoptera-random-init": ("hymenoptera", "none", 224, {}),
    # not the default: 5x the fine-tuning learning rates, in fewer epochs (does the LR limit flowers5?)
    "flowers5-pretrained-lr5x": ("flowers5", "default", 160, {"lr": 5e-3, "backbone_lr": 1e-3, "epochs": 6}),
    # flowers5's images are heavily blurred (upsampled from far lower resolutions): ImageNet features separate them
    # poorly (a logistic-regression probe on frozen lite0 features: 72-77 % val at 96-224 px), so the backbone has
    # to move much further than on hymenoptera: higher backbone rate, more epochs.
    "flowers5-pretrained-long": ("flowers5", "default", 160,
                                 {"head_epochs": 1, "epochs": 15, "lr": 5e-3, "backbone_lr": 1e-3, "patience": 5}),
    # the long recipe at the backbone's native 224 px (a frozen-feature probe: 73 % at 128 px, 77 % at 224 and
    # 320 px), with a weight EMA over 1.5 epochs and bfloat16 autocast (AMX CPUs) to pay for the resolution
    # (these two rows ran when bfloat16 was on by default on such CPUs; it is opt-in now, so it is stated here)
    "flowers5-pretrained-224-ema": ("flowers5", "default", 224,
                                    {"head_epochs": 1, "epochs": 18, "lr": 5e-3, "backbone_lr": 1e-3, "patience": 5,
                                     "ema_epochs": 1.5, "cpu_bf16": True}),
    # the same with MixUp/CutMix against the overfitting (train 93 % vs val 82 % without them)
    "flowers5-pretrained-224-ema-mix": ("flowers5", "default", 224,
                                        {"head_epochs": 1, "epochs": 18, "lr": 5e-3, "backbone_lr": 1e-3,
                                         "patience": 5, "ema_epochs": 1.5, "mixup_alpha": 0.2, "cutmix_alpha": 1.0,
                                         "cpu_bf16": True}),
}


def run_row(name: str, dataset: str, weights: str, image_size: int, overrides: dict, workers: int | None,
            threads: int | None) -> dict:
    from edgetl.config import BuildConfig
    from edgetl.fsutil import read_json
    from edgetl.stages.finetune import finetune
    from edgetl.targets import load_target

    data = SHARED / "datasets" / dataset
    row = {"name": name, "dataset": dataset, "init": "imagenet" if weights == "default" else "random",
           "image_size": image_size, "overrides": overrides}
    if not data.is_dir():
        return {**row, "status": "skipped", "reason": f"{data} not found"}
    cfg = BuildConfig().with_overrides({
        "data.path": str(data), "data.num_workers": workers,
        "train.backbone": "efficientnet_lite0", "train.weights": weights, "train.image_size": image_size,
        # the recipe its reported figures were measured with (train.strategy's default was warmup_finetune then)
        "train.threads": threads, "train.strategy": "warmup_finetune", **{f"train.{k}": v for k, v in overrides.items()},
    })
    start = time.perf_counter()
    result = finetune(cfg, load_target("cpu"), RESULTS / "train" / name / "train")
    history = read_json(result.out_dir / "metrics.json")["epochs"]
    return {
        **row, "status": "ok", "recipe": cfg.train.model_dump(mode="json"),
        "threads": threads, "workers": workers, "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
        "best_val_accuracy": result.best_val_accuracy, "stopped_early": result.stopped_early,
        "wall_time_s": round(time.perf_counter() - start, 1),
        "val_accuracy_per_epoch": [round(h["val_accuracy"], 4) for h in history],
    }


def main() -> None:
    import faulthandler

    faulthandler.enable()  # a crash in a native library prints the Python stack instead of vanishing
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=sorted(ROWS), help="run only this row (repeatable)")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: min(4, cpus))")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: one per core); 1 on a machine shared with other jobs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import torch

    from edgetl.fsutil import read_json, write_json
    from edgetl.manifest import library_versions

    out_json = RESULTS / "train.json"
    previous = {r["name"]: r for r in read_json(out_json)["rows"]} if out_json.is_file() else {}
    rows = dict(previous)
    for name in args.only or list(ROWS):
        rows[name] = run_row(name, *ROWS[name], args.workers, args.threads)
        summary = {
            "benchmark": "train",
            "host": {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
                     "torch_threads": torch.get_num_threads(), "device": "cpu"},
            "versions": library_versions(),
            "note": "2 CPU cores shared with other jobs: wall times are upper bounds",
            "rows": [rows[n] for n in ROWS if n in rows],
        }
        write_json(out_json, summary)  # after every row, so an interrupted run keeps what it measured

    from rich.console import Console
    from rich.table import Table

    table = Table(title="edgetl train: efficientnet_lite0 on CPU (recipe: default unless stated)")
    for col in ("dataset", "init", "recipe", "image size", "epochs (best)", "best val acc", "wall time"):
        table.add_column(col)
    for r in summary["rows"]:
        if r["status"] not in ("ok", "stopped"):  # "stopped": interrupted by hand, figures up to that epoch
            table.add_row(r["dataset"], r["init"], "-", str(r["image_size"]), "-", f"skipped: {r['reason']}", "-")
            continue
        recipe = ", ".join(f"{k}={v}" for k, v in r.get("overrides", {}).items()) or "default"
        table.add_row(r["dataset"], r["init"], recipe, f"{r['image_size']} px", f"{r['epochs_run']} ({r['best_epoch']})",
                      f"{100 * r['best_val_accuracy']:.2f}%" + (" (stopped)" if r["status"] == "stopped" else ""),
                      f"{r['wall_time_s'] / 60:.1f} min")
    Console(width=120).print(table)
    REPORTED.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out_json, REPORTED / "train.json")
    print(f"results: {out_json} (copied to {REPORTED / 'train.json'})")


if __name__ == "__main__":
    main()
