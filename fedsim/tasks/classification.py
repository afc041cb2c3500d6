"""Evaluation helpers for classification-style tasks: kNN and linear probe on frozen features.

The two standard SSL protocols (e.g. SimCLR arXiv 2002.05709 §B.6 for the linear probe,
Wu et al. arXiv 1805.01978 for kNN on features): a kNN classifier on cosine similarity and a
logistic-regression probe, both fitted on the *bank* split and scored on the *query* split.
The scoring functions are pure and testable on hand-made tensors; ``evaluate_encoder``
extracts features from a model; :class:`ProbeEvaluation` gives a task with labelled held-out
data (:class:`EvalData`) the contract's ``metrics``/``evaluate``/``baselines`` in one line.
``raw_input_knn`` is the baseline reported beside the trained encoder (docs/tasks/index.md: a
trained encoder must beat it, and the random-init one, by a clear margin).
"""

from __future__ import annotations

import itertools
import warnings

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedsim.tasks.base import Metric

FEATURE_BATCH = 256


def knn_top1(bank_f: torch.Tensor, bank_y: torch.Tensor, query_f: torch.Tensor,
             query_y: torch.Tensor, k: int = 20) -> float:
    """Top-1 accuracy of a k-nearest-neighbour vote under cosine similarity.

    Each query takes the ``min(k, len(bank))`` most similar bank samples; the class with the
    most of them wins (plain, unweighted majority vote). A tie in votes goes to the tied
    class whose neighbours have the larger summed similarity, then to the smaller label.

    Parameters
    ----------
    bank_f, query_f
        Features ``(n_bank, d)`` and ``(n_query, d)``.
    bank_y, query_y
        Integer labels ``(n_bank,)`` and ``(n_query,)``.
    k
        Number of neighbours (at least 1).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1 (got {k})")
    if len(bank_f) == 0 or len(query_f) == 0:
        raise ValueError("kNN needs a non-empty bank and query")
    k = min(k, len(bank_f))
    # sim: (q, b) cosine similarities
    sim = F.normalize(query_f.float(), dim=1) @ F.normalize(bank_f.float(), dim=1).T
    top_sim, top_idx = sim.topk(k, dim=1)  # (q, k)
    top_y = bank_y.long()[top_idx]  # (q, k)
    num_classes = int(max(bank_y.max(), query_y.max())) + 1
    votes = torch.zeros(len(query_f), num_classes, dtype=torch.float64)
    votes.scatter_add_(1, top_y, torch.ones_like(top_sim, dtype=torch.float64))
    sims = torch.zeros_like(votes).scatter_add_(1, top_y, top_sim.double())
    # lexicographic (votes, summed similarity): summed similarity + k lies in [0, 2k]
    score = votes * (2 * k + 1) + (sims + k) * (votes > 0)
    pred = score.argmax(dim=1)
    return float((pred == query_y.long()).double().mean())


def linear_probe_top1(bank_f: torch.Tensor, bank_y: torch.Tensor, query_f: torch.Tensor,
                      query_y: torch.Tensor, seed: int = 0) -> float:
    """Top-1 accuracy of a logistic-regression probe fitted on standardised bank features;
    NaN, with a warning, when the bank holds fewer than two classes (a tiny folder's held-out
    split): there is no probe to fit, and the run goes on with kNN."""
    classes = int(torch.unique(bank_y).numel())
    if classes < 2:
        warnings.warn(f"linear probe skipped: the held-out bank has {len(bank_y)} item(s) of {classes} class; "
                      "linear_top1 is left empty (a bigger folder or test/ split gives it more)",
                      RuntimeWarning, stacklevel=2)
        return float("nan")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, random_state=seed))
    probe.fit(bank_f.double().numpy(), bank_y.numpy())
    pred = probe.predict(query_f.double().numpy())
    return float(np.mean(pred == query_y.numpy()))


def retrieval_map(bank_f: torch.Tensor, bank_y: torch.Tensor, query_f: torch.Tensor,
                  query_y: torch.Tensor) -> float:
    """Mean average precision of same-class retrieval under cosine similarity (as in FASSL).

    Each query ranks the whole bank by similarity (ties broken by bank index); its average
    precision is the mean, over the bank items of its class, of the precision at their rank.
    Queries whose class has no bank item are skipped (raises if none remain).
    """
    sim = F.normalize(query_f.float(), dim=1) @ F.normalize(bank_f.float(), dim=1).T  # (q, b)
    order = torch.sort(-sim, dim=1, stable=True).indices  # (q, b): bank indices, best first
    hits = (bank_y.long()[order] == query_y.long()[:, None]).double()  # (q, b) relevant at rank r
    relevant = hits.sum(1)
    ranks = torch.arange(1, hits.shape[1] + 1, dtype=torch.float64)
    precision = hits.cumsum(1) / ranks  # precision at every rank
    keep = relevant > 0
    if not bool(keep.any()):
        raise ValueError("retrieval mAP needs at least one query whose class is in the bank")
    ap = (precision * hits).sum(1)[keep] / relevant[keep]
    return float(ap.mean())


@dataclass(frozen=True)
class EvalData:
    """Labelled held-out data never seen by a client: a kNN/probe bank and a query split."""

    bank_x: torch.Tensor
    bank_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor


KNN_TOP1 = Metric("knn_top1", higher_is_better=True, description="kNN top-1 (cosine) on frozen features")
LINEAR_TOP1 = Metric("linear_top1", higher_is_better=True, description="linear-probe top-1 on frozen features")
RETRIEVAL_MAP = Metric("retrieval_map", higher_is_better=True, description="same-class retrieval mAP (cosine)")

Features = Callable[[nn.Module, torch.Tensor], torch.Tensor]


@torch.no_grad()
def encode(features: Features, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``features(model, x)`` in eval mode and without gradients, batch by batch, on the
    model's device (features come back on the CPU)."""
    was_training = model.training
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    device = tensor.device if tensor is not None else torch.device("cpu")  # a parameter-free encoder
    model.eval()
    try:
        return torch.cat([features(model, x[i : i + FEATURE_BATCH].to(device)).float().cpu()
                          for i in range(0, len(x), FEATURE_BATCH)])
    finally:
        model.train(was_training)


def evaluate_encoder(features: Features, model: nn.Module, data: EvalData, *, k: int = 20,
                     linear_probe: bool = True, retrieval: bool = False, seed: int = 0) -> dict[str, float]:
    """kNN (and linear-probe top-1, and same-class retrieval mAP) of ``model``'s frozen
    features on ``data``."""
    bank_f, query_f = encode(features, model, data.bank_x), encode(features, model, data.query_x)
    metrics = {KNN_TOP1.name: knn_top1(bank_f, data.bank_y, query_f, data.query_y, k=k)}
    if linear_probe:
        metrics[LINEAR_TOP1.name] = linear_probe_top1(bank_f, data.bank_y, query_f, data.query_y, seed=seed)
    if retrieval:
        metrics[RETRIEVAL_MAP.name] = retrieval_map(bank_f, data.bank_y, query_f, data.query_y)
    return metrics


def raw_input_knn(data: EvalData, k: int = 20) -> float:
    """kNN top-1 on flattened raw inputs: the floor a trained encoder must clear."""
    return knn_top1(data.bank_x.flatten(1), data.bank_y, data.query_x.flatten(1), data.query_y, k=k)


class ProbeEvaluation:
    """Mixin for a :class:`fedsim.tasks.base.Task` scored by kNN and a linear probe.

    The task provides :meth:`eval_data` (labelled held-out data) and may override
    :meth:`features` (default: ``model.backbone``). ``evaluation.knn_k`` and
    ``evaluation.linear_probe`` come from the task context (defaults 20 and on). Declares
    ``knn_top1`` (primary) and ``linear_top1`` (and ``retrieval_map`` when the class sets
    ``retrieval = True``); the round-0 baseline is ``knn_top1_raw_input``.
    """

    context: Any
    retrieval: bool = False

    def eval_data(self) -> EvalData:
        raise NotImplementedError

    def features(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Frozen-encoder features used for evaluation (default: the backbone's output)."""
        return model.backbone(x)

    def _probe_settings(self) -> tuple[int, bool]:
        ev = self.context.evaluation
        return int(getattr(ev, "knn_k", 20)), bool(getattr(ev, "linear_probe", True))

    def metrics(self) -> tuple[Metric, ...]:
        linear = (LINEAR_TOP1,) if self._probe_settings()[1] else ()
        return (KNN_TOP1, *linear, *((RETRIEVAL_MAP,) if self.retrieval else ()))

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        k, linear = self._probe_settings()
        return evaluate_encoder(self.features, model, self.eval_data(), k=k, linear_probe=linear,
                                retrieval=self.retrieval, seed=self.context.seed)

    def baselines(self) -> dict[str, float]:
        return {f"{KNN_TOP1.name}_raw_input": raw_input_knn(self.eval_data(), k=self._probe_settings()[0])}
