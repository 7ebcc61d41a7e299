"""Evaluation batches as a deployed application feeds them: padding cut per batch (edgetl.execution.base)."""

from __future__ import annotations

import numpy as np

from edgetl.execution import device_runner
from edgetl.execution.base import EvalData

# two texts padded to one length so that they stack (the benchmark's memory maps): 4 and 3 tokens of 6
IDS = np.array([[101, 5, 6, 102, 0, 0], [101, 7, 102, 0, 0, 0]], dtype=np.int64)
INPUTS = {"input_ids": IDS, "attention_mask": (IDS != 0).astype(np.int64)}


def test_each_batch_is_cut_to_its_longest_sample():
    data = EvalData(INPUTS, np.array([0, 1]), ["neg", "pos"], trim_to="attention_mask")
    both, second = data.batch(0, 2), data.batch(1, 2)
    assert both["input_ids"].shape == both["attention_mask"].shape == (2, 4)
    assert second["input_ids"].tolist() == [[101, 7, 102]] and second["attention_mask"].tolist() == [[1, 1, 1]]
    # without a padding mask (images) a batch is what is stored
    stored = EvalData(INPUTS, np.array([0, 1]), ["neg", "pos"]).batch(1, 2)
    assert stored["input_ids"].shape == (1, 6)


def test_the_device_runner_cuts_padding_as_the_host_does():
    class Model:  # the runner's model interface: named inputs with their dims, run(feeds) -> logits
        inputs = [("input_ids", [None, None], "int64"), ("attention_mask", [None, None], "int64")]
        seen: list[tuple[int, ...]] = []

        def run(self, feeds):  # type: ignore[no-untyped-def]
            self.seen.append(feeds["input_ids"].shape)
            return np.zeros((len(feeds["input_ids"]), 2), dtype=np.float32)

    model = Model()
    device_runner._predict(model, INPUTS, 1, "attention_mask")
    assert model.seen == [(1, 4), (1, 3)]
    model.seen.clear()
    device_runner._predict(model, INPUTS, 1)  # no trim_to: the stored length
    assert model.seen == [(1, 6), (1, 6)]
