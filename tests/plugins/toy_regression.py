"""A toy regression task, registered only when a config lists this module in ``plugins``.

Inputs ``x ~ N(0, 1)`` of shape ``(1, 8, 8)``; the target is a fixed linear function of
``x`` plus 1 (so the constant-mean predictor is poor and a trained model beats it). The
model is the registered backbone plus a linear output; the loss is MSE; the declared
metrics are MAE (primary) and RMSE, lower is better; the round-0 baseline is the MAE of
predicting the held-out mean. It exists to show that nothing downstream names kNN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.models import build_backbone
from fedsim.registry import register_task
from fedsim.seeding import torch_generator
from fedsim.tasks.base import BackboneHead, Batch, Metric, Task, TaskContext, TaskParams, TensorDataset

SIZE = 8
MAE = Metric("mae", higher_is_better=False, description="mean absolute error")
RMSE = Metric("rmse", higher_is_better=False, description="root mean squared error")


def _draw(generator: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn((n, 1, SIZE, SIZE), generator=generator)
    w = torch.linspace(-1, 1, SIZE * SIZE)  # the fixed true weights
    return x, x.flatten(1) @ w * 0.2 + 1.0


@register_task("toy_regression")
class ToyRegression(Task):
    """Toy regression (tests only): float target, MAE primary, lower is better."""

    Params = TaskParams

    def __init__(self, context: TaskContext, params: TaskParams | None = None) -> None:
        super().__init__(context, params or TaskParams())

    def build_model(self) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.context.seed)
            backbone = build_backbone(self.context.backbone, in_channels=1, image_size=SIZE)
            return BackboneHead(backbone, nn.Linear(backbone.out_dim, 1))

    def client_dataset(self, client_id: int) -> TensorDataset:
        x, y = _draw(torch_generator(self.context.seed, 0x70, client_id), 32)
        return TensorDataset({"image": x, "target": y})

    def loss(self, model: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        return F.mse_loss(model(batch["image"]).squeeze(1), batch["target"])

    def metrics(self) -> tuple[Metric, ...]:
        return (MAE, RMSE)

    def _held_out(self) -> tuple[torch.Tensor, torch.Tensor]:
        return _draw(torch_generator(self.context.seed, 0x71), 256)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        x, y = self._held_out()
        was = model.training
        model.eval()
        err = model(x).squeeze(1) - y
        model.train(was)
        return {"mae": float(err.abs().mean()), "rmse": float(err.pow(2).mean().sqrt())}

    def baselines(self) -> dict[str, float]:
        _, y = self._held_out()
        return {"mae_constant_mean": float((y - y.mean()).abs().mean())}
