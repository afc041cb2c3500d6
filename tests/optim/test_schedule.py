"""Per-round learning rates: the server's formulas equal torch's schedulers stepped per round."""

import math

import pytest
import torch

from fedsim.config import load_config
from fedsim.optim.schedule import round_lr


def _torch_lrs(make_scheduler, rounds, lr=0.1):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = make_scheduler(opt)
    out = []
    for _ in range(rounds):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return out


def test_cosine_schedule_per_round_by_hand_and_against_torch():
    rounds = 4
    lrs = [round_lr("cosine", 0.1, r, rounds=rounds, lr_min=0.01) for r in range(1, rounds + 1)]

    # 0.01 + 0.09 * (1 + cos(pi * t / 4)) / 2 for t = 0..3
    assert lrs == pytest.approx([0.1, 0.01 + 0.045 * (1 + math.sqrt(0.5)), 0.055, 0.01 + 0.045 * (1 - math.sqrt(0.5))])
    assert lrs == pytest.approx(_torch_lrs(
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=rounds, eta_min=0.01), rounds))


def test_step_schedule_against_torch():
    lrs = [round_lr("step", 0.1, r, rounds=7, step_rounds=3, gamma=0.5) for r in range(1, 8)]

    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025])
    assert lrs == pytest.approx(_torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, 3, gamma=0.5), 7))


def test_constant_is_the_default_and_the_config_uses_its_own_fields():
    assert load_config(None, {"federation.lr": 0.3}).federation.round_lr(5) == 0.3
    fed = load_config(None, {"federation.lr": 0.2, "federation.lr_schedule": "cosine",
                             "federation.rounds": 2}).federation
    assert [fed.round_lr(1), fed.round_lr(2)] == pytest.approx([0.2, 0.1])


def test_round_zero_is_refused():
    with pytest.raises(ValueError, match="rounds count from 1"):
        round_lr("constant", 0.1, 0, rounds=3)
