"""The synthetic benchmark task: the throughput anchors' workload inside fedsim.

Client ``c`` holds ``samples`` (default 32, one batch) inputs ``x ~ N(0, 1)`` of 784 values
(shaped as one 28×28 grey image, so image backbones accept them too) and labels drawn
uniformly from 0..9, all from a ``torch.Generator`` seeded by ``(seed, client id)``: a pure
function, generated on demand in well under a millisecond, so registering 100,000 clients
costs no memory. The loss is cross-entropy of ``head(backbone(x))`` (supervised). With
``federation.local_epochs = 1`` and ``federation.batch_size = samples`` a client does
exactly one SGD step — the work of the ``flower``, ``raw`` and ``pfl`` systems of
``benchmarks/systems.py`` (MLP 784-100-10, one step of lr 0.05 on 32 random samples), which
``benchmarks/throughput.py`` runs through every system.

The labels are noise: nothing generalises, so the evaluation set (a small fixed labelled
sample drawn the same way) scores chance. The task measures the simulator, not learning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from fedsim.models import build_backbone
from fedsim.optim.repopt import ProxyData
from fedsim.registry import register_task
from fedsim.seeding import torch_generator
from fedsim.tasks.base import BackboneHead, Batch, Task, TaskContext, TaskParams, TensorDataset
from fedsim.tasks.classification import EvalData, ProbeEvaluation

_STREAM_CLIENT, _STREAM_EVAL = 0x5C1, 0x5E7


class SyntheticParams(TaskParams):
    """Parameters of the synthetic task (``task.params`` in the YAML)."""

    samples: int = Field(32, ge=2, description="samples per client (one batch of the anchors)")
    image_size: int = Field(28, ge=2, le=64, description="inputs are 1×size×size (784 values at 28)")
    num_classes: int = Field(10, ge=2, description="labels are uniform in 0..num_classes-1")
    eval_samples: int = Field(200, ge=2, description="size of each of the eval bank and query sets")


@register_task("synthetic")
class SyntheticTask(ProbeEvaluation, Task):
    """Benchmark workload: Gaussian inputs, random labels, cross-entropy (one step per client)."""

    Params = SyntheticParams

    def __init__(self, context: TaskContext, params: SyntheticParams | None = None) -> None:
        super().__init__(context, params or SyntheticParams())
        self.params: SyntheticParams
        self._eval: EvalData | None = None

    def build_model(self) -> nn.Module:
        """Backbone ``context.backbone`` (``mlp`` for the anchors) plus a linear head."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.context.seed)
            backbone = build_backbone(self.context.backbone, in_channels=1,
                                      image_size=self.params.image_size, proxy=self.proxy_data(),
                                      options=self.context.backbone_options)
            head = nn.Linear(backbone.out_dim, self.params.num_classes)
        return BackboneHead(backbone, head)

    def proxy_data(self) -> ProxyData:
        """RepOpt Hyper-Search proxy: endless batches drawn like the clients' (labels are noise)."""
        p = self.params

        def batches(batch_size: int, seed: int):  # endless (x, y) draws from one generator
            gen = torch.Generator().manual_seed(seed)
            while True:
                yield self._draw(gen, batch_size)

        return ProxyData(key=f"synthetic:{self.context.seed}:{p.image_size}:{p.num_classes}",
                         batches=batches, num_classes=p.num_classes)

    def _draw(self, generator: torch.Generator, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.params.image_size
        x = torch.randn((n, 1, s, s), generator=generator)  # (n, 1, s, s)
        y = torch.randint(0, self.params.num_classes, (n,), generator=generator)  # (n,)
        return x, y

    def client_dataset(self, client_id: int) -> TensorDataset:
        """Client ``client_id``'s ``image`` and ``label`` tensors; a pure function of (seed, client id)."""
        x, y = self._draw(torch_generator(self.context.seed, _STREAM_CLIENT, client_id), self.params.samples)
        return TensorDataset({"image": x, "label": y})

    def loss(self, model: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        """Cross-entropy of the model's logits (no augmentation; ``generator`` unused)."""
        return F.cross_entropy(model(batch["image"]), batch["label"])

    def eval_data(self) -> EvalData:
        """A small fixed labelled set (``eval_samples`` bank + ``eval_samples`` query)."""
        if self._eval is None:
            n = self.params.eval_samples
            x, y = self._draw(torch_generator(self.context.seed, _STREAM_EVAL), 2 * n)
            self._eval = EvalData(bank_x=x[:n], bank_y=y[:n], query_x=x[n:], query_y=y[n:])
        return self._eval
