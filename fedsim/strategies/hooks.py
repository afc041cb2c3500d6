"""A strategy's client half: everything a client does differently for one aggregation rule.

Most rules live on the server only; their clients load the whole global model, train the
task's loss with the round's optimiser and send the whole model back. A rule that changes
that (FedProx's proximal term, FedVSSL's kept heads, a client optimiser of its own) subclasses
:class:`ClientHooks` in its own file and names the subclass as its strategy's ``Hooks``.
Nothing else changes: the server puts :meth:`ClientHooks.round_params` into the round
context, and every client path — both engines and a deployed node — trains through
:func:`fedsim.client.trainer.train_client`, which asks the hooks what to load, which
optimiser to build and what to add to the loss; the ClientApp asks them what to keep and
what to send, and a cohort worker folds with :meth:`ClientHooks.accumulator`.

A wrapper rule (central DP) takes the wrapped rule's hooks whole and changes only how an
update is folded (:meth:`ClientHooks.folded_by`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fedsim.optim import client_optimizer

if TYPE_CHECKING:
    from fedsim.records import RoundContext
    from fedsim.strategies.base import Accumulator, Arrays, Strategy

LossTerm = Callable[[nn.Module], torch.Tensor]
"""A term added to the task's loss at every local step: ``term(model)``."""


class ClientHooks:
    """The client side of ``strategy``, with the defaults of a server-only rule.

    ``strategy`` is the rule the hooks belong to (its parameters); ``fold_rule`` is the rule
    a cohort worker folds updates with: the same one unless a wrapper took the hooks over.
    """

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy
        self.fold_rule = strategy

    # -- server side: what the round context carries -----------------------------------------

    def round_params(self, aggregation: int) -> dict[str, Any]:
        """Values this rule's clients need in round number ``aggregation`` (1-based, skipped
        rounds not counted), by name; they travel in the round context (``params.<name>``)
        and, for :mod:`fedsim.flower`'s strategies, in Flower's train config. Default: none."""
        return {}

    # -- which tensors -----------------------------------------------------------------------

    def load_keys(self, keys: list[str]) -> list[str]:
        """The global tensors a client loads (default: all). A client keeps the others from
        its own previous participation (:meth:`kept_keys`)."""
        return keys

    def kept_keys(self, keys: list[str]) -> list[str]:
        """The tensors a client keeps as its own between rounds: those it does not load."""
        if not self.keeps_local:
            return []
        loaded = set(self.load_keys(keys))
        return [k for k in keys if k not in loaded]

    @property
    def keeps_local(self) -> bool:
        """Whether clients keep tensors of their own between rounds (the rule lets them load
        only part of the global model), so a run needs a client state store."""
        return self.loads_part()

    @classmethod
    def loads_part(cls) -> bool:
        """:attr:`keeps_local` read from the class, before any strategy is built: the rule
        overrides :meth:`load_keys`."""
        return cls.load_keys is not ClientHooks.load_keys

    def sent_keys(self, keys: list[str]) -> list[str]:
        """The tensors a client sends and the server aggregates (default: all); the global
        keeps its previous value for the others."""
        return keys

    def sent_prefixes(self, keys: list[str]) -> list[str]:
        """How :meth:`sent_keys` is told to a Flower client (``fedsim.flower.keep_local_mod``):
        name prefixes. Default: the sent names themselves."""
        return self.sent_keys(keys)

    # -- local training ----------------------------------------------------------------------

    def optimizer(self, model: nn.Module, ctx: RoundContext) -> Any:
        """The client's optimiser over ``model``: the round's (``ctx.optimizer``, lr, momentum,
        weight decay), see :func:`fedsim.optim.client_optimizer`."""
        return client_optimizer(ctx.optimizer, model, lr=ctx.lr, momentum=ctx.momentum,
                                weight_decay=ctx.weight_decay)

    def loss_term(self, model: nn.Module, ctx: RoundContext) -> LossTerm | None:
        """A term added to the task's loss at every step, or ``None`` (the default). Called
        once per client after the global weights are loaded, so it may remember them."""
        return None

    # -- folding (a cohort worker) -----------------------------------------------------------

    def accumulator(self, previous: Arrays, ctx: RoundContext) -> Accumulator:
        """An empty accumulator for the round's updates, whose clients started from
        ``previous``; it folds by the round's aggregation index."""
        return self.fold_rule.new_accumulator(previous, ctx.server_round, aggregation=ctx.aggregation)

    def folded_by(self, rule: Strategy) -> ClientHooks:
        """These hooks, whole, except that updates are folded by ``rule`` (a wrapper such as
        central DP, which clips each update before the wrapped rule folds it)."""
        hooks = copy.copy(self)
        hooks.fold_rule = rule
        return hooks
