"""Issue 18's few-shot figures: the prototype head against fine-tuning with 1, 5 and 10 labelled images per class.

    python benchmarks/few_shot.py                      # hymenoptera, shots 1 5 10, seeds 0 1 2
    python benchmarks/few_shot.py --shots 1 5 --seeds 0

For each (shots, seed) a training set of that many images per class is drawn (seeded) from the data set's train
split and linked into a temporary ImageFolder beside the full val split; `edgetl.stages.finetune` then runs twice
on it with the same config except ``train.head``: "linear" (the warm-up recipe, the default when measured: head warm-up, then fine-tuning, best
epoch kept on val) and "prototype" (class-mean embeddings, no gradient step). The data set's val split is halved
per class into val (selection) and test, and accuracy is on test with its 95 % Wilson interval, so fine-tuning's
epoch selection does not inflate its figure.
Prints a table and writes benchmarks/results/few_shot.json (+ a copy in benchmarks/reported/).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS, REPORTED = ROOT / "benchmarks" / "results", ROOT / "benchmarks" / "reported"


def subset(data: Path, out: Path, shots: int, seed: int) -> Path:
    """``shots`` training images per class (seeded); the data set's val split halved per class (fixed seed 0)
    into val, what fine-tuning selects its epoch on, and test, what both heads are scored on."""
    rng = random.Random(seed)
    for cls in sorted(p for p in (data / "train").iterdir() if p.is_dir()):
        files = sorted(f for f in cls.iterdir() if f.is_file())
        (out / "train" / cls.name).mkdir(parents=True)
        for f in rng.sample(files, shots):
            (out / "train" / cls.name / f.name).symlink_to(f)
    for cls in sorted(p for p in (data / "val").iterdir() if p.is_dir()):
        files = sorted(f for f in cls.iterdir() if f.is_file())
        random.Random(0).shuffle(files)
        for split, part in (("val", files[: len(files) // 2]), ("test", files[len(files) // 2 :])):
            (out / split / cls.name).mkdir(parents=True)
            for f in part:
                (out / split / cls.name / f.name).symlink_to(f)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "hymenoptera")
    ap.add_argument("--shots", type=int, nargs="+", default=[1, 5, 10])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if not (args.data / "train").is_dir():
        print(f"no data set at {args.data} (needs ../shared)", file=sys.stderr)
        return 2

    import logging

    from edgetl.config import BuildConfig
    from edgetl.stages.finetune import finetune
    from edgetl.stats import accuracy_interval
    from edgetl.targets import load_target

    logging.basicConfig(level=logging.WARNING)
    target = load_target("cpu")
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgetl-few-shot-") as tmp:
        for shots in args.shots:
            for seed in args.seeds:
                data = subset(args.data, Path(tmp) / f"s{shots}-{seed}", shots, seed)
                for head in ("prototype", "linear"):
                    cfg = BuildConfig.model_validate({
                        "data": {"path": str(data), "num_workers": 0},
                        # the warm-up recipe the reported linear rows were measured with (the default then)
                        "train": {"head": head, "seed": seed, "threads": args.threads, "strategy": "warmup_finetune",
                                  "batch_size": min(32, 2 * shots)}})
                    started = time.perf_counter()
                    result = finetune(cfg, target, Path(tmp) / f"run-{shots}-{seed}-{head}")
                    n = sum(1 for f in (data / "test").rglob("*") if f.is_file())
                    lo, hi = accuracy_interval(result.eval_accuracy, n)
                    assert result.eval_split == "test"
                    rows.append({"shots": shots, "seed": seed, "head": head, "accuracy": result.eval_accuracy,
                                 "ci95": [lo, hi], "eval_images": n, "epochs_run": result.epochs_run,
                                 "wall_s": round(time.perf_counter() - started, 1)})
                    r = rows[-1]
                    print(f"shots {shots:2d} seed {seed} {head:9s} test {100 * r['accuracy']:6.2f}% "
                          f"(95% {100 * lo:.1f}-{100 * hi:.1f}) epochs {r['epochs_run']:2d} {r['wall_s']:6.1f}s",
                          flush=True)
    summary = []
    print("\n| shots | prototype (median of seeds) | fine-tuning (median) | prototype wins |")
    print("| --- | --- | --- | --- |")
    for shots in args.shots:
        proto = [r["accuracy"] for r in rows if r["shots"] == shots and r["head"] == "prototype"]
        lin = [r["accuracy"] for r in rows if r["shots"] == shots and r["head"] == "linear"]
        wins = sum(p > q for p, q in zip(proto, lin, strict=True))
        summary.append({"shots": shots, "prototype": proto, "linear": lin,
                        "prototype_median": statistics.median(proto), "linear_median": statistics.median(lin),
                        "prototype_wins": wins, "seeds": len(proto)})
        print(f"| {shots} | {100 * statistics.median(proto):.2f}% ({100 * min(proto):.1f}-{100 * max(proto):.1f}) | "
              f"{100 * statistics.median(lin):.2f}% ({100 * min(lin):.1f}-{100 * max(lin):.1f}) | {wins}/{len(proto)} |")
    out = {"command": " ".join(["python", "benchmarks/few_shot.py", *sys.argv[1:]]), "data": str(args.data),
           "backbone": "efficientnet_lite0", "rows": rows, "summary": summary}
    RESULTS.mkdir(parents=True, exist_ok=True)
    for folder in (RESULTS, REPORTED):
        (folder / "few_shot.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
