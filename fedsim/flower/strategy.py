"""A fedsim reduction as a Flower ``Strategy``: the adapter behind :mod:`fedsim.flower`.

:class:`FedsimStrategy` subclasses Flower's own ``FedAvg`` (flwr 1.41
``flwr.serverapp.strategy.FedAvg``) and keeps all of it — node sampling, minimums,
``_check_and_log_replies`` (Flower's reply validation), metric aggregation, federated
evaluation, ``start`` and its ``Result`` — except how the arrays of a training round are
aggregated. That part is fedsim's rule, unchanged: every valid reply becomes a
:class:`~fedsim.strategies.base.ClientUpdate`, is folded into the rule's accumulator and the
accumulator is finalized, exactly as fedsim's own round loop does. There is no second copy
of any rule's math.

Flower's ``aggregate_train(server_round, replies)`` is not given the model the clients
started from, which L-DAWA (cosine to the previous global), FedVSSL (SWA with the previous
global, the head the clients do not send), the server optimisers and DP clipping need; the
adapter keeps it from ``configure_train`` — the arrays the strategy sent — as Flower's own
``FedAdam`` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from logging import INFO, WARNING
from typing import Any, ClassVar

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.exception import AggregationError
from flwr.serverapp.strategy import FedAvg as FlowerFedAvg
from flwr.supercore import log

from fedsim import records as R
from fedsim.strategies import base, wrap_dp
from fedsim.strategies.validation import check_update

SEND_PREFIX_KEY = "fedsim.send-prefix"
"""Train-config key naming the tensors a client sends (the others it keeps local); read by
:func:`fedsim.flower.client.keep_local_mod`."""


class FedsimStrategy(FlowerFedAvg):
    """A fedsim aggregation rule driven by Flower's ``FedAvg`` machinery.

    Subclasses set ``rule`` (a fedsim strategy class); the rule's own parameters are keyword
    arguments (``LDAWA(warmup_rounds=2)``), next to Flower's usual ones.

    Parameters
    ----------
    fraction_train, fraction_evaluate, min_train_nodes, min_evaluate_nodes, min_available_nodes, \
weighted_by_key, arrayrecord_key, configrecord_key, train_metrics_aggr_fn, evaluate_metrics_aggr_fn
        As in Flower's ``FedAvg``. ``weighted_by_key`` (default ``"num-examples"``) is each
        reply's sample count n_k; it must be a positive integer.
    loss_key
        The reply metric holding the client's mean training loss (Flower's quickstart sends
        ``"train_loss"``); FedVSSL weights clients by ``exp(-loss)``.
    dp_clip, dp_noise, dp_seed
        Central DP with fixed clipping around the rule (decomposable rules only), as
        fedsim's ``--dp-clip`` / ``--dp-noise``.
    **params
        The rule's parameters (an experiment's ``strategy.params``), validated by its pydantic model.
    """

    rule: ClassVar[type[base.Strategy]]

    def __init__(self, *, fraction_train: float = 1.0, fraction_evaluate: float = 1.0,
                 min_train_nodes: int = 2, min_evaluate_nodes: int = 2, min_available_nodes: int = 2,
                 weighted_by_key: str = R.NUM_EXAMPLES, arrayrecord_key: str = "arrays",
                 configrecord_key: str = "config",
                 train_metrics_aggr_fn: Callable[[list[RecordDict], str], MetricRecord] | None = None,
                 evaluate_metrics_aggr_fn: Callable[[list[RecordDict], str], MetricRecord] | None = None,
                 loss_key: str = "train_loss", dp_clip: float | None = None, dp_noise: float = 0.0,
                 dp_seed: int = 0, **params: Any) -> None:
        super().__init__(fraction_train=fraction_train, fraction_evaluate=fraction_evaluate,
                         min_train_nodes=min_train_nodes, min_evaluate_nodes=min_evaluate_nodes,
                         min_available_nodes=min_available_nodes, weighted_by_key=weighted_by_key,
                         arrayrecord_key=arrayrecord_key, configrecord_key=configrecord_key,
                         train_metrics_aggr_fn=train_metrics_aggr_fn,
                         evaluate_metrics_aggr_fn=evaluate_metrics_aggr_fn)
        strategy = self.rule(self.rule.Params(**params))
        self.strategy: base.Strategy = (strategy if dp_clip is None
                                        else wrap_dp(strategy, dp_clip, dp_noise, dp_seed))
        self.loss_key = loss_key
        self.previous: base.Arrays | None = None  # the global the round's clients started from
        self.aggregations = 0  # completed aggregations (a round without valid replies adds none)

    def summary(self) -> None:
        """Log the rule and its parameters, then Flower's FedAvg summary."""
        log(INFO, "\t├──> fedsim rule: %s %s", type(self.strategy).__name__,
            self.strategy.params.model_dump())
        super().summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """Flower's FedAvg sampling and messages; keeps ``arrays`` as the previous global and
        adds what the rule's client hooks tell clients: their round values under the rule's own
        names (FedProx: ``proximal-mu``, Flower's key) and, when clients send only part of the
        model (FedVSSL), the prefixes of what they send."""
        self.previous = arrays.to_torch_state_dict()
        hooks = self.strategy.client_hooks()
        for key, value in hooks.round_params(self.aggregations + 1).items():
            config[key] = value
        names = list(self.previous)
        if hooks.sent_keys(names) != names:
            config[SEND_PREFIX_KEY] = hooks.sent_prefixes(names)
        return super().configure_train(server_round, arrays, config, grid)

    def to_updates(self, contents: list[RecordDict], expected: base.Arrays) -> list[base.ClientUpdate]:
        """Valid replies as fedsim client updates (others are logged and left out).

        Client ids are the replies' positions after sorting by sender, so order-dependent
        rules (median, Krum ties) do not depend on arrival order.
        """
        updates = []
        for i, content in enumerate(contents):
            metrics = next(iter(content.metric_records.values()))
            n = metrics[self.weighted_by_key]
            if isinstance(n, float) and n.is_integer():
                n = int(n)
            loss = metrics.get(self.loss_key, metrics.get(R.LOSS, math.nan))
            update = base.ClientUpdate(client_id=i, num_examples=n,  # type: ignore[arg-type]
                                       arrays=next(iter(content.array_records.values())).to_torch_state_dict(),
                                       metrics={R.LOSS: float(loss)})  # type: ignore[arg-type]
            reason = check_update(update, expected)
            if reason is None:
                updates.append(update)
            else:
                log(WARNING, "\t> fedsim: reply %d rejected (%s)", i, reason)
        return updates

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Fold the valid replies into the rule's accumulator and finalize it."""
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if self.previous is None:
            raise AggregationError(reason="no previous global: call configure_train before aggregate_train")
        valid.sort(key=lambda msg: msg.metadata.src_node_id)
        contents = [msg.content for msg in valid]
        acc = self.strategy.new_accumulator(self.previous, server_round, aggregation=self.aggregations + 1)
        updates = self.to_updates(contents, acc.previous)
        if not updates:
            return None, None
        for update in updates:
            acc.accumulate(update)
        arrays = ArrayRecord(acc.finalize())
        self.aggregations += 1
        metrics = self.train_metrics_aggr_fn([contents[u.client_id] for u in updates], self.weighted_by_key)
        for key, value in self.strategy.last_round_info().items():
            metrics[key] = value
        return arrays, metrics
