"""Fold train replies into the round's accumulator as they arrive, counting what failed."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from flwr.app import Message, RecordDict

from fedsim import records as R
from fedsim.client.app import REPLY_WEIGHTS
from fedsim.strategies.base import Accumulator, ClientUpdate
from fedsim.strategies.validation import all_finite, check_update


@dataclass
class RoundTally:
    """Per-round counts: clients folded in, rejected (by reason) and failed (by reason)."""

    ok: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    loss_sum: float = 0.0
    num_examples: int = 0
    busiest_reply_seconds: float = 0.0  # the longest a single reply spent training (worker-side)

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / self.ok if self.ok else float("nan")

    def as_record(self) -> dict[str, object]:
        return {"clients_ok": self.ok, "clients_rejected": sum(self.rejected.values()),
                "clients_failed": sum(self.failed.values()),
                "rejected": dict(self.rejected), "failed": dict(self.failed)}


def fold_reply(msg: Message, client_ids: list[int], acc: Accumulator, reply: str,
               tally: RoundTally) -> int:
    """Validate one reply and fold it into ``acc``; returns the number of clients it covered."""
    if msg.has_error():
        tally.failed["client-exception"] += len(client_ids)
        return len(client_ids)
    return fold_content(msg.content, client_ids, acc, reply, tally)


def fold_content(content: RecordDict, client_ids: list[int], acc: Accumulator, reply: str,
                 tally: RoundTally) -> int:
    """Validate a reply's content and fold it into ``acc``; returns the clients it covered."""
    metrics = content.metric_records.get(R.METRICS)
    arrays_rec = content.array_records.get(R.ARRAYS)
    if metrics is None or arrays_rec is None:
        tally.rejected["malformed-reply"] += len(client_ids)
        return len(client_ids)
    arrays = arrays_rec.to_torch_state_dict()
    tally.busiest_reply_seconds = max(tally.busiest_reply_seconds,
                                      float(metrics.get("train-seconds", 0.0)))  # type: ignore[arg-type]
    if reply == REPLY_WEIGHTS:
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
    # A cohort worker validated each client itself; check the partial sums are sane.
    done = int(metrics.get(R.NUM_CLIENTS_DONE, 0))
    for key, value in metrics.items():
        if key.startswith("rejected:"):
            tally.rejected[key.removeprefix("rejected:")] += int(value)
        elif key.startswith("failed:"):
            tally.failed[key.removeprefix("failed:")] += int(value)
    if done and not all(all_finite(t) for t in arrays.values()):
        tally.rejected["non-finite-sums"] += done
        return len(client_ids)
    if done:
        acc.merge_sums(arrays, done)
        tally.ok += done
        tally.loss_sum += float(metrics.get("loss-sum", 0.0))
    return len(client_ids)
