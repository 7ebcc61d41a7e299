"""Reusable training pieces (epoch loop, evaluation, schedules, freezing, distributed helpers).

The fine-tune stage composes them; quantization-aware training reuses ``train_one_epoch`` and ``evaluate``.
"""
