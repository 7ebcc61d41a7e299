"""Model artifacts describe themselves and refuse a file their manifest does not vouch for."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgetl.errors import ModelFileError

torch = pytest.importorskip("torch")


@pytest.fixture
def stage(tmp_path: Path) -> Path:
    from edgetl.config import DataConfig
    from edgetl.data import Preprocess, resolve_dataset
    from tests.benchmarking import tiny_model
    from tests.conftest import make_image_folder
    from tests.quant.builders import write_float_artifact

    data = make_image_folder(tmp_path / "data", {"a": 3, "b": 3})
    index = resolve_dataset(DataConfig(path=str(data)))
    pp = Preprocess.make(32, 1.0, (0.5,) * 3, (0.5,) * 3, "bilinear").model_dump(mode="json")
    return write_float_artifact(tmp_path / "train", tiny_model(2), index, pp)


def test_the_card_says_everything_a_later_stage_needs(stage: Path) -> None:
    from edgetl.artifacts import read_model_artifact

    artifact = read_model_artifact(stage)
    card = artifact.card
    assert (card.task, card.classes, card.kind, card.precision) == ("image_classification", ("a", "b"), "module", "fp32")
    assert card.io.input_names == ["input"] and card.io.inputs[0].shape == (None, 3, 32, 32)
    assert card.io.inputs[0].dynamic_axes == {0: "batch"} and card.precision_plan.float_layers == ()
    assert artifact.split_path == stage / "split.json" and artifact.ref == "train:fp32"
    assert artifact.load()(torch.randn(2, 3, 32, 32)).shape == (2, 2)


def test_a_modified_model_file_is_never_unpickled(stage: Path) -> None:
    from edgetl.artifacts import ModelArtifact, read_model_artifact

    artifact = read_model_artifact(stage)
    with (stage / "model.pt").open("ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(ModelFileError, match="model.pt missing or not matching the sha256"):
        read_model_artifact(stage)
    # even a caller holding an artifact from before the change gets a refusal, not an unpickled file
    with pytest.raises(ModelFileError, match="will not load it"):
        ModelArtifact(artifact.stage_dir, artifact.card, artifact.manifest).load()


def test_unknown_model_name_and_no_float_model_are_clear_errors(stage: Path) -> None:
    from edgetl.artifacts import read_model_artifact

    with pytest.raises(ModelFileError, match="holds no model 'qat' \\(it has: fp32\\)"):
        read_model_artifact(stage, "qat")


def test_a_saved_module_has_the_strides_of_a_fresh_one(tmp_path: Path) -> None:
    """channels_last training leaves odd strides on size-1 dims; they changed oneDNN's kernels (and PTQ)."""
    from edgetl.artifacts import load_module_file, save_module
    from edgetl.backbones import create_model

    trained = create_model("efficientnet_lite0", 3, "none").to(memory_format=torch.channels_last)
    odd = [n for n, p in trained.named_parameters() if p.is_contiguous() and p.stride() != p.contiguous(
        memory_format=torch.contiguous_format).clone(memory_format=torch.contiguous_format).stride()]
    assert odd  # the situation the fix is for: is_contiguous() is True, the strides are not the standard ones
    save_module(trained, tmp_path / "model.pt")
    loaded = load_module_file(tmp_path / "model.pt")
    fresh = create_model("efficientnet_lite0", 3, "none")
    assert [p.stride() for p in loaded.parameters()] == [p.stride() for p in fresh.parameters()]
