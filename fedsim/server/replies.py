"""Fold train replies into the round's accumulator as they arrive, counting what failed
and the bytes clients sent up."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flwr.app import Message, RecordDict
from flwr.common.constant import ErrorCode

from fedsim import records as R
from fedsim.records import REPLY_WEIGHTS
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
    errors: dict[str, str] = field(default_factory=dict)  # reason -> its first "Type: message"
    tracebacks: dict[str, str] = field(default_factory=dict)  # reason -> its first traceback
    bytes_up: int = 0  # tensor payload the round's clients sent (see fold_content)

    def note_error(self, reason: str, text: str) -> None:
        """Keep the first message (and traceback, if any) of failure ``reason``."""
        line, traceback = split_error(text)
        self.errors.setdefault(reason, line)
        if traceback:
            self.tracebacks.setdefault(reason, traceback)

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / self.ok if self.ok else float("nan")

    def as_record(self) -> dict[str, object]:
        return {"clients_ok": self.ok, "clients_rejected": sum(self.rejected.values()),
                "clients_failed": sum(self.failed.values()),
                "rejected": dict(self.rejected), "failed": dict(self.failed), "errors": dict(self.errors)}


def payload_bytes(arrays: Mapping[str, Any]) -> int:
    """Tensor payload of ``arrays`` in bytes: Σ numel × element size.

    ``arrays`` is a state dict of torch tensors or an ``ArrayRecord`` (whose ``Array``
    entries carry dtype and shape); the record's own framing (names, dtype strings, the
    ``.npy`` header of each array) is not counted.
    """
    total = 0
    for value in arrays.values():
        if hasattr(value, "element_size"):  # torch.Tensor
            total += value.numel() * value.element_size()
        else:  # flwr Array
            total += math.prod(value.shape) * np.dtype(value.dtype).itemsize
    return total


# Flower's own error text: "<class 'module.Type'>:<'message'>"
_FLOWER_ERROR = re.compile(r"<class '(?:[\w.]*\.)?(\w+)'>:<'(.*)'>\s*$", re.DOTALL)
MAX_ERROR_CHARS = 300


def split_error(text: str) -> tuple[str, str]:
    """``("Type: message", traceback)`` from a client's error text.

    fedsim's ClientApp sends ``"Type: message\n<traceback>"``; an error Flower made itself
    (e.g. a Ray actor that died) is condensed to its type and first message line.
    """
    match = _FLOWER_ERROR.match(text.strip())
    if match:
        kind, body = match.groups()
        first = next((ln.strip() for ln in body.splitlines() if ln.strip()), "")
        return f"{kind}: {first}"[:MAX_ERROR_CHARS], body.strip()
    line, _, traceback = text.strip().partition("\n")
    return line[:MAX_ERROR_CHARS], traceback.strip()


# The message or its reply expired (its TTL is the round's time).
_EXPIRED = (ErrorCode.MESSAGE_UNAVAILABLE, ErrorCode.REPLY_MESSAGE_UNAVAILABLE)


def fold_reply(msg: Message, client_ids: list[int], acc: Accumulator, reply: str,
               tally: RoundTally) -> int:
    """Validate one reply and fold it into ``acc``; returns the number of clients it covered."""
    if msg.has_error():
        if msg.error.code in _EXPIRED:
            tally.failed["timeout"] += len(client_ids)
        elif msg.error.code == ErrorCode.NODE_UNAVAILABLE:  # a deployed SuperNode went offline
            tally.failed["node-unavailable"] += len(client_ids)
        else:
            tally.failed["client-exception"] += len(client_ids)
            tally.note_error("client-exception", msg.error.reason)
        return len(client_ids)
    return fold_content(msg.content, client_ids, acc, reply, tally)


def fold_content(content: RecordDict, client_ids: list[int], acc: Accumulator, reply: str,
                 tally: RoundTally) -> int:
    """Validate a reply's content and fold it into ``acc``; returns the clients it covered.

    ``tally.bytes_up`` grows by what a real federation's clients would have sent: a
    weights reply's own tensors; for a cohort worker's partial sums, the tensors each of
    its clients that produced an update (folded or rejected) would have sent — the
    strategy's ``sent_keys``, which ``acc.previous`` holds — not the sums themselves.
    """
    metrics = content.metric_records.get(R.METRICS)
    arrays_rec = content.array_records.get(R.ARRAYS)
    if metrics is None or arrays_rec is None:
        tally.rejected["malformed-reply"] += len(client_ids)
        return len(client_ids)
    arrays = arrays_rec.to_torch_state_dict()
    tally.busiest_reply_seconds = max(tally.busiest_reply_seconds,
                                      float(metrics.get("train-seconds", 0.0)))  # type: ignore[arg-type]
    if reply == REPLY_WEIGHTS:
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
    # A cohort worker validated each client itself; check the partial sums are sane.
    done = int(metrics.get(R.NUM_CLIENTS_DONE, 0))
    sent = done
    for key, value in metrics.items():
        if key.startswith("rejected:"):
            tally.rejected[key.removeprefix("rejected:")] += int(value)
            sent += int(value)
        elif key.startswith("failed:"):
            tally.failed[key.removeprefix("failed:")] += int(value)
    for reason, text in content.config_records.get(R.ERRORS, {}).items():
        tally.note_error(reason, str(text))
    tally.bytes_up += sent * payload_bytes(acc.previous)
    if done and not all(all_finite(t) for t in arrays.values()):
        tally.rejected["non-finite-sums"] += done
        return len(client_ids)
    if done:
        acc.merge_sums(arrays, done)
        tally.ok += done
        tally.loss_sum += float(metrics.get("loss-sum", 0.0))
    return len(client_ids)
