"""Per-box accounting of a deployed run (``boxes.json``) and the rule ``deploy run`` exits by."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flwr.app import ConfigRecord, Error, Message, MessageType, MetricRecord, RecordDict
from flwr.common.constant import ErrorCode

from fedsim.deploy.boxes import NO_REPLY, BoxLedger, describe, failing_boxes, read_boxes

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def inside_a_run(monkeypatch):
    """Messages can be made only inside a Flower run (as the ServerApp thread is)."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_run_id", "_task_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


class ScriptedGrid:
    """Answers each pushed message with ``answer(node_id, message)`` (None: no reply)."""

    def __init__(self, answer) -> None:
        self.answer, self.replies = answer, []

    def get_node_ids(self) -> list[int]:
        return [11, 22]

    def push_messages(self, messages):
        ids = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = msg.object_id
            ids.append(msg.metadata.message_id)
            if (reply := self.answer(msg.metadata.dst_node_id, msg)) is not None:
                self.replies.append(reply)
        return ids

    def pull_messages(self, message_ids):
        out = [r for r in self.replies if r.metadata.reply_to_message_id in message_ids]
        self.replies = [r for r in self.replies if r not in out]
        return out


def answer(node_id: int, msg: Message) -> Message | None:
    if node_id == 22:  # misconfigured: every message fails
        return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
                             reason="ValueError: node config: partition-id=7 is not within 0..1\nTraceback ..."),
                       reply_to=msg)
    if msg.metadata.message_type == MessageType.QUERY:
        return Message(RecordDict({"node": ConfigRecord({"host": "box-a", "data": "partition 0 of 2",
                                                         "device": "cpu"})}), reply_to=msg)
    if msg.metadata.group_id == "2":
        return None  # round 2: too late
    return Message(RecordDict({"metrics": MetricRecord({"loss": 1.0})}), reply_to=msg)


def test_the_ledger_counts_each_boxs_rounds_and_lists_the_boxes_before_round_1(tmp_path: Path) -> None:
    # Prepare
    ledger = BoxLedger(ScriptedGrid(answer), tmp_path)
    msg = lambda node, kind, rnd="": Message(RecordDict(), node, kind, ttl=60, group_id=rnd)  # noqa: E731
    # Execute: readiness, then two rounds (box 11 misses round 2's deadline)
    ids = ledger.push_messages([msg(11, MessageType.QUERY), msg(22, MessageType.QUERY)])
    ledger.pull_messages(ids)
    before_round_1 = read_boxes(tmp_path)
    for rnd in ("1", "2"):
        ledger.pull_messages(ledger.push_messages([msg(11, MessageType.TRAIN, rnd), msg(22, MessageType.TRAIN, rnd)]))
    ledger.finish()
    # Assert
    assert before_round_1 is not None and not before_round_1["complete"]
    assert [describe(b) for b in before_round_1["boxes"]] == [
        "box 11: box-a, partition 0 of 2, cpu",
        "box 22: NOT READY: ValueError: node config: partition-id=7 is not within 0..1"]
    boxes = json.loads((tmp_path / "boxes.json").read_text())["boxes"]
    assert [(b["sampled"], b["ok"], b["failed"]) for b in boxes] == [(2, 1, 1), (2, 0, 2)]
    assert boxes[0]["errors"] == {NO_REPLY: 1}
    assert failing_boxes(boxes, 0.9) == [
        "box 22 failed all 2 rounds it was sampled for: ValueError: node config: partition-id=7 is not within 0..1"]
    assert failing_boxes(boxes, 0.5)[-1] == "3 of 4 client updates failed, more than --max-failed-fraction 0.5"
    assert failing_boxes(boxes[:1], 0.5) == []
    silent = {"node_id": 33, "ready": None, "sampled": 0, "ok": 0, "failed": 0, "errors": {}}
    assert describe(silent) == "box 33: has not answered whether it is ready"
    assert failing_boxes([silent], 0.5) == ["box 33 never became ready: no answer to the readiness query"]
