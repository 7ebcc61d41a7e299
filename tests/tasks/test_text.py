"""Text classification end to end on tiny_bert: build -> bundle -> predict, dynamic sequence length in both runtimes,
the int8 proof on matmuls, bad rows. One build (about a minute) serves the module."""

from __future__ import annotations

import json
import logging
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgetl.cli import cli

POSITIVE = ["good", "great", "fun", "funny", "best", "love"]
NEGATIVE = ["bad", "dull", "boring", "worst", "hate", "too"]
FILLER = ["the", "film", "movie", "story", "is", "it", "this", "was", "very", "so", "a", "and"]

FAST = """
train: {{backbone: tiny_bert, weights: none, batch_size: 8, head_epochs: 1, epochs: 3, lr: 3.0e-3,
         backbone_lr: 3.0e-3, label_smoothing: 0.0, seed: 0}}
quantize: {{qat_epochs: 1, calibration_images: 16, skip_qat_within_budget: false}}
bench: {{warmup: 1, min_iterations: 5, min_time_s: 0.0, batch_sizes: [1, 2]}}
data: {{path: {data}, num_workers: 0}}
out: {out}
"""


def sentence(rng: random.Random, label: int) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(2, 10))]
    for _ in range(rng.randint(1, 2)):
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label else NEGATIVE))
    return " ".join(words)


def write_tsv(path: Path, n: int, seed: int, extra: str = "") -> Path:
    rng = random.Random(seed)
    path.write_text("".join(f"{sentence(rng, i % 2)}\t{i % 2}\n" for i in range(n)) + extra, encoding="utf-8")
    return path


def make_text_data(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    # two bad rows in train: an empty text and a missing label
    write_tsv(root / "train.tsv", 80, 0, extra="\t1\na fun film\t\n")
    write_tsv(root / "dev.tsv", 20, 1)
    write_tsv(root / "test.tsv", 20, 2)
    return root


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("text")
    data = make_text_data(base / "data")
    config = base / "build.yaml"
    config.write_text(FAST.format(data=data, out=base / "run"))
    logger = logging.getLogger("edgetl")
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        result = run("build", "--target", "cpu", "--config", str(config), "--backbone", "tiny_bert",
                     "--data", str(data), "--no-budget-check")
    finally:
        logger.removeHandler(handler)
    return base, result, records


def test_build_ends_with_a_bundle_that_carries_the_tokenizer(built):
    base, result, records = built
    assert result.exit_code == 0, result.output
    out = base / "run"
    bundle = out / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["task"] == "text_classification"
    files = {f["path"]: f for f in manifest["files"]}
    assert {"tokenizer.json", "labels.json", "preprocess.json", "README.md"} <= set(files)
    # the tokenizer is hashed like every other file, and is the one fine-tuning wrote
    assert files["tokenizer.json"]["sha256"] == json.loads((out / "train" / "manifest.json").read_text())[
        "outputs"]["tokenizer.json"]
    pp = json.loads((bundle / "preprocess.json").read_text())
    assert pp["tokenizer"] == "tokenizer.json" and pp["max_seq_len"] == 64 and "tokenizer_path" not in pp
    assert [i["name"] for i in manifest["inputs"]] == ["input_ids", "attention_mask"]
    assert all(i["dtype"] == "int64" and i["dynamic_axes"] == {"0": "batch", "1": "sequence"}
               for i in manifest["inputs"])
    results = json.loads((out / "bench" / "results.json").read_text())
    ok = [r for r in results["rows"] if r["status"] == "ok"]
    assert {(r["runtime"], r["precision"]) for r in ok} >= {("onnxruntime", "int8"), ("openvino", "int8"),
                                                           ("onnxruntime", "fp32"), ("openvino", "fp32")}
    assert any(r["name"] == "onnx-int8-dynamic" and r["runtime"] == "onnxruntime" for r in ok)
    assert not any(r["name"] == "onnx-int8-dynamic" and r["runtime"] == "openvino" for r in results["rows"])
    # the bundle carries, per format, the int8 route most accurate on val (never chosen on the test rows)
    from edgetl.bench.budgets import choose_int8_source

    selection = results["int8_selection"]
    assert selection["split"] == "val" and set(selection["accuracy"]) == {"ptq", "qat", "dynamic"}
    # the dynamic route is a different model per runtime (ONNX Runtime's fused graph, OpenVINO's int8 weights)
    assert set(selection["accuracy"]["dynamic"]) == {"onnx", "openvino"}
    figures = [*selection["accuracy"]["dynamic"].values(), selection["accuracy"]["ptq"], selection["accuracy"]["qat"]]
    assert all(0.0 <= a <= 1.0 for a in figures)
    assert any(r["name"] == "openvino-int8-dynamic" and r["runtime"] == "openvino" for r in ok)

    for f in manifest["files"]:
        if f["format"] in ("onnx", "openvino") and f["precision"] == "int8":
            assert f["source"] == choose_int8_source(results, f["format"]), f
            assert manifest["int8_source"][f["format"]] == f["source"]
    # learnable from 80 sentences: the sentiment words decide the label
    assert max(r["accuracy"] for r in ok) >= 0.8
    # the two bad rows were skipped with one warning per kind, naming file:line
    warned = " ".join(records)
    assert "skipping 1 row(s) with an empty text" in warned and "train.tsv:81" in warned
    assert "skipping 1 row(s) with no label" in warned and "train.tsv:82" in warned


def test_the_report_draws_per_class_curves_and_training_for_text(built):
    from tests.report.html_checks import check_report_html

    base, result, _ = built
    assert result.exit_code == 0, result.output
    out = base / "run"
    sections = check_report_html(out / "report" / "report.html")
    for title in ("ROC curves (one-vs-rest)", "Precision-recall curves (one-vs-rest)", "Calibration",
                  "Training curves"):
        assert len(sections[title].figures) == 1, title
    results = json.loads((out / "bench" / "results.json").read_text())
    ok = [r for r in results["rows"] if r["status"] == "ok" and r["accuracy"] is not None]
    # two classes, both in the test split: each has its one-vs-rest AUC; learnable data ranks well
    assert all(set(r["per_class"]) == {"0", "1"} and all(m["roc_auc"] is not None for m in r["per_class"].values())
               for r in ok)
    assert max(r["roc_auc"] for r in ok) >= 0.8 and all(0 <= r["ece"] <= 1 for r in ok)


def test_predict_file_matches_the_reported_accuracy(built, tmp_path):
    base, _, _ = built
    out = base / "run"
    test_tsv = base / "data" / "test.tsv"
    result = run("predict", str(out / "bundle"), "--file", str(test_tsv))
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("accuracy:"))
    correct, total = (int(v) for v in line.split()[1].split("/"))
    artifact = line.split("(artifact ")[1].split(",")[0]
    results = json.loads((out / "bench" / "results.json").read_text())
    runtime = "onnxruntime" if artifact.startswith("onnx") else "openvino"
    reported = next(r["accuracy"] for r in results["rows"] if r["name"] == artifact and r["runtime"] == runtime)
    assert total == 20 and correct / total == pytest.approx(reported, abs=1e-9)

    # the same texts as plain lines (no labels): the same predictions, no accuracy line
    rows = [ln.rsplit("\t", 1) for ln in test_tsv.read_text().splitlines()]
    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(text for text, _ in rows) + "\n")
    plain = run("predict", str(out / "bundle.tar.gz"), "--file", str(lines), "-k", "1")
    assert plain.exit_code == 0, plain.output
    predicted = [ln.rsplit(": ", 1)[1].split()[0] for ln in plain.output.splitlines() if ln.startswith("lines.txt:")]
    assert len(predicted) == 20 and "accuracy" not in plain.output
    assert sum(p == label for p, (_, label) in zip(predicted, rows, strict=True)) == correct

    one = run("predict", str(out / "bundle"), "--text", "the best fun film", "--text", "boring")
    assert one.exit_code == 0 and one.output.count("'") == 4, one.output


def test_readme_snippet_runs_with_tokenizers_numpy_and_onnxruntime(built, tmp_path):
    base, _, _ = built
    bundle = base / "run" / "bundle"
    readme = (bundle / "README.md").read_text()
    snippet = re.search(r"## Python\n.*?```python\n(.*?)```", readme, re.S).group(1)  # type: ignore[union-attr]
    assert "import edgetl" not in snippet and "from tokenizers import Tokenizer" in snippet
    script = tmp_path / "snippet.py"
    script.write_text(snippet)
    proc = subprocess.run([sys.executable, str(script)], cwd=bundle, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    labels = json.loads((bundle / "labels.json").read_text())
    assert proc.stdout.strip().strip("[]'") in labels
    assert "## C++ (ONNX Runtime)" in readme and "input_ids" in readme


def test_sequence_length_is_dynamic_in_onnxruntime_and_openvino(built):
    import onnx
    import torch

    from edgetl.artifacts import read_model_artifact, read_model_artifacts
    from edgetl.runtimes import RUNTIMES

    base, _, _ = built
    out = base / "run"
    fp32 = read_model_artifact(out / "train").load().eval()
    qat = next(a for a in read_model_artifacts(out / "quantize") if a.card.name == "qat").load_program().module()
    proto = onnx.load(str(out / "export" / "model_fp32.onnx"))
    dims = [[d.dim_param for d in i.type.tensor_type.shape.dim] for i in proto.graph.input]
    assert dims == [["batch", "sequence"], ["batch", "sequence"]]
    rng = np.random.default_rng(0)
    for file, runtime, device, precision, reference, tolerance in (
            ("model_fp32.onnx", "onnxruntime", "cpu", "fp32", fp32, 1e-4),
            ("openvino/model_fp32.xml", "openvino", "CPU", "fp32", fp32, 1e-4),
            ("model_int8_qat.onnx", "onnxruntime", "cpu", "int8", qat, 0.15),
            ("openvino/model_int8_qat.xml", "openvino", "CPU", "int8", qat, 0.15)):
        session = RUNTIMES.get(runtime).load(out / "export" / file, device, precision, 1)
        try:
            for length in (7, 29):
                ids = rng.integers(5, 100, size=(3, length), dtype=np.int64)
                mask = np.ones_like(ids)
                mask[2, length // 2:] = 0  # a padded row
                got = np.asarray(session.run({"input_ids": ids, "attention_mask": mask}))
                with torch.inference_mode():
                    want = reference(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
                assert got.shape == (3, 2)
                assert np.abs(got - want).max() < tolerance, (file, length)
        finally:
            session.close()


def test_int8_proof_counts_matmuls(built):
    base, _, _ = built
    out = base / "run"
    parity = json.loads((out / "export" / "parity.json").read_text())
    # tiny_bert: 2 layers x 6 linears (q, k, v, attention output, intermediate, output) + the classifier
    for name in ("onnx-int8-qat", "onnx-int8-ptq", "openvino-int8-qat", "openvino-int8-ptq"):
        assert parity[name]["int8"]["matmul"] == 13, (name, parity[name])
        assert parity[name]["float"]["matmul"] == 4, (name, parity[name])  # 2 attention matmuls per layer
    assert parity["onnx-fp32"]["int8"]["matmul"] == 0
    # ONNX Runtime's dynamic int8 of the fused graph: per layer one QAttention (q, k, v in one int8 matmul; the two
    # attention matmuls run inside it) and 3 int8 linears, + the classifier; nothing in float
    assert parity["onnx-int8-dynamic"]["int8"]["matmul"] == 2 * 4 + 1, parity["onnx-int8-dynamic"]
    assert parity["onnx-int8-dynamic"]["float"]["matmul"] == 0
    assert parity["onnx-int8-dynamic"]["precision_plan"]["ok"]
    assert parity["onnx-int8-dynamic"]["reference"].startswith("torch fp32")
    quant = json.loads((out / "quantize" / "manifest.json").read_text())
    kept = quant["info"]["kept_float"]
    assert len(kept) == 4 and all(k["kind"] == "linear" and k["reason"].startswith("attention") for k in kept)


def test_strict_turns_a_bad_row_into_an_error_naming_file_and_line(tmp_path):
    from edgetl.config import DataConfig
    from edgetl.errors import DataError
    from edgetl.tasks import get_task

    data = make_text_data(tmp_path / "data")
    task = get_task("text_classification")
    index = task.index_data(DataConfig(path=str(data)))
    assert len(index.splits["train"]) == 80 and len(index.skipped) == 2 and index.eval_split == "test"
    with pytest.raises(DataError, match=r"train\.tsv:81: row with an empty text"):
        task.index_data(DataConfig(path=str(data), strict=True))


def test_max_seq_len_beyond_the_position_table_is_a_config_error(tmp_path):
    from edgetl.backbones import get_backbone
    from edgetl.config import BuildConfig
    from edgetl.errors import ConfigError
    from edgetl.targets import load_target
    from edgetl.tasks import resolve_input

    cfg = BuildConfig().with_overrides({"train.backbone": "tiny_bert", "train.max_seq_len": 32})
    resolved = resolve_input(cfg, load_target("cpu"), get_backbone("tiny_bert"))
    assert resolved.size == 32 and dict(resolved.sources)["max_seq_len"] == "config train.max_seq_len"
    with pytest.raises(ConfigError, match="has 64 positions"):
        resolve_input(cfg.with_overrides({"train.max_seq_len": 65}), load_target("cpu"))
