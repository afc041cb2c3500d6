"""BYOL: an online network predicts a slowly moving target network's projection of another view.

Grill et al., "Bootstrap Your Own Latent", arXiv 2006.07733, §3.1 and Algorithm 1. Two
views ``v, v'`` of every sample; the online network (encoder f_θ, projector g_θ, predictor
q_θ) gives ``p = q_θ(g_θ(f_θ(v)))``, the target network (f_ξ, g_ξ, no predictor) gives
``z' = g_ξ(f_ξ(v'))`` without gradient. The loss of one ordered pair is the squared distance
of the L2-normalised vectors,

    L(p, z') = ‖p/‖p‖ − z'/‖z'‖‖² = 2 − 2·cos(p, z'),

symmetrised over the two views (``L(p, z') + L(p', z)``), averaged over the batch. After
each optimizer step of θ the target follows it by an exponential moving average,
``ξ ← τ ξ + (1 − τ) θ``. Layout after lightly's ``lightly/loss/negative_cosine_similarity``
and ``lightly/models/utils.update_momentum``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def regression_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``2 − 2·cos(p_i, z_i)``; no gradient flows into ``z``."""
    if p.shape != z.shape or p.dim() != 2:
        raise ValueError(f"expected two (n, c) tensors of one shape, got {tuple(p.shape)} and {tuple(z.shape)}")
    return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=1)).mean()


class BYOLLoss(nn.Module):
    """The symmetrised BYOL loss of two views (arXiv 2006.07733, eq. 2 and the sum below it)."""

    def forward(self, p0: torch.Tensor, p1: torch.Tensor, z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        """``p0, p1``: online predictions of views 0 and 1; ``z0, z1``: target projections of them.

        Each view's prediction regresses the *other* view's target projection.
        """
        return regression_loss(p0, z1) + regression_loss(p1, z0)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """``ξ ← τ ξ + (1 − τ) θ`` for every floating-point parameter and buffer of ``target``.

    ``target`` and ``online`` must have the same state-dict keys; integer buffers (BatchNorm's
    batch counter) are copied. ``tau`` in [0, 1]: 1 freezes the target, 0 copies the online one.
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"BYOL momentum tau must be in [0, 1] (got {tau})")
    t_state, o_state = target.state_dict(), online.state_dict()
    if t_state.keys() != o_state.keys():
        raise ValueError("the target and online networks differ in their state-dict keys")
    floats = [k for k, v in t_state.items() if v.is_floating_point()]
    if floats:
        torch._foreach_lerp_([t_state[k] for k in floats], [o_state[k] for k in floats], 1.0 - tau)
    for k, v in t_state.items():
        if not v.is_floating_point():
            v.copy_(o_state[k])


class BYOLNetwork(nn.Module):
    """The online network: ``backbone`` (f_θ), ``head`` (the projector g_θ) and ``predictor`` (q_θ).

    ``forward`` is the projection ``g(f(x))``; the predictor is applied by :class:`MomentumTarget`'s
    caller. All three parts are ordinary parameters, so a strategy aggregates them like any other.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, predictor: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.predictor = predictor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def projector_view(self) -> nn.Module:
        """The online encoder + projector as one module (shared, not copied): the target's shape."""
        return nn.ModuleDict({"backbone": self.backbone, "head": self.head})


class MomentumTarget:
    """The target network ξ of BYOL and the symmetrised loss against it.

    :meth:`reset` copies the online encoder + projector into the target (fedsim calls it when a
    client starts local training, with the received global weights loaded: the target starts
    from the global model, as θ does); :meth:`loss` first moves ξ towards the current θ by one
    EMA step and then scores two views. Doing the EMA step at the start of each loss call is the
    paper's order shifted by one call: the update after step k happens before the loss of step
    k + 1 reads ξ (the first call's EMA step is a no-op since ξ = θ; the last step's is skipped,
    and the target is discarded after local training anyway).
    """

    def __init__(self, tau: float) -> None:
        if not 0.0 <= tau <= 1.0:
            raise ValueError(f"BYOL momentum tau must be in [0, 1] (got {tau})")
        self.tau = tau
        self.net: nn.Module | None = None
        self._loss = BYOLLoss()

    @torch.no_grad()
    def reset(self, online: BYOLNetwork) -> None:
        """ξ ← θ (encoder + projector); the target module is built once and reused."""
        view = online.projector_view()
        if self.net is None:
            self.net = copy.deepcopy(view).requires_grad_(False)
        else:
            self.net.load_state_dict(view.state_dict())
        self.net.train()  # BYOL's target normalises with the batch's statistics, as the online one

    def loss(self, online: BYOLNetwork, v0: torch.Tensor, v1: torch.Tensor) -> torch.Tensor:
        """EMA step, then the symmetrised loss of views ``v0`` and ``v1`` (one forward pass each side)."""
        if self.net is None:
            raise RuntimeError("MomentumTarget.reset was not called before the first loss")
        ema_update(self.net, online.projector_view(), self.tau)
        n = len(v0)
        views = torch.cat([v0, v1])
        p = online.predictor(online(views))  # (2n, d): BatchNorm sees both views, as for SimCLR
        with torch.no_grad():
            net = self.net
            z = net["head"](net["backbone"](views))
        return self._loss(p[:n], p[n:], z[:n], z[n:])
