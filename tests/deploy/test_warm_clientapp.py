"""The warm ClientApp: a message handed to the box's long-lived fedsim process gets fedsim's
answer back (stamped with step times), the process serves the next message with its model
resident, and it ends, taking its socket and key along, once its SuperNode's process is gone."""

from __future__ import annotations

import random
import subprocess
import time

import pytest
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

from fedsim import records as R
from fedsim.config import load_config
from fedsim.deploy import warm
from fedsim.records import RoundContext, RunSpec
from fedsim.server.loop import copy_arrays

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(autouse=True)
def inside_a_run(monkeypatch):
    """Messages can be made only inside a Flower run (as the ClientApp process is)."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_run_id", "_task_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


def test_the_warm_process_answers_with_fedsims_clientapp_and_ends_with_its_supernode(monkeypatch) -> None:
    # Prepare: a stand-in for the SuperNode's SuperExec (the forwarder's parent) and a box's context
    supernode = subprocess.Popen(["sleep", "600"])
    monkeypatch.setattr(warm.os, "getppid", lambda: supernode.pid)
    exp = load_config(None, {"task.name": "synthetic", "model.name": "mlp", "federation.clients": 2,
                             "federation.clients_per_round": 2})
    run = ConfigRecord(RunSpec.from_experiment(exp, whole_node=True).to_record())
    context = Context(run_id=1, node_id=random.getrandbits(62), node_config={"partition-id": 1, "num-partitions": 2},
                      state=RecordDict(), run_config={})
    rnd = RoundContext(server_round=1, aggregation=1, client_ids=(0,), reply=R.REPLY_WEIGHTS, lr=0.1, local_epochs=1,
                       batch_size=16, seed=exp.seed)
    from fedsim.client.app import Resident

    start = copy_arrays(Resident(RunSpec.from_experiment(exp)).task.build_model())

    def message(kind: str, content: RecordDict) -> Message:
        return Message(content, context.node_id, kind, ttl=120)

    try:
        # Execute: readiness, then a train message
        ready = warm.forward(message(MessageType.QUERY, RecordDict({R.RUN: run})), context)
        trained = warm.forward(message(MessageType.TRAIN, RecordDict({
            R.ARRAYS: ArrayRecord(start), R.RUN: run, R.ROUND: ConfigRecord(rnd.to_record())})), context)
        # Assert: fedsim's answers, the box trained its share, the steps are stamped in order
        assert ready.content.config_records["node"]["data"] == "partition 1 of 2"
        assert not trained.has_error() and trained.content.metric_records[R.METRICS][R.NUM_EXAMPLES] > 0
        steps = trained.content.metric_records[warm.STEPS]
        assert steps["process-started"] <= steps["entered"] <= steps["handled"] <= steps["done"] <= steps["returned"]
        sock = warm.socket_path(context.node_id)
        assert sock.exists() and (sock.parent.stat().st_mode & 0o777) == 0o700
    finally:
        supernode.kill()
        supernode.wait()
    deadline = time.monotonic() + 30
    while sock.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not sock.exists() and not sock.with_suffix(".key").exists()
