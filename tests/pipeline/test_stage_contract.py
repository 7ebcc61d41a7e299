"""The stage contract: a model whose channels were pruned travels as a self-describing artifact, and a stage
registered between train and quantize is picked up by quantize, export, bench and bundle with no edit to them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgetl.cli import cli
from tests.conftest import FAST_BUILD

torch = pytest.importorskip("torch")



def prune_tiny_channels(model: torch.nn.Module, keep: int = 8) -> torch.nn.Module:
    """Plain tensor surgery: keep the first ``keep`` output channels of the second block (16 -> 8)."""
    conv, bn = model.blocks[1][0], model.blocks[1][1]
    nxt = model.blocks[2][0]
    new_conv = torch.nn.Conv2d(conv.in_channels, keep, 3, conv.stride, 1, bias=False)
    new_conv.weight.data = conv.weight.data[:keep].clone()
    new_bn = torch.nn.BatchNorm2d(keep)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new_bn, name).data = getattr(bn, name).data[:keep].clone()
    new_next = torch.nn.Conv2d(keep, nxt.out_channels, 3, nxt.stride, 1, bias=False)
    new_next.weight.data = nxt.weight.data[:, :keep].clone()
    model.blocks[1][0], model.blocks[1][1], model.blocks[2][0] = new_conv, new_bn, new_next
    return model.train(model.training)  # the new modules take the model's mode


def _run_prune(ctx, resume):  # type: ignore[no-untyped-def]
    """A stage written only against the contract: read the current float model, write a new float artifact."""
    from edgetl.artifacts import Lineage, read_model_artifact, save_module
    from edgetl.compress import count_macs_params
    from edgetl.manifest import Manifest, hash_outputs
    from edgetl.tasks import get_task

    source = read_model_artifact(ctx.input_dir("float_model"))
    model = prune_tiny_channels(source.load())
    out = ctx.dir("surgery")
    out.mkdir(parents=True, exist_ok=True)
    save_module(model, out / "model.pt")
    example = get_task(source.card.task).example_inputs(source.card.io, 1)
    macs, params = count_macs_params(model, example["input"])
    card = source.card.model_copy(update={
        "name": "pruned", "lineage": Lineage(stage="surgery", method="surgery", parent=source.ref,
                                             parent_manifest=source.manifest.hash),
        "data_split": f"../{source.stage_dir.name}/{source.card.data_split}", "macs": macs, "params": params})
    Manifest(stage="surgery", outputs=hash_outputs(out, ["model.pt"]),
             info={"models": [card.model_dump(mode="json")]}).write(out)


@pytest.fixture(scope="module")
def pruned_build(tmp_path_factory):  # type: ignore[no-untyped-def]
    from edgetl.pipeline.engine import STAGES, StageDef, register_stage
    from tests.conftest import make_image_folder

    base = tmp_path_factory.mktemp("pruned")
    data = make_image_folder(base / "data", {"red": 10, "green": 10, "blue": 10})
    config = base / "build.yaml"
    config.write_text(FAST_BUILD.format(data=data, out=base / "run"))
    register_stage(StageDef("surgery", 20, ("float_model", "dataset"), ("float_model",), lambda ctx: {"keep": 8},
                            _run_prune))
    try:
        result = CliRunner().invoke(cli, ["build", "--target", "cpu", "--config", str(config), "--no-budget-check"],
                                    catch_exceptions=False)
    finally:
        STAGES.unregister("surgery")
    return base, result


def test_a_pruned_model_saves_and_loads_back_whole(tmp_path: Path) -> None:
    from edgetl.artifacts import load_module_file, save_module
    from edgetl.backbones import create_model

    model = prune_tiny_channels(create_model("tiny", 3, "none").eval())
    save_module(model, tmp_path / "model.pt")
    loaded = load_module_file(tmp_path / "model.pt")
    x = torch.randn(2, 3, 32, 32)
    assert loaded.blocks[1][0].out_channels == 8 and loaded.blocks[2][0].in_channels == 8
    torch.testing.assert_close(loaded(x), model(x))


def test_the_pruned_artifact_goes_through_quantize_export_bench_and_bundle(pruned_build) -> None:
    import onnx

    base, result = pruned_build
    assert result.exit_code == 0, result.output
    out = base / "run"
    assert "[surgery] done" in result.output
    quantize = json.loads((out / "quantize" / "manifest.json").read_text())
    assert quantize["info"]["source"] == "surgery:pruned"
    assert all(m["lineage"]["parent"] == "surgery:pruned" for m in quantize["info"]["models"])
    export = json.loads((out / "export" / "manifest.json").read_text())
    assert export["info"]["float_source"] == "surgery:pruned"
    train_macs = json.loads((out / "train" / "manifest.json").read_text())["info"]["models"][0]["macs"]
    assert export["info"]["macs"] < train_macs
    for name in ("model_fp32.onnx", "model_int8_qat.onnx"):
        graph = onnx.load(str(out / "export" / name)).graph
        shapes = {tuple(t.dims) for t in graph.initializer if len(t.dims) == 4}
        assert (8, 8, 3, 3) in shapes and (32, 8, 3, 3) in shapes, name  # the pruned widths, not the registry's
    results = json.loads((out / "bench" / "results.json").read_text())
    ok = {r["name"] for r in results["rows"] if r["status"] == "ok"}
    assert {"torch-fp32", "onnx-fp32", "onnx-int8-qat", "openvino-int8-qat"} <= ok
    bundle = json.loads((out / "bundle" / "manifest.json").read_text())
    assert bundle["lineage"]["float_model"] == "surgery:pruned"
    predicted = CliRunner().invoke(cli, ["predict", str(out / "bundle"), str(base / "data" / "val")],
                                   catch_exceptions=False)
    assert predicted.exit_code == 0 and "accuracy:" in predicted.output
