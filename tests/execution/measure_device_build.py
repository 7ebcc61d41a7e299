"""``edgetl build --target raspberry-pi-5 --device ssh://edgetl-device@127.0.0.1:PORT`` against the loopback sshd of
conftest.py, then ``edgetl bench --device`` again for more rounds; prints the device/host p50 ratio per artifact.

    PYTHONPATH=$PWD /work/main/.venv/bin/python tests/execution/measure_device_build.py \\
        --config edgetl/configs/demo.yaml --set train.epochs=1 --set quantize.qat=false --out runs/device-demo

Root only (it starts the test sshd). Through loopback the "device" is this host, so each device row and the host
proxy row of the same artifact (same runtime, threads and timing rules) should agree within run-to-run noise. Each
round measures the device rows first, then the host rows; rounds follow one another.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import yaml
from click.testing import CliRunner

from edgetl.cli import cli
from tests.execution.conftest import loopback_server


def ratios(results: Path) -> dict[str, float]:
    rows = json.loads(results.read_text())["rows"]
    out = {}
    for d in rows:
        if d["measured_on"] != "device" or d["status"] != "ok":
            continue
        h = next(r for r in rows if r["measured_on"] == "host" and r["status"] == "ok" and r["name"] == d["name"]
                 and r["runtime"] == d["runtime"] and r["precision"] == d["precision"])
        out[d["name"]] = d["latency_ms"]["p50"] / h["latency_ms"]["p50"]
        print(json.dumps({"artifact": d["name"], "device_p50_ms": d["latency_ms"]["p50"],
                          "host_p50_ms": h["latency_ms"]["p50"], "ratio": round(out[d["name"]], 3),
                          "device_acc": d["accuracy"], "host_acc": h["accuracy"], "threads": [d["threads"], h["threads"]]}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], help="KEY=YAML overrides of the config, dotted")
    parser.add_argument("--out", required=True)
    parser.add_argument("--target", default="raspberry-pi-5")
    parser.add_argument("--data", default=None)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cfg = yaml.safe_load(Path(args.config).read_text())
    for item in args.set:
        key, _, value = item.partition("=")
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    cfg["out"] = args.out
    with tempfile.TemporaryDirectory() as tmp, loopback_server() as box:
        config = Path(tmp) / "build.yaml"
        config.write_text(yaml.safe_dump(cfg))
        flags = ["--device", f"ssh://{box.user}@127.0.0.1:{box.port}{box.workdir}", "--device-python", box.python,
                 "--identity", str(box.key), "--ssh-config", str(box.ssh_config)]
        command = ["build", "--target", args.target, "--config", str(config), *flags,
                   *(["--data", args.data] if args.data else [])]
        print("edgetl " + " ".join(command))
        result = CliRunner().invoke(cli, command, catch_exceptions=False)
        print(result.output)
        per_round = [ratios(Path(args.out) / "bench" / "results.json")]
        for i in range(1, args.rounds):
            out = Path(args.out) / f"bench-round{i + 1}"
            bench = ["bench", args.out, "--target", args.target, "--config", str(config), "--out", str(out),
                     "--no-report", *flags]
            done = CliRunner().invoke(cli, bench, catch_exceptions=False)
            if done.exit_code != 0:
                print(done.output)
                raise SystemExit(done.exit_code)
            per_round.append(ratios(out / "results.json"))
        for name in per_round[0]:
            values = [r[name] for r in per_round if name in r]
            print(f"{name}: device/host p50 median {statistics.median(values):.3f}, spread "
                  f"{min(values):.3f}..{max(values):.3f} over {len(values)} rounds")
        print(f"budgets: {(Path(args.out) / 'budgets.json').read_text()}")


if __name__ == "__main__":
    main()
