"""Training losses in the trainer's ``loss(inputs, outputs, targets)`` signature: CE and distillation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from edgetl.errors import ConfigError
from edgetl.training.losses import CrossEntropy, DistillationLoss


def _softmax(row: list[float], t: float) -> list[float]:
    exps = [math.exp(v / t) for v in row]
    return [e / sum(exps) for e in exps]


class _Fixed(nn.Module):
    """A 'teacher' that returns fixed logits and remembers how it was called."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.scale = nn.Parameter(torch.ones(()))
        self.calls: list[tuple[bool, bool]] = []  # (training, grad enabled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.training, torch.is_grad_enabled()))
        return self.logits * self.scale


def test_distillation_matches_a_hand_computation() -> None:
    student = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    teacher = torch.tensor([[2.0, 1.0, 0.0], [0.5, 0.5, 2.0]])
    targets = torch.tensor([1, 2])
    t, alpha = 2.0, 0.7

    got = DistillationLoss(_Fixed(teacher), temperature=t, alpha=alpha)(torch.zeros(2, 1), student, targets)

    kl = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist(), strict=True):
        p, q = _softmax(t_row, t), _softmax(s_row, t)
        kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    kl /= 2  # batch mean
    ce = sum(-math.log(_softmax(row, 1.0)[c]) for row, c in zip(student.tolist(), targets.tolist(), strict=True)) / 2
    assert got.item() == pytest.approx(alpha * t * t * kl + (1 - alpha) * ce, rel=1e-5)


def test_alpha_zero_is_exactly_the_base_loss_and_never_runs_the_teacher() -> None:
    teacher = _Fixed(torch.randn(4, 3))
    base = CrossEntropy(label_smoothing=0.1)
    student, targets = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    loss = DistillationLoss(teacher, temperature=3.0, alpha=0.0, base=base)
    assert torch.equal(loss(torch.zeros(4, 1), student, targets), base(torch.zeros(4, 1), student, targets))
    assert teacher.calls == []


def test_alpha_one_is_the_kl_term_alone_and_zero_when_student_equals_teacher() -> None:
    logits = torch.randn(5, 4)
    loss = DistillationLoss(_Fixed(logits.clone()), temperature=2.0, alpha=1.0)
    assert loss(torch.zeros(5, 1), logits, torch.zeros(5, dtype=torch.long)).item() == pytest.approx(0.0, abs=1e-6)


def test_the_teacher_runs_in_eval_mode_without_gradients_and_the_student_gets_them() -> None:
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 3)).train()
    student = nn.Linear(6, 3)
    running_mean = teacher[1].running_mean.clone()
    loss_fn = DistillationLoss(teacher, temperature=4.0, alpha=0.5)
    teacher.train()  # someone's model.train() reached it: the loss puts it back each call

    x = torch.randn(8, 6)
    loss = loss_fn(x, student(x), torch.randint(0, 3, (8,)))
    loss.backward()

    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert all(p.grad is None for p in teacher.parameters())
    assert torch.equal(teacher[1].running_mean, running_mean)  # eval mode: BN statistics untouched
    assert all(p.grad is not None for p in student.parameters())
    first = loss_fn.teacher_logits(x)
    assert torch.equal(first, loss_fn.teacher_logits(x)) and not first.requires_grad  # dropout off: deterministic


class _TextModel(nn.Module):
    """Called as ``model(**inputs)`` like a text encoder with a head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(input_ids) * attention_mask.unsqueeze(-1)
        return self.head(hidden.sum(1) / attention_mask.sum(1, keepdim=True))


def test_dict_inputs_reach_the_teacher_as_keywords_and_soft_targets_work() -> None:
    teacher, student = _TextModel(), _TextModel()
    inputs = {"input_ids": torch.randint(0, 20, (3, 5)), "attention_mask": torch.ones(3, 5)}
    soft_targets = torch.tensor([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])  # MixUp-style probabilities
    loss_fn = DistillationLoss(teacher, temperature=2.0, alpha=0.5)

    loss = loss_fn(inputs, student(**inputs), soft_targets)

    assert loss.ndim == 0 and torch.isfinite(loss)
    assert torch.allclose(loss_fn.teacher_logits(inputs), teacher(**inputs))


def test_cross_entropy_takes_soft_targets_and_class_weights() -> None:
    logits = torch.randn(4, 3)
    labels = torch.tensor([0, 2, 1, 2])
    one_hot = nn.functional.one_hot(labels, 3).float()
    ce = CrossEntropy()
    assert torch.allclose(ce(None, logits, labels), ce(None, logits, one_hot))
    weighted = CrossEntropy(weight=[1.0, 0.0, 0.0])(None, logits, labels)  # only the class-0 sample counts
    assert weighted.item() == pytest.approx(-torch.log_softmax(logits, 1)[0, 0].item(), rel=1e-5)
    with pytest.raises(ConfigError, match="2 class weights for a model with 3 classes"):
        CrossEntropy(weight=[1.0, 2.0])(None, logits, labels)


def test_the_teacher_follows_the_inputs_device() -> None:
    teacher = nn.Linear(4, 2)
    loss_fn = DistillationLoss(teacher, temperature=2.0, alpha=0.5)
    x = torch.randn(3, 4, device="meta")  # a device other than the teacher's, without needing a GPU
    assert loss_fn.teacher_logits(x).device.type == "meta"
    assert next(teacher.parameters()).device.type == "meta"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"temperature": 0.0}, "temperature must be > 0"), ({"alpha": 1.5}, r"alpha must be in \[0, 1\]"),
     ({"alpha": -0.1}, r"alpha must be in \[0, 1\]")],
)
def test_bad_distillation_settings_are_config_errors(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DistillationLoss(nn.Linear(2, 2), **kwargs)


def test_bad_cross_entropy_settings_and_mismatched_teacher_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"label_smoothing must be in \[0, 1\)"):
        CrossEntropy(label_smoothing=1.0)
    loss_fn = DistillationLoss(_Fixed(torch.randn(2, 5)), temperature=2.0, alpha=0.5)
    with pytest.raises(ConfigError, match=r"teacher logits \(2, 5\) do not match the student's \(2, 3\)"):
        loss_fn(torch.zeros(2, 1), torch.randn(2, 3), torch.tensor([0, 1]))
