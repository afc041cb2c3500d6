"""What each box (SuperNode) of a deployed run did: ``boxes.json`` in the run directory.

The ServerApp wraps Flower's ``Grid`` in a :class:`BoxLedger`: every message the round loop
sends is noted with its box, every reply with its outcome, so per box the run knows how
often it was sampled, how often it replied with an update and why it failed otherwise.
Readiness answers (the ``query`` the round loop sends before round 1) describe the box
(host, what it trains on, device) or carry the error that keeps it from training.

``fedsim deploy run`` prints the boxes once their readiness is known (before round 1) and,
at the end, one line per failing box; :func:`failing_boxes` is the rule it exits by.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from flwr.app import Message, MessageType
from flwr.common.constant import ErrorCode

from fedsim.atomic import atomic_write_bytes
from fedsim.engines.base import TRAIN_SECONDS
from fedsim.server.replies import split_error

BOXES_FILE = "boxes.json"
NO_REPLY = "no reply within the round's time (federation.round_timeout)"
_EXPIRED = (ErrorCode.MESSAGE_UNAVAILABLE, ErrorCode.REPLY_MESSAGE_UNAVAILABLE)


def _error_line(msg: Message) -> str:
    if msg.error.code in _EXPIRED:
        return NO_REPLY
    if msg.error.code == ErrorCode.NODE_UNAVAILABLE:
        return "the SuperNode went offline"
    return split_error(msg.error.reason)[0]


class BoxLedger:
    """A ``Grid`` that notes, per box, the messages sent and the replies received, and
    keeps ``run_dir/boxes.json`` up to date. Everything else is the wrapped grid's."""

    def __init__(self, grid: Any, run_dir: Path) -> None:
        self._grid = grid
        self.path = Path(run_dir) / BOXES_FILE
        self.boxes: dict[int, dict[str, Any]] = {}
        self.sent: dict[str, tuple[int, str]] = {}  # message id -> (node id, message type)
        self.sent_at: dict[str, float] = {}  # message id -> time.time() it was pushed
        self.replied: set[str] = set()
        self.ready_pending = 0
        self.steps: dict[int, list[dict[str, float]]] = {}  # node id -> each round's steps (seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def _box(self, node_id: int) -> dict[str, Any]:
        return self.boxes.setdefault(node_id, {"node_id": node_id, "ready": None, "sampled": 0, "ok": 0,
                                               "failed": 0, "errors": {}})

    def push_messages(self, messages: Any) -> Any:
        messages = list(messages)
        pushed = time.time()
        ids = list(self._grid.push_messages(messages))
        for mid, msg in zip(ids, messages):
            self.sent_at[mid] = pushed
            node_id, kind = msg.metadata.dst_node_id, msg.metadata.message_type
            self.sent[mid] = (node_id, kind)
            box = self._box(node_id)
            if kind == MessageType.TRAIN:
                box["sampled"] += 1
            elif kind == MessageType.QUERY:
                self.ready_pending += 1
        if any(kind == MessageType.TRAIN for _, kind in (self.sent[m] for m in ids)):
            self.write()  # a round started: the boxes as of the rounds before it
        return ids

    def pull_messages(self, message_ids: Any) -> Any:
        replies = list(self._grid.pull_messages(message_ids))
        for reply in replies:
            self._note(reply)
        if replies and any(self.sent.get(r.metadata.reply_to_message_id, (0, ""))[1] == MessageType.QUERY
                           for r in replies) and self.ready_pending == 0:
            self.write()  # every box answered whether it is ready: deploy run lists them now
        return replies

    def _note(self, reply: Message) -> None:
        mid = reply.metadata.reply_to_message_id
        if mid not in self.sent or mid in self.replied:
            return
        self.replied.add(mid)
        node_id, kind = self.sent[mid]
        box = self._box(node_id)
        if kind == MessageType.QUERY:
            self.ready_pending -= 1
            if reply.has_error():
                box["ready"] = _error_line(reply)
            else:
                box["ready"] = "ok"
                info = reply.content.config_records.get("node")
                box.update({k: str(v) for k, v in (info or {}).items()})
        elif kind == MessageType.TRAIN:
            if reply.has_error():
                self._fail(box, _error_line(reply))
            else:
                box["ok"] += 1
                self._time_steps(box, mid, reply)

    def _time_steps(self, box: dict[str, Any], mid: str, reply: Message) -> None:
        """Where the round's time went for this box (:data:`STEP_NAMES`); the box's medians
        go to ``boxes.json``."""
        sent, pulled = self.sent_at[mid], time.time()
        stamps = reply.content.metric_records.get("deploy-steps")  # fedsim.deploy.warm.STEPS
        metrics = reply.content.metric_records.get("metrics") or {}
        if stamps is None:  # a ClientApp that does not stamp (--cold-clientapp): the whole trip
            steps = {"round trip": pulled - sent, "train": float(metrics.get(TRAIN_SECONDS, 0.0))}
        else:
            t = {k: float(v) for k, v in stamps.items()}  # type: ignore[arg-type]
            steps = {"to ClientApp process": t["process-started"] - sent,
                     "ClientApp process start": t["entered"] - t["process-started"],
                     "to warm process": t["handled"] - t["entered"],
                     "warm process (train)": t["done"] - t["handled"],
                     "back to ClientApp": t["returned"] - t["done"],
                     "back to ServerApp": pulled - t["returned"], "round trip": pulled - sent}
        self.steps.setdefault(box["node_id"], []).append(steps)
        rows = self.steps[box["node_id"]]
        box["step_seconds_median"] = {k: round(statistics.median(r[k] for r in rows), 4) for k in steps}

    @staticmethod
    def _fail(box: dict[str, Any], line: str) -> None:
        box["failed"] += 1
        box["errors"][line] = box["errors"].get(line, 0) + 1

    def finish(self) -> None:
        """Count every train message that never got a reply as failed; write the final file."""
        for mid, (node_id, kind) in self.sent.items():
            if kind == MessageType.TRAIN and mid not in self.replied:
                self._fail(self._box(node_id), NO_REPLY)
                self.replied.add(mid)
        self.write(complete=True)

    def write(self, complete: bool = False) -> None:
        if not self.path.parent.is_dir():
            return
        data = {"complete": complete, "written": time.time(), "boxes": [self.boxes[k] for k in sorted(self.boxes)]}
        atomic_write_bytes(self.path, lambda fh: fh.write((json.dumps(data, indent=1) + "\n").encode()))


def read_boxes(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / BOXES_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def describe(box: dict[str, Any]) -> str:
    """One line: a box as ``deploy run`` lists it before round 1."""
    if box.get("ready") is None:
        return f"box {box['node_id']}: has not answered whether it is ready"
    if box.get("ready") != "ok":
        return f"box {box['node_id']}: NOT READY: {box['ready']}"
    parts = [box.get(k) for k in ("host", "data", "device") if box.get(k)]
    return f"box {box['node_id']}: " + (", ".join(parts) if parts else "ready")


def failing_boxes(boxes: list[dict[str, Any]], max_failed_fraction: float) -> list[str]:
    """One line per box that failed every round it was sampled for; and one more when, over
    all boxes, more than ``max_failed_fraction`` of the sampled updates failed. Empty: the
    run's boxes did their part."""
    lines = []
    for box in boxes:
        if not box["sampled"] and box.get("ready") != "ok":
            lines.append(f"box {box['node_id']} never became ready: "
                         f"{box.get('ready') or 'no answer to the readiness query'}")
        elif box["sampled"] and box["ok"] == 0:
            why = max(box["errors"], key=box["errors"].get) if box["errors"] else box.get("ready") or "unknown"
            lines.append(f"box {box['node_id']}{' (' + box['host'] + ')' if box.get('host') else ''} failed all "
                         f"{box['sampled']} rounds it was sampled for: {why}")
    sampled = sum(b["sampled"] for b in boxes)
    failed = sum(b["failed"] for b in boxes)
    if sampled and failed / sampled > max_failed_fraction:
        lines.append(f"{failed} of {sampled} client updates failed, more than --max-failed-fraction "
                     f"{max_failed_fraction:g}")
    return lines
