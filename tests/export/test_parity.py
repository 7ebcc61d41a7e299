"""Parity and the int8 proof through the runtime adapters: tallies, near-ties, chunking, corrupt files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.quant.builders import exported_run

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return exported_run(tmp_path_factory)


def test_corrupt_model_files_are_model_file_errors(run, tmp_path):
    from edgetl.errors import ModelFileError
    from edgetl.export.parity import load_onnx_checked, load_openvino_checked

    blob = (run / "export" / "model_int8_qat.onnx").read_bytes()
    (tmp_path / "half.onnx").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ModelFileError, match="half.onnx"):
        load_onnx_checked(tmp_path / "half.onnx")
    shutil.copy(run / "export" / "openvino" / "model_fp32.xml", tmp_path / "m.xml")
    (tmp_path / "m.bin").write_bytes((run / "export" / "openvino" / "model_fp32.bin").read_bytes()[:100])
    with pytest.raises(ModelFileError, match="m.xml"):
        load_openvino_checked(tmp_path / "m.xml")


def test_parity_counts_near_tie_flips_separately_and_gates_on_them():
    import numpy as np

    from edgetl.export.parity import ParityTally

    tally = ParityTally("onnxruntime:cpu", "torch int8", 1, tie_margin=0.25)
    reference = np.array([[2.0, 1.9], [3.0, 0.0], [0.0, 3.0], [1.0, 0.5]])
    runtime = np.array([[1.9, 2.0], [3.0, 0.1], [0.1, 3.0], [0.4, 0.6]])  # flips: a 0.1 near-tie, and a 0.5 margin
    tally.update(runtime, reference, np.array([0, 0, 1, 0]))
    d = tally.as_dict()
    assert d["flips"] == 2 and d["near_tie_flips"] == 1
    assert d["top1_agreement"] == 0.5 and d["top1_agreement_beyond_ties"] == 0.75
    assert d["flip_reference_margins"] == [0.1, 0.5]
    # the gate: 0.75 beyond ties passes a 0.7 bound that the raw 0.5 would fail, and fails a 0.8 bound
    from edgetl.config import BuildConfig
    from edgetl.manifest import Artifact
    from edgetl.stages.export import _check_parity

    d.update(max_logit_diff=0.6, n=4)
    artifact = Artifact(name="onnx-int8-qat", format="onnx", precision="int8", source="qat", path="m.onnx",
                        size_bytes=1)
    assert _check_parity(BuildConfig().with_overrides({"export.min_top1_agreement": 0.7}), artifact, d) is None
    message = _check_parity(BuildConfig().with_overrides({"export.min_top1_agreement": 0.8}), artifact, d)
    assert message is not None and "50.00% (2 flips, 1 near-ties < 0.25) < 80.00%" in message


def test_run_in_chunks_pads_the_last_chunk_of_named_inputs_and_drops_the_padding():
    from edgetl.export.parity import run_in_chunks

    class Echo:
        def __init__(self) -> None:
            self.shapes: list[tuple[int, ...]] = []

        def run(self, inputs):  # type: ignore[no-untyped-def]
            self.shapes.append(inputs["a"].shape)
            return inputs["a"][:, :2] + inputs["b"][:, :2]

    session = Echo()
    a, b = np.arange(10.0).reshape(5, 2), np.ones((5, 2))
    out = run_in_chunks(session, {"a": a, "b": b}, 2)
    np.testing.assert_array_equal(out, a + 1)
    assert session.shapes == [(2, 2), (2, 2), (2, 2)]  # the fifth row was padded to a full chunk


def test_the_int8_proof_counts_what_each_runtime_runs(run):
    from edgetl.export.parity import open_checked_session

    for fmt, rel in (("onnx", "model_int8_qat.onnx"), ("openvino", "openvino/model_int8_qat.xml")):
        session, counts, label = open_checked_session(run / "export" / rel, fmt, "int8")
        session.close()
        assert (counts.int8_total, counts.float_total) == (4, 0), label
    session, counts, _ = open_checked_session(run / "export" / "model_fp32.onnx", "onnx", "fp32")
    session.close()
    assert (counts.int8_total, counts.float_total) == (0, 4)
