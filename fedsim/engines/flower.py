"""The ``flower`` engine: one simulated SuperNode per client, each reply one client's
weights and ``num-examples`` (Flower's own shape, and what a deployed SuperNode sends)."""

from __future__ import annotations

from typing import Any

from fedsim import records as R
from fedsim.engines.base import Engine, payload_bytes
from fedsim.registry import register_engine


@register_engine("flower")
class FlowerEngine(Engine):
    """flower: one node per client, replies carry weights."""

    name = "flower"
    reply = R.REPLY_WEIGHTS
    node_noun = "SuperNode"

    @classmethod
    def plan(cls, exp: Any, device: str, cluster: Any = None) -> FlowerEngine:
        return cls(num_nodes=exp.federation.clients, device=device)

    def assign(self, client_ids: list[int], node_ids: list[int]) -> list[tuple[int, list[int]]]:
        # Virtual client c always runs on the c-th SuperNode.
        return [(node_ids[c % len(node_ids)], [c]) for c in client_ids]

    def clients_per_reply(self, plan: list[tuple[int, list[int]]]) -> int:
        return 1

    def planned_workers(self, cohort_size: int) -> int:
        return min(self.num_nodes, cohort_size)  # one message, one actor each

    @staticmethod
    def fold(content: Any, client_ids: list[int], acc: Any, tally: Any) -> int:
        """Validate one client's weights and fold them in; ``tally.bytes_up`` grows by its tensors."""
        from fedsim.strategies.base import ClientUpdate
        from fedsim.strategies.validation import check_update

        metrics = content.metric_records[R.METRICS]
        arrays = content.array_records[R.ARRAYS].to_torch_state_dict()
        tally.bytes_up += payload_bytes(arrays)
        update = ClientUpdate(client_id=client_ids[0], arrays=arrays,
                              num_examples=metrics.get(R.NUM_EXAMPLES),  # type: ignore[arg-type]
                              metrics={R.LOSS: float(metrics.get(R.LOSS, float("nan")))})
        reason = check_update(update, acc.previous)
        if reason is not None:
            tally.rejected[reason] += 1
            return 1
        acc.accumulate(update)
        tally.ok += 1
        tally.loss_sum += update.metrics[R.LOSS]
        tally.num_examples += update.num_examples
        return 1
