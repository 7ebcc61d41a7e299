"""What distillation buys, measured by the build itself: a teacher run, then ``edgetl build --teacher`` whose
student_alone stage trains the same student without it; the figures are results.json's ``distillation``.

    python benchmarks/distill_gain.py --image-size 96 --teacher-epochs 4 --no-hflip --threads 1
    python benchmarks/distill_gain.py --data ../shared/datasets/hymenoptera --image-size 128 --threads 1

Teacher: ``--teacher-backbone`` fine-tuned with the default recipe for ``--teacher-epochs``. Student: the
``--student-backbone`` for ``--student-epochs`` (a short recipe), distilled (T 4, alpha 0.5: the defaults) and alone,
same split, seed and recipe. The build targets an fp32-only ONNX Runtime profile (no quantize stage: the comparison
is of float models) and benchmarks with few iterations. Every accuracy is torch fp32 top-1 on the student's
evaluation split (digits: the held-out test split edgetl makes), with its Wilson 95 % interval; the gain is paired
(same images), and McNemar's exact test needs per-image predictions the train stage does not keep, so the intervals
are what says whether a gain is noise.

Prints one table and writes benchmarks/results/distill_gain.json (+ a copy in benchmarks/reported/).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS, REPORTED = ROOT / "benchmarks" / "results", ROOT / "benchmarks" / "reported"

FP32_TARGET = """name: cpu-fp32
extends: cpu
runtimes:
  - {runtime: onnxruntime, device: cpu, precisions: [fp32]}
export: {formats: [onnx], opset: 20}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--teacher-backbone", default="efficientnet_lite1")
    parser.add_argument("--student-backbone", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--student-epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-hflip", action="store_true", help="no mirroring (digits: a mirrored digit is another)")
    parser.add_argument("--work", default=str(RESULTS / "distill_gain_runs"))
    args = parser.parse_args()

    from edgetl.bench.results import load_results
    from edgetl.config import BuildConfig
    from edgetl.pipeline import build
    from edgetl.stages.finetune import finetune
    from edgetl.stats import format_interval
    from edgetl.targets import load_target

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "cpu-fp32.yaml").write_text(FP32_TARGET)
    target = load_target(str(work / "cpu-fp32.yaml"))
    common = {"data.path": args.data, "data.num_workers": 0, "train.image_size": args.image_size,
              "train.threads": args.threads, "train.hflip": not args.no_hflip, "bench.min_iterations": 5, "bench.min_time_s": 0.0,
              "bench.warmup": 1, "bench.batch_sizes": [1], "bench.threads": args.threads}
    start = time.perf_counter()
    teacher_cfg = BuildConfig().with_overrides({**common, "out": str(work / "teacher"),
                                                "train.backbone": args.teacher_backbone,
                                                "train.epochs": args.teacher_epochs})
    finetune(teacher_cfg, target, work / "teacher" / "train")
    teacher_s = time.perf_counter() - start
    cfg = BuildConfig().with_overrides({**common, "out": str(work / "student"), "train.backbone": args.student_backbone,
                                        "train.epochs": args.student_epochs, "train.teacher": str(work / "teacher"),
                                        "budget_check": False})
    outcome = build(cfg, target)
    d = load_results(outcome.results_path).distillation  # type: ignore[arg-type]
    assert d is not None and d.student_alone is not None, "the build wrote no comparison"

    rows = [("teacher", d.teacher), ("distilled student", d.distilled), ("student alone", d.student_alone)]
    print(f"\ntorch fp32 top-1 on {args.data} {d.eval_split} ({d.eval_images} images), {args.image_size} px")
    print(f"{'model':<18} {'backbone':<20} {'top-1 (95% CI)':<32} {'train s':>8}")
    for role, m in rows:
        wall = "-" if m.wall_time_s is None else f"{m.wall_time_s:.0f}"
        print(f"{role:<18} {m.backbone or '-':<20} {format_interval(m.accuracy, m.eval_images):<32} {wall:>8}")
    print(f"gain of distillation: {d.gain_points:+.2f} points; teacher trained on {d.teacher_trained_on_eval} of "
          f"the {d.eval_split} images")

    record = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "data": args.data, "image_size": args.image_size, "teacher_epochs": args.teacher_epochs,
        "student_epochs": args.student_epochs, "threads": args.threads, "hflip": not args.no_hflip,
        "teacher_backbone": args.teacher_backbone, "student_backbone": args.student_backbone,
        "teacher_wall_s": round(teacher_s, 1), "build_wall_s": round(sum(s.seconds for s in outcome.stages), 1),
        "stages": [{"name": s.name, "status": s.status, "seconds": round(s.seconds, 1)} for s in outcome.stages],
        "distillation": d.model_dump(mode="json"),
    }
    for folder in (RESULTS, REPORTED):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "distill_gain.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
