"""FedVSSL: loss-weighted partial aggregation with SWA (Rehman et al., arXiv 2207.01975).

Partial update (:class:`PartialHooks`, the strategy's client half): a client loads only the
tensors whose name starts with ``backbone_prefix`` from the server and keeps its own head
from its previous participation (the client-side state store does that); it sends back only
the backbone, and the server aggregates only what it receives. The official code aggregates
the whole model, but every client discards the global head on load, so the global head is
never used: keeping the previous one is equivalent for training and saves bandwidth.
**This is a documented deviation.**

Server rule, per sent tensor, with p_k = exp(−L_k) and L_k the client's mean training loss::

    w^r   = α · Σ p_k w_k / Σ p_k  +  (1 − α) · Σ n_k w_k / Σ n_k
    w_g^r = (1 − β) · w^r + β · w_g^{r−1}        (SWA, from the 2nd aggregation on, if ``swa``)

Checked against the official yasar-rehman/FEDVSSL
``reproduce_papers/fedssl/main_cam_st_theta_b_mixed_+SWA_wo_mement.py`` (``SaveModelStrategy``):
the client reports ``exp(-avg_loss)`` as its weight, α = 0.9, and from ``rnd > 1`` the new
global is ``0.5 * weights + 0.5 * previous`` (β = 0.5 here, the paper's "β = 1" mixing).
Integer buffers follow the same formula and are rounded (the official code treats them
as floats). "Round 2 on" counts completed aggregations, not server rounds: SWA needs a
previous *aggregated* global, and a skipped round (global unchanged) must not switch it on.

p_k is ``exp(-L_k)`` exactly, without subtracting the round's minimum loss: a shift would
cancel in Σp w/Σp, but partial sums from different workers must use one common shift,
which no worker knows in advance. SSL losses are small and positive, so this is safe; if
every p_k underflows to 0 (losses above ~700) the loss-weighted term falls back to FedAvg.
Flower's own FedVSSL baseline concatenates lists where it should add arrays; not used here.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field, field_validator

from fedsim import records as R
from fedsim.registry import register_strategy
from fedsim.strategies.base import Arrays, ClientUpdate, Strategy, StrategyParams, cast_like
from fedsim.strategies.fedavg import PREFIX, WEIGHT, fold_weighted, weighted_mean
from fedsim.strategies.hooks import ClientHooks

LOSS_PREFIX = "p:"  # "p:{name}": Σ_k p_k w_k
LOSS_WEIGHT = "p"  # Σ_k p_k


class FedVSSLParams(StrategyParams):
    """Parameters of :class:`FedVSSL`."""

    alpha: float = Field(0.9, ge=0.0, le=1.0, description="weight of the loss-weighted mean")
    swa: bool = Field(True, description="average with the previous global from the 2nd aggregation on")
    swa_weight: float = Field(0.5, ge=0.0, lt=1.0, description="β, weight of the previous global in SWA")
    backbone_prefix: str | tuple[str, ...] = Field(
        "backbone.", description="tensors clients load and send (default: the task's encoder prefixes)")

    @field_validator("backbone_prefix")
    @classmethod
    def _non_empty(cls, v: str | tuple[str, ...]) -> str | tuple[str, ...]:
        if not v or any(not p for p in ((v,) if isinstance(v, str) else v)):
            raise ValueError("backbone_prefix must be a non-empty prefix (or list of prefixes)")
        return v


def loss_weight(update: ClientUpdate) -> float:
    """p_k = exp(−L_k) from ``update.metrics["loss"]``."""
    loss = update.metrics.get(R.LOSS)
    if loss is None or not math.isfinite(float(loss)):
        raise ValueError(f"fedvssl needs client {update.client_id}'s mean training loss in "
                         f"metrics['{R.LOSS}'], got {loss!r}")
    return math.exp(-float(loss))


def mix(sums: dict[str, torch.Tensor], previous: Arrays, alpha: float) -> Arrays:
    """α · loss-weighted mean + (1 − α) · sample-weighted mean."""
    fedavg = weighted_mean(sums, previous, prefix=PREFIX, weight_key=WEIGHT)
    if float(sums[LOSS_WEIGHT]) == 0.0:  # every exp(-L) underflowed
        return fedavg
    by_loss = weighted_mean(sums, previous, prefix=LOSS_PREFIX, weight_key=LOSS_WEIGHT)
    return {name: alpha * by_loss[name] + (1.0 - alpha) * fedavg[name] for name in previous}


class PartialHooks(ClientHooks):
    """FedVSSL's client half: load and send the backbone only, keep the head."""

    strategy: "FedVSSL"

    def _backbone(self, keys: list[str]) -> list[str]:
        prefix = self.strategy.params.backbone_prefix
        chosen = [k for k in keys if k.startswith(prefix)]
        if not chosen:
            raise ValueError(f"fedvssl: no tensor name starts with backbone_prefix "
                             f"{prefix!r}; set strategy.params.backbone_prefix")
        return chosen

    def load_keys(self, keys: list[str]) -> list[str]:
        """Clients load the backbone only and keep their own head."""
        return self._backbone(keys)

    def sent_keys(self, keys: list[str]) -> list[str]:
        """Clients send, and the server aggregates, the backbone only."""
        return self._backbone(keys)

    def sent_prefixes(self, keys: list[str]) -> list[str]:
        """``backbone_prefix`` as a list (after checking that it names some of ``keys``)."""
        self._backbone(keys)
        prefix = self.strategy.params.backbone_prefix
        return [prefix] if isinstance(prefix, str) else list(prefix)


@register_strategy("fedvssl")
class FedVSSL(Strategy):
    """FedVSSL: backbone-only, loss-weighted + FedAvg mix, then SWA (arXiv 2207.01975)."""

    Params = FedVSSLParams
    params: FedVSSLParams
    Hooks = PartialHooks

    def swa_active(self, aggregation: int) -> bool:
        """Whether SWA with the previous global applies to aggregation number
        ``aggregation`` (1-based, skipped rounds not counted)."""
        return self.params.swa and aggregation >= 2

    def schedule_warning(self, rounds: int) -> str | None:
        if self.params.swa and rounds < 2:
            return (f"fedvssl: SWA starts at the 2nd aggregation but this run has only {rounds} round; "
                    "it is FedVSSL without SWA (run 2 rounds or more)")
        return None

    def fold(self, sums: dict[str, torch.Tensor], update: ClientUpdate, previous: Arrays,
             aggregation: int) -> None:
        fold_weighted(sums, update)
        fold_weighted(sums, update, prefix=LOSS_PREFIX, weight_key=LOSS_WEIGHT,
                      weight=loss_weight(update))

    def finalize(self, sums: dict[str, torch.Tensor], previous: Arrays, aggregation: int) -> Arrays:
        out = mix(sums, previous, self.params.alpha)
        if self.swa_active(aggregation):
            beta = self.params.swa_weight
            out = {name: (1.0 - beta) * out[name] + beta * previous[name].to(torch.float32)
                   for name in previous}
        return cast_like(out, previous)
