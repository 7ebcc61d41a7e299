"""Multiply-accumulates and parameters of a model, for every model artifact, the results and the report.

MACs come from torch's own operator-level FLOP counter (``torch.utils.flop_counter.FlopCounterMode``) over one
forward pass at batch 1: a multiply-accumulate is two FLOPs for the convolutions and matrix products it counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn


def count_macs_params(model: nn.Module, example_inputs: Any) -> tuple[int, int]:
    """(MACs of one forward pass on ``example_inputs``, trainable-or-not parameter count).

    ``example_inputs``: a tensor, or a dict of named tensors passed as positional arguments in order.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    args = list(example_inputs.values()) if isinstance(example_inputs, dict) else [example_inputs]
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(*args)
    finally:
        model.train(was_training)
    batch = int(args[0].shape[0]) if args and hasattr(args[0], "shape") and args[0].ndim else 1
    macs = counter.get_total_flops() // 2 // max(1, batch)
    params = sum(p.numel() for p in model.parameters())
    return int(macs), int(params)
