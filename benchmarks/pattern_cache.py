"""What the PT2E pattern-graph cache (``edgetl.quant.pt2e.install_pattern_cache``) saves the quantize stage.

One fine-tuned model (the tiny backbone on a colour ImageFolder, as the tests make it; or ``--run RUN_DIR``, a
build's ``train/``), then rounds of the whole quantize stage (PTQ + QAT with its judged epochs) alternating cache
off / on (A B A B ...), each in a fresh process so neither inherits the other's traced graphs. Per process: the
stage's wall time, and the time spent in ``convert_pt2e`` and ``prepare_qat_pt2e``. The int8 accuracies of both
must be identical (the cache changes no graph). Prints a table, writes ``benchmarks/reported/pattern_cache.json``.

    python benchmarks/pattern_cache.py --rounds 2
    python benchmarks/pattern_cache.py --run runs/demo --config edgetl/configs/demo.yaml --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REPORTED = ROOT / "benchmarks" / "reported" / "pattern_cache.json"

CHILD = r"""
import functools, json, shutil, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
cache, run, config, out = {cache!r}, Path({run!r}), {config!r}, Path({out!r})
import torchao.quantization.pt2e.quantize_pt2e as qp
import edgetl.stages.quantize as stage
from edgetl.quant import pt2e
if not cache:
    pt2e.install_pattern_cache = lambda: False
spent = {{"convert_pt2e": 0.0, "prepare_qat_pt2e": 0.0}}
def timed(name, fn):
    @functools.wraps(fn)
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            spent[name] += time.perf_counter() - t
    return wrapper
for name in spent:
    setattr(qp, name, timed(name, getattr(qp, name)))
from edgetl.config import load_build_config
from edgetl.targets import load_target
if config:
    cfg = load_build_config(config)
else:
    from tests.quant.builders import fast_config
    cfg = fast_config()
target = load_target(cfg.target)
shutil.rmtree(out, ignore_errors=True)
t = time.perf_counter()
result = stage.quantize(cfg, target, run / "train", out)
print("RESULT " + json.dumps({{"cache": cache, "stage_s": time.perf_counter() - t, "accuracy": result.accuracy,
                               **{{k + "_s": v for k, v in spent.items()}}}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a build directory whose train/ to quantize (default: a tiny one)")
    parser.add_argument("--config", type=Path, help="that build's config")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from edgetl.fsutil import write_json
    from edgetl.host import host_facts

    with tempfile.TemporaryDirectory(prefix="edgetl-pattern-cache-") as tmp:
        run = args.run
        if run is None:
            sys.path.insert(0, str(ROOT))
            from tests.quant.builders import make_train_dir

            run = Path(tmp) / "run"
            make_train_dir(run)
        rows: list[dict[str, Any]] = []
        for r in range(args.rounds):
            for cache in (False, True):
                code = CHILD.format(root=str(ROOT), cache=cache, run=str(run.resolve()),
                                    config=str(args.config.resolve()) if args.config else None,
                                    out=str(Path(tmp) / f"quantize-{r}-{cache}"))
                proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                      env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp)
                line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
                if proc.returncode or line is None:
                    raise SystemExit(f"round {r} cache={cache} failed:\n{proc.stderr[-3000:]}")
                row = {"round": r, **json.loads(line[7:])}
                rows.append(row)
                print(f"round {r} cache {'on ' if cache else 'off'}: stage {row['stage_s']:.1f}s, convert_pt2e "
                      f"{row['convert_pt2e_s']:.1f}s, prepare_qat_pt2e {row['prepare_qat_pt2e_s']:.1f}s", flush=True)
    off = [r for r in rows if not r["cache"]]
    on = [r for r in rows if r["cache"]]
    ratios = [b["stage_s"] / a["stage_s"] for a, b in zip(off, on, strict=True)]
    same = all(a["accuracy"] == b["accuracy"] for a, b in zip(off, on, strict=True))
    print(f"\n{'':22} {'cache off':>10} {'cache on':>10}")
    for key in ("stage_s", "convert_pt2e_s", "prepare_qat_pt2e_s"):
        print(f"{key:22} {statistics.median(r[key] for r in off):>9.1f}s {statistics.median(r[key] for r in on):>9.1f}s")
    print(f"stage on/off ratio: median {statistics.median(ratios):.3f} (rounds {min(ratios):.3f}-{max(ratios):.3f}); "
          f"identical accuracies: {same}")
    write_json(REPORTED, {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": host_facts(),
                          "command": "python " + " ".join([os.path.relpath(__file__, ROOT), *sys.argv[1:]]),
                          "model": str(args.run) if args.run else "tiny (tests/quant/builders.py)",
                          "rows": rows, "stage_ratio_median": statistics.median(ratios),
                          "stage_ratio_range": [min(ratios), max(ratios)], "identical_accuracies": same})
    print(f"wrote {REPORTED}")


if __name__ == "__main__":
    main()
