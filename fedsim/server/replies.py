"""Fold train replies into the round's accumulator as they arrive, counting what failed
and the bytes clients sent up."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from flwr.app import Message, RecordDict
from flwr.common.constant import ErrorCode

from fedsim import records as R
from fedsim.engines.base import TRAIN_SECONDS, payload_bytes, reply_codec
from fedsim.strategies.base import Accumulator

__all__ = ["RoundTally", "fold_content", "fold_reply", "payload_bytes", "split_error"]


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

    The engine whose replies have shape ``reply`` reads them (its codec,
    :meth:`fedsim.engines.base.Engine.fold`); ``tally.bytes_up`` grows by what a real
    federation's clients would have sent.
    """
    metrics = content.metric_records.get(R.METRICS)
    if metrics is None or content.array_records.get(R.ARRAYS) is None:
        tally.rejected["malformed-reply"] += len(client_ids)
        return len(client_ids)
    tally.busiest_reply_seconds = max(tally.busiest_reply_seconds,
                                      float(metrics.get(TRAIN_SECONDS, 0.0)))  # type: ignore[arg-type]
    return reply_codec(reply).fold(content, client_ids, acc, tally)
