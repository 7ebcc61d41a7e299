"""The dynamo ONNX writer (edgetl.export.writers.export_onnx)."""

from __future__ import annotations

import warnings
from pathlib import Path


def test_a_text_model_exports_without_the_shared_batch_axis_warning(tmp_path: Path) -> None:
    """input_ids and attention_mask share one batch axis: the exporter's note about it says nothing to a user."""
    import onnx
    import torch

    from edgetl.backbones import create_model
    from edgetl.export.writers import export_onnx
    from edgetl.tasks import get_task
    from edgetl.tasks.base import ResolvedInput

    task = get_task("text_classification")
    io = task.model_io(ResolvedInput(size=16, channels=1, batch_sizes=(1,), dynamic_batch=True), 2)
    torch.manual_seed(0)
    model = create_model("tiny_bert", 2, "none").eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_onnx(model, task.example_inputs(io, 2), tmp_path / "text.onnx", opset=18, dynamic=True,
                    metadata={}, what="the text model", io=io)
    assert not [w for w in caught if "axis name" in str(w.message)], [str(w.message) for w in caught]
    graph = onnx.load(str(tmp_path / "text.onnx")).graph
    assert [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input] == \
        [["batch", "sequence"]] * 2
