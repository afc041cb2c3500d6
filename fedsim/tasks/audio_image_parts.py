"""Pieces of the audio-image task (:mod:`fedsim.tasks.audio_image`): a client's two-modality
dataset, the two-modality model, the moments term and cross-modal recall@k.

Pure functions and small modules, testable on hand-made tensors.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.tasks.base import MIN_BATCH, Batch, projection_mlp

MODALITIES = ("image", "audio")


class PairedDataset:
    """A client's images and/or clips, batched one modality per key (never paired).

    A client holding one modality yields ``{modality: chunk}``. A client holding both yields
    ``{"image": chunk, "audio": chunk}`` of one size: each modality is visited in its own
    random order, the smaller one cycled through fresh permutations until the larger one is
    used up, so an epoch sees every sample of the larger modality once. The two chunks of a
    batch are independent draws — not pairs.
    """

    def __init__(self, data: Mapping[str, torch.Tensor]) -> None:
        unknown = set(data) - set(MODALITIES)
        if not data or unknown:
            raise ValueError(f"PairedDataset takes 'image' and/or 'audio' tensors (got {sorted(data)})")
        self.tensors = {m: data[m] for m in MODALITIES if m in data}

    def __len__(self) -> int:
        return sum(len(t) for t in self.tensors.values())

    def __getitem__(self, modality: str) -> torch.Tensor:
        return self.tensors[modality]

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.tensors)

    def batches(self, generator: torch.Generator, batch_size: int) -> Iterator[Batch]:
        steps = max(len(t) for t in self.tensors.values())
        orders = {}
        for m, t in self.tensors.items():  # enough permutations of each modality to cover `steps`
            perms = [torch.randperm(len(t), generator=generator) for _ in range(math.ceil(steps / len(t)))]
            orders[m] = torch.cat(perms)[:steps]
        for start in range(0, steps, batch_size):
            if min(batch_size, steps - start) < MIN_BATCH:
                continue
            yield {m: t[orders[m][start:start + batch_size]] for m, t in self.tensors.items()}


class ModalityBatchNorm(nn.Module):
    """One BatchNorm per modality in place of a shared one (domain-specific BN, Chang et al.,
    arXiv 1906.03950): a shared trunk fed images and spectrograms in turn would otherwise keep
    running statistics of a mixture that fits neither modality at evaluation. ``selector``
    holds the modality of the current forward pass (set by :class:`TwoModalityEncoder`)."""

    def __init__(self, norm: nn.Module, selector: dict[str, str]) -> None:
        super().__init__()
        self.norms = nn.ModuleDict({m: copy.deepcopy(norm) for m in MODALITIES})
        self._selector = selector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norms[self._selector["modality"]](x)


def split_batch_norms(module: nn.Module, selector: dict[str, str]) -> int:
    """Replace every BatchNorm of ``module`` by a :class:`ModalityBatchNorm`; returns how many."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, ModalityBatchNorm(child, selector))
            count += 1
        else:
            count += split_batch_norms(child, selector)
    return count


class TwoModalityEncoder(nn.Module):
    """A small stem per modality (3×3 conv + BN + ReLU, 1 → ``stem_channels``) into one shared
    trunk (``separate=False``) or into a trunk per modality; ``forward(x, modality)`` → features.

    ``modality_norm``: a shared trunk keeps one BatchNorm per modality
    (:class:`ModalityBatchNorm`); every convolution stays shared."""

    def __init__(self, make_trunk: Callable[[], nn.Module], *, stem_channels: int, separate: bool,
                 modality_norm: bool = False) -> None:
        super().__init__()
        self.stems = nn.ModuleDict({m: nn.Sequential(nn.Conv2d(1, stem_channels, 3, padding=1, bias=False),
                                                     nn.BatchNorm2d(stem_channels), nn.ReLU(inplace=True))
                                    for m in MODALITIES})
        names = MODALITIES if separate else ("shared",)
        self.trunks = nn.ModuleDict({n: make_trunk() for n in names})
        self.out_dim: int = next(iter(self.trunks.values())).out_dim
        self._selector = {"modality": MODALITIES[0]}
        if modality_norm and not separate:
            split_batch_norms(self.trunks["shared"], self._selector)

    def trunk(self, modality: str) -> nn.Module:
        return self.trunks["shared"] if "shared" in self.trunks else self.trunks[modality]

    def forward(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        self._selector["modality"] = modality
        return self.trunk(modality)(self.stems[modality](x))


class TwoModalityModel(nn.Module):
    """``backbone`` (:class:`TwoModalityEncoder`) plus projection head(s): one shared head
    with a shared trunk, one per modality with separate trunks (two whole models)."""

    def __init__(self, make_trunk: Callable[[], nn.Module], *, stem_channels: int, projection_dim: int,
                 separate: bool, modality_norm: bool = False) -> None:
        super().__init__()
        self.backbone = TwoModalityEncoder(make_trunk, stem_channels=stem_channels, separate=separate,
                                           modality_norm=modality_norm)
        d = self.backbone.out_dim
        names = MODALITIES if separate else ("shared",)
        self.head = nn.ModuleDict({n: projection_mlp(d, projection_dim) for n in names})

    @property
    def separate(self) -> bool:
        return "shared" not in self.head

    def features(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        """Encoder features ``(n, out_dim)`` of inputs of ``modality``."""
        return self.backbone(x, modality)

    def forward(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        head = self.head[modality] if self.separate else self.head["shared"]
        return head(self.features(x, modality))


def moment_gap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``‖μ_a − μ_b‖² + ‖Σ_a − Σ_b‖²_F`` of two sets of embeddings ``(n_a, d)`` and ``(n_b, d)``
    (unbiased covariances): the CORAL-style gap (Sun & Saenko, arXiv 1607.01719) between the
    modalities' class-agnostic statistics; no sample of one is matched to one of the other."""
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a = (a - mean_a).T @ (a - mean_a) / (len(a) - 1)  # (d, d)
    cov_b = (b - mean_b).T @ (b - mean_b) / (len(b) - 1)
    return (mean_a - mean_b).square().sum() + (cov_a - cov_b).square().sum()


def recall_at_k(query_f: torch.Tensor, query_y: torch.Tensor, gallery_f: torch.Tensor,
                gallery_y: torch.Tensor, k: int) -> float:
    """Share of queries with an item of their class among their ``k`` most cosine-similar
    gallery items (ties by gallery index); queries and gallery are of different modalities."""
    if k < 1 or len(gallery_f) == 0 or len(query_f) == 0:
        raise ValueError(f"recall@k needs k >= 1 and non-empty sets (k={k})")
    sim = F.normalize(query_f.float(), dim=1) @ F.normalize(gallery_f.float(), dim=1).T  # (q, g)
    top = torch.sort(-sim, dim=1, stable=True).indices[:, : min(k, len(gallery_f))]  # (q, k)
    hits = (gallery_y.long()[top] == query_y.long()[:, None]).any(dim=1)
    return float(hits.double().mean())


def recall_chance(query_y: torch.Tensor, gallery_y: torch.Tensor, k: int) -> float:
    """Expected :func:`recall_at_k` of a random ranking: ``1 − C(N − n_c, k) / C(N, k)`` for a
    query of class ``c`` with ``n_c`` of the ``N`` gallery items, averaged over the queries."""
    n = len(gallery_y)
    k = min(k, n)
    counts = torch.bincount(gallery_y.long(), minlength=int(query_y.max()) + 1)
    miss = [math.comb(n - int(counts[c]), k) / math.comb(n, k) for c in query_y.long().tolist()]
    return 1.0 - sum(miss) / len(miss)
