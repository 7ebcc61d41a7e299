"""The regression gate on a busy machine: unchanged reruns never regress, a planted 2x slowdown does.

On one built run directory (``make demo`` writes runs/demo), with a competing CPU load running the whole time:

1. ``edgetl bench RUN`` once: the baseline.
2. ``edgetl bench RUN --baseline BASE`` again ``--reruns`` times on the same, unchanged build: the gate must
   never exit 1 (0 pass, or 4 inconclusive when the noise is larger than the threshold).
3. The same command with a planted 2x slowdown: every ``session.run`` call of every runtime runs the model twice
   (the latency ``edgetl bench`` times is then two real inferences, the CPU kept as busy as a truly slower model
   would keep it, unlike a sleep). The gate must exit 1, calling the rows regressed.

The competing load (``--load``): ``busy`` (default) is one process spinning a pure-Python loop pinned to one core;
``none`` adds nothing. Whatever else runs on the machine is recorded as the load average at each step. Every
bench runs through the real CLI in a child process (``--no-accuracy``: latency is what the gate judges here).

    python benchmarks/gate_noise.py [--run runs/demo] [--reruns 2] [--load busy|none] [--threshold 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _latency_models import RESULTS, write  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# run in the child instead of `edgetl ...` for the planted slowdown: every adapter's sessions run the model twice
PLANT = """
import sys
from edgetl.runtimes import RUNTIMES

def doubled(load):
    def wrapper(*args, **kwargs):
        session = load(*args, **kwargs)
        once = session.run
        session.run = lambda inputs: (once(inputs), once(inputs))[1]
        return session
    return wrapper

for name in RUNTIMES.names():
    adapter = RUNTIMES.get(name)
    adapter.load = doubled(adapter.load)
from edgetl.cli import main
sys.argv = ["edgetl", *sys.argv[1:]]
main()
"""


SPIN = "import os\nif hasattr(os, 'sched_setaffinity'): os.sched_setaffinity(0, {0})\nwhile True: pass"


def bench(run: Path, out: Path, baseline: Path | None, threshold: float, planted: bool = False) -> dict:
    args = [str(run), "--out", str(out), "--no-accuracy", "--no-report", "--max-latency-regression", f"{threshold}%"]
    if baseline is not None:
        args += ["--baseline", str(baseline)]
    cmd = [sys.executable, "-c", PLANT, "bench", *args] if planted else [sys.executable, "-m", "edgetl.cli", "bench",
                                                                          *args]
    load_before = os.getloadavg()[0]
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env={**os.environ, "COLUMNS": "200"})
    wall = time.monotonic() - t0
    step = {"planted_2x": planted, "exit_code": done.returncode, "wall_s": round(wall, 1),
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    if done.returncode not in (0, 1, 4):
        raise SystemExit(f"edgetl bench exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    results = json.loads((out / "results.json").read_text())
    step["noise_pct"] = {r["name"] + "@" + r["runtime"]: _noise(r) for r in results["rows"] if r.get("latency_rounds")}
    gate = out / "gate.md"
    if baseline is not None and gate.is_file():
        step["rows"] = _gate_rows(gate.read_text())
        step["verdict"] = {0: "pass", 1: "regression", 4: "inconclusive"}[done.returncode]
    return step


def _noise(row: dict) -> float:
    r = row["latency_rounds"]
    return round((r["high"] - r["low"]) / (2 * r["p50"]) * 100, 2) if r["p50"] else 0.0


def _gate_rows(markdown: str) -> list[dict]:
    """The rows of gate.md's table: label, status icon, p50 change and noise."""
    status = {"✅": "pass", "❌": "regressed", "❔": "inconclusive", "🆕": "new"}
    rows = []
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 10 and cells[0] in status:
            rows.append({"row": cells[1], "status": status[cells[0]], "p50_base_ms": cells[2], "p50_now_ms": cells[3],
                         "change": cells[4], "noise": cells[5], "why": cells[9]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/demo", help="a built run directory (make demo)")
    parser.add_argument("--reruns", type=int, default=2)
    parser.add_argument("--load", choices=("busy", "none"), default="busy")
    parser.add_argument("--threshold", type=float, default=10.0, help="--max-latency-regression, percent")
    args = parser.parse_args()
    run = Path(args.run).resolve()
    if not (run / "export" / "manifest.json").is_file():
        raise SystemExit(f"{run} is not a built run directory (run `make demo` first, or pass --run)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gate-noise-", dir=RESULTS))
    spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if args.load == "busy" else None
    steps: list[dict] = []
    try:
        base = work / "base"
        steps.append({"step": "baseline", **bench(run, base, None, args.threshold)})
        print(f"baseline: exit {steps[-1]['exit_code']}, {steps[-1]['wall_s']} s", flush=True)
        for i in range(args.reruns):
            steps.append({"step": f"unchanged rerun {i + 1}",
                          **bench(run, work / f"rerun{i}", base / "results.json", args.threshold)})
            print(f"unchanged rerun {i + 1}: exit {steps[-1]['exit_code']} ({steps[-1]['verdict']})", flush=True)
        steps.append({"step": "planted 2x slowdown",
                      **bench(run, work / "planted", base / "results.json", args.threshold, planted=True)})
        print(f"planted 2x: exit {steps[-1]['exit_code']} ({steps[-1]['verdict']})", flush=True)
    finally:
        if spinner is not None:
            spinner.terminate()
            spinner.wait()

    print(f"\n{'step':<22} {'exit':>4} {'verdict':<13} {'pass':>4} {'regr.':>5} {'incon.':>6} "
          f"{'median row noise ±%':>19} {'load avg':>12} {'wall s':>7}")
    for s in steps:
        rows = s.get("rows", [])
        count = {k: sum(r["status"] == k for r in rows) for k in ("pass", "regressed", "inconclusive")}
        noise = sorted(s["noise_pct"].values())
        median_noise = noise[len(noise) // 2] if noise else None
        print(f"{s['step']:<22} {s['exit_code']:>4} {s.get('verdict', '-'):<13} {count['pass']:>4} "
              f"{count['regressed']:>5} {count['inconclusive']:>6} "
              f"{'-' if median_noise is None else f'{median_noise:.1f}':>19} "
              f"{s['load_average_1min'][0]:>5}-{s['load_average_1min'][1]:<6} {s['wall_s']:>7}")
    unchanged = [s for s in steps if s["step"].startswith("unchanged")]
    planted = [s for s in steps if s["planted_2x"]]
    ok = all(s["exit_code"] != 1 for s in unchanged) and all(s["exit_code"] == 1 for s in planted)
    print(f"\nunchanged reruns never a regression and the planted 2x slowdown a regression: {'yes' if ok else 'NO'}")
    settings = {"run": str(run), "reruns": args.reruns, "threshold_pct": args.threshold,
                "load": "one pure-Python busy loop pinned to core 0, for the whole script" if args.load == "busy"
                else "none added", "cores": os.cpu_count(),
                "planted": "every session.run call runs the model twice (all runtimes), via a wrapper of the "
                           "runtime adapters' load in the bench child process",
                "bench": "edgetl bench RUN --no-accuracy --no-report (target cpu defaults: 5 interleaved rounds)"}
    summary = {"settings": settings, "steps": steps, "unchanged_never_regressed_and_planted_caught": ok}
    write("gate_noise", summary, summary)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
