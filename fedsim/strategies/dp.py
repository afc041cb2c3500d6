"""Central differential privacy with fixed clipping, as a wrapper around a decomposable strategy.

After Flower's ``DifferentialPrivacyServerSideFixedClipping`` (flwr 1.41
``dp_fixed_clipping.py``; Andrew et al., arXiv 1905.03871 for the mechanism):

1. **Clip** (in ``fold``, so a cohort worker clips too): each client's update
   Δ_k = w_k − w_g over all sent *trainable* tensors jointly (``base.is_trainable``: float,
   not a BatchNorm running statistic, not a constant buffer) is scaled to L2 norm ≤ C, and
   ``w_g + clipped Δ_k`` is folded into the wrapped strategy. Statistics, constant buffers
   and integer buffers pass as sent and are not part of the norm.
2. **Noise** (in ``finalize``): Gaussian noise is added to the aggregate. For the
   sample-weighted mean Σ n_k Δ_k / Σ n_k, one client moves the *sum* Σ n_k Δ_k by at most
   n_max·C, so the sum gets noise N(0, (z·C·n_max)²), i.e. the mean gets

       σ = z · C · max_k n_k / Σ_k n_k

   per coordinate. With equal n_k this is Flower's ``z·C/K`` (Flower's accountant requires
   equal weights). The noise goes where the wrapped rule releases its aggregate
   (``Strategy.finalize_via``): rules built as "FedAvg mean, then a server step" (FedAdam,
   FedYogi, FedAdagrad, FedAvgM) release the mean, so the step is post-processing of the
   noised mean; any other rule releases its finalized output, as in Flower's wrapper. For
   rules that are not a sample-weighted mean of the updates (L-DAWA's cosine scaling,
   FedVSSL's loss weights) σ is a calibration, not a proof of the (ε, δ) guarantee.
   Noise goes on the trainable tensors only.

**Client side.** The wrapper takes the wrapped rule's client hooks whole (FedProx's proximal
term, FedVSSL's partial update) and changes only how a cohort worker folds: through the
wrapper, so the worker clips too.

**Statistics and constants.** BatchNorm running means and variances are averaged by the
wrapped rule *without* clipping or noise: they are not parameters, Gaussian noise of std σ
on a variance near 0 makes it negative (−0.147 was seen with z = C = 1, 4 clients) and
eval-mode BatchNorm then returns NaN. They are therefore released un-noised, and the (ε, δ)
guarantee covers the trainable parameters only — as in Opacus, which refuses BatchNorm, use
a model without running statistics (e.g. GroupNorm) for a formal guarantee. Constant
buffers (RepOpt's scales) keep the previous global's value (``base.is_constant``).

The noise comes from a ``torch.Generator`` seeded by (seed, aggregation index), the index
counting completed aggregations (:meth:`~fedsim.strategies.base.Strategy.new_accumulator`):
a run is reproducible, resumes draw the same noise, and every release gets its own draw.
Without skipped rounds the index is the server round.
:meth:`DPFixedClipping.last_round_info` reports what was used (keys ``dp_clip``,
``dp_noise_multiplier``, ``dp_noise_std``, ``dp_clipped``, ``dp_clients``).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field

from fedsim.seeding import torch_generator
from fedsim.strategies.base import (MAX_PREFIX, Arrays, ClientUpdate, Strategy, StrategyParams, add_scalar,
                                    is_trainable, max_into)
from fedsim.strategies.hooks import ClientHooks

N_SUM = "dp:n"  # Σ n_k
N_MAX = MAX_PREFIX + "dp:n"  # max n_k (merged by maximum)
CLIENTS = "dp:k"  # K
CLIPPED = "dp:clipped"  # clients whose update was scaled down
NOISE_STREAM = 0xD1F  # separates the noise generator from other (seed, round) streams


class DPParams(StrategyParams):
    """Parameters of :class:`DPFixedClipping`."""

    clip: float = Field(gt=0.0, description="C, the L2 bound on each client's update")
    noise_multiplier: float = Field(ge=0.0, description="z: noise std is z·C·n_max/Σn on the mean")
    seed: int = Field(0, description="seeds the noise with (seed, aggregation index)")


def clip_update(update: ClientUpdate, previous: Arrays, clip: float) -> tuple[ClientUpdate, bool]:
    """``update`` with Δ = w − w_g over its trainable tensors (``base.is_trainable``) scaled
    to norm ≤ ``clip``; and whether it was scaled down. Other tensors pass as sent."""
    floats = [k for k, v in update.arrays.items() if is_trainable(k, v)]
    sq = sum((float(((update.arrays[k].double() - previous[k].double()) ** 2).sum()) for k in floats), 0.0)
    norm = sq ** 0.5
    if norm <= clip:
        return update, False
    scale = clip / norm
    arrays = dict(update.arrays)
    for k in floats:
        g = previous[k].to(torch.float32)
        arrays[k] = (g + scale * (update.arrays[k].to(torch.float32) - g)).to(update.arrays[k].dtype)
    return ClientUpdate(update.client_id, arrays, update.num_examples, dict(update.metrics)), True


def gaussian_noise(like: Arrays, std: float, generator: torch.Generator) -> Arrays:
    """N(0, std²) for every trainable tensor of ``like`` (``base.is_trainable``), drawn in
    key order; statistics, constants and integer buffers get none."""
    return {k: torch.randn(v.shape, generator=generator, dtype=torch.float32) * std
            for k, v in like.items() if is_trainable(k, v)}


class DPFixedClipping(Strategy):
    """Central DP with fixed clipping around a decomposable strategy (arXiv 1905.03871)."""

    Params = DPParams
    params: DPParams

    def __init__(self, inner: Strategy, params: DPParams) -> None:
        if not inner.decomposable:
            raise ValueError(f"DP wraps decomposable strategies only; {type(inner).__name__} "
                             "keeps individual updates")
        super().__init__(params)
        self.inner = inner
        self._info: dict[str, float] = {}

    def client_hooks(self) -> ClientHooks:
        """The wrapped rule's client half, whole; only folding is DP's (it clips each update)."""
        return self.inner.client_hooks().folded_by(self)

    def schedule_warning(self, rounds: int) -> str | None:
        return self.inner.schedule_warning(rounds)

    def fold(self, sums: dict[str, torch.Tensor], update: ClientUpdate, previous: Arrays,
             aggregation: int) -> None:
        clipped, was_clipped = clip_update(update, previous, self.params.clip)
        self.inner.fold(sums, clipped, previous, aggregation)
        n = float(update.num_examples)
        add_scalar(sums, N_SUM, n)
        max_into(sums, N_MAX, torch.tensor(n, dtype=torch.float64))
        add_scalar(sums, CLIENTS, 1.0)
        add_scalar(sums, CLIPPED, float(was_clipped))

    def noise_std(self, sums: dict[str, torch.Tensor]) -> float:
        """σ = z · C · max n_k / Σ n_k on the aggregate."""
        p = self.params
        return p.noise_multiplier * p.clip * float(sums[N_MAX]) / float(sums[N_SUM])

    def finalize(self, sums: dict[str, torch.Tensor], previous: Arrays, aggregation: int) -> Arrays:
        std = self.noise_std(sums)
        gen = torch_generator(self.params.seed, aggregation, NOISE_STREAM)
        noise = gaussian_noise(previous, std, gen)

        def noised(released: Arrays) -> Arrays:
            return {k: (v + noise[k]).to(v.dtype) if k in noise else v for k, v in released.items()}

        out = self.inner.finalize_via(sums, previous, aggregation, noised)
        self._info = {"dp_clip": self.params.clip, "dp_noise_multiplier": self.params.noise_multiplier,
                      "dp_noise_std": std, "dp_clipped": float(sums[CLIPPED]),
                      "dp_clients": float(sums[CLIENTS])}
        return out

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)

    def last_round_info(self) -> dict[str, float]:
        """The wrapped strategy's info plus ``dp_clip``, ``dp_noise_multiplier``,
        ``dp_noise_std`` (σ on the aggregate), ``dp_clipped`` and ``dp_clients`` (counts)."""
        return {**self.inner.last_round_info(), **self._info}


def wrap_dp(strategy: Strategy, clip: float, noise_multiplier: float, seed: int) -> DPFixedClipping:
    """``strategy`` with central DP: updates clipped to L2 norm ``clip``, noise multiplier
    ``noise_multiplier`` (the CLI's ``--dp-clip`` and ``--dp-noise``), noise seeded by ``seed``."""
    return DPFixedClipping(strategy, DPParams(clip=clip, noise_multiplier=noise_multiplier, seed=seed))
