"""Fine-tuning recipe sweep: many TrainConfig variants of one data set side by side, several at a time.

Each variant runs ``edgetl.stages.finetune.finetune`` in its own process (the default recipe plus the variant's
``train.*`` overrides); ``--parallel`` of them share the machine. Meant for a GPU host, where one lite0 run at
224 px takes minutes and a dozen fit on one card; on 2 CPU cores run one variant at a time (or use
``benchmarks/train.py``, whose rows are the recipes that earned a place). Prints a table and writes
``OUT/sweep.json`` with every variant's per-epoch validation accuracy. The two flowers5 grids ran on a lent H100
(2026-11-24, 6 variants at a time, 10-minute calls); ``benchmarks/reported/recipe_sweep.json`` holds what they
measured, including the variants the call's limit stopped, with their figures up to the last finished epoch.

    python benchmarks/recipe_sweep.py --data ../shared/datasets/flowers5 --grid flowers5 --parallel 6
    python benchmarks/recipe_sweep.py --data ../shared/datasets/flowers5 --grid flowers5-more --parallel 6
    python benchmarks/recipe_sweep.py --data ../shared/datasets/flowers5 --grid flowers5-seeds --parallel 6
    python benchmarks/recipe_sweep.py --data ../shared/datasets/hymenoptera --grid hymenoptera --device cpu
    python benchmarks/recipe_sweep.py --data DIR --variants my_grid.json      # {"name": {"epochs": 30, ...}}

The grids are starting points, not tuned results; the winners are re-run on the CPU by ``benchmarks/train.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The long flowers5 recipe of benchmarks/train.py at 224 px with weight EMA, and what it leaves to try:
# policy augmentation, erasing, MixUp/CutMix, resolution, rates and length.
_BASE = {"image_size": 224, "head_epochs": 1, "epochs": 18, "lr": 5e-3, "backbone_lr": 1e-3, "patience": 5,
         "ema_epochs": 1.5}
_LONG = {**_BASE, "epochs": 40, "patience": 12}
GRIDS: dict[str, dict[str, dict]] = {
    "flowers5": {
        "base-224-ema": _BASE,
        "long-trivial": {**_LONG, "auto_augment": "trivial"},
        "long-trivial-mix": {**_LONG, "auto_augment": "trivial", "mixup_alpha": 0.2, "cutmix_alpha": 1.0},
        "long-trivial-288": {**_LONG, "auto_augment": "trivial", "image_size": 288},
        "long-trivial-bblr3e-3": {**_LONG, "auto_augment": "trivial", "backbone_lr": 3e-3},
        "long-trivial-erase-crop08": {**_LONG, "auto_augment": "trivial", "random_erasing": 0.25,
                                      "min_crop_scale": 0.08},
    },
    # flowers5's base recipe against the default on an ImageNet-like set (is it a better default? measured: no)
    "hymenoptera": {
        "default-224": {"image_size": 224},
        "default-224-ema": {"image_size": 224, "ema_epochs": 1.5},
        "base-224-ema": _BASE,
    },
    # the same recipe on other splits and seeds: how much of a difference between variants is noise
    "flowers5-seeds": {f"base-split{sp}-seed{sd}": {**_BASE, "data.split_seed": sp, "seed": sd}
                       for sp, sd in ((1, 0), (2, 0), (3, 0), (0, 1), (0, 2), (0, 0))},
    # the second round: rates, batch size, partial unfreezing, stronger decay, warm-up length, resolution
    "flowers5-more": {
        "low-lr": {**_BASE, "lr": 2e-3, "backbone_lr": 3e-4},
        "batch16": {**_BASE, "batch_size": 16},
        "unfreeze-3": {**_BASE, "unfreeze": 3},
        "strongreg-wd05": {**_BASE, "auto_augment": "trivial", "random_erasing": 0.25, "min_crop_scale": 0.08,
                           "weight_decay": 0.05},
        "head5-ls0": {**_BASE, "head_epochs": 5, "label_smoothing": 0.0},
        "res160-long": {**_BASE, "image_size": 160, "epochs": 30, "patience": 8, "auto_augment": "trivial",
                        "random_erasing": 0.25, "min_crop_scale": 0.08},
    },
}


def _run_variant(name: str, overrides: dict, data: str, out: str, workers: int, device: str) -> dict:
    import logging

    logging.basicConfig(level=logging.WARNING)
    from edgetl.config import BuildConfig
    from edgetl.fsutil import read_json
    from edgetl.stages.finetune import finetune
    from edgetl.targets import load_target

    cfg = BuildConfig().with_overrides({
        # the recipe its reported figures were measured with (train.strategy's default was warmup_finetune then)
        "data.path": data, "data.num_workers": workers, "train.device": device, "train.strategy": "warmup_finetune",
        **{k if "." in k else f"train.{k}": v for k, v in overrides.items()},  # "data.split_seed" etc. as given
    })
    start = time.perf_counter()
    try:
        result = finetune(cfg, load_target("cpu"), Path(out) / name / "train")
    except Exception as exc:  # one broken variant must not lose the others' results
        return {"name": name, "overrides": overrides, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    history = read_json(result.out_dir / "metrics.json")["epochs"]
    return {
        "name": name, "overrides": overrides, "status": "ok", "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch, "best_val_accuracy": result.best_val_accuracy,
        "wall_time_s": round(time.perf_counter() - start, 1),
        "val_accuracy_per_epoch": [round(h["val_accuracy"], 4) for h in history],
        "train_accuracy_per_epoch": [round(h["train_accuracy"], 4) for h in history],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="ImageFolder root (or a built-in data set name)")
    parser.add_argument("--grid", choices=sorted(GRIDS), help="a built-in grid of variants")
    parser.add_argument("--variants", type=Path,
                        help='JSON file: {name: {train overrides}}; dotted keys ("data.split_seed") name any section')
    parser.add_argument("--only", action="append", help="run only this variant (repeatable)")
    parser.add_argument("--parallel", type=int, default=1, help="variants run at once")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers per variant")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sweep")
    args = parser.parse_args()
    if not (args.grid or args.variants):
        parser.error("give --grid or --variants")
    variants = dict(GRIDS[args.grid]) if args.grid else {}
    if args.variants:
        variants.update(json.loads(args.variants.read_text()))
    if args.only:
        variants = {k: v for k, v in variants.items() if k in args.only}

    import multiprocessing as mp

    import torch

    from edgetl.fsutil import write_json
    from edgetl.manifest import library_versions

    rows: dict[str, dict] = {}
    out_json = args.out / "sweep.json"
    ctx = mp.get_context("spawn")  # CUDA cannot be used in forked children
    with ProcessPoolExecutor(max_workers=args.parallel, mp_context=ctx) as pool:
        futures = {pool.submit(_run_variant, name, ov, str(args.data), str(args.out), args.workers, args.device): name
                   for name, ov in variants.items()}
        for fut in as_completed(futures):
            row = fut.result()
            rows[row["name"]] = row
            status = (f"{100 * row['best_val_accuracy']:.2f}% (epoch {row['best_epoch']}, {row['wall_time_s']:.0f} s)"
                      if row["status"] == "ok" else row["error"])
            print(f"[done] {row['name']}: {status}", flush=True)
            write_json(out_json, {
                "benchmark": "recipe_sweep", "data": str(args.data), "parallel": args.parallel,
                "host": {"cpus": os.cpu_count(),
                         "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
                "versions": library_versions(), "rows": [rows[n] for n in variants if n in rows],
            })
    print(f"\n{'variant':32} {'best val':>9} {'epoch':>6} {'run':>5} {'wall':>7}")
    for name in variants:
        r = rows[name]
        if r["status"] != "ok":
            print(f"{name:32} failed: {r['error'][:80]}")
            continue
        print(f"{name:32} {100 * r['best_val_accuracy']:8.2f}% {r['best_epoch']:6d} {r['epochs_run']:5d} "
              f"{r['wall_time_s']:6.0f}s")
    print(f"results: {out_json}")


if __name__ == "__main__":
    main()
