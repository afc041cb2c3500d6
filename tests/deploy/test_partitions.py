"""A deployed box of a generated task trains share ``partition-id`` of ``num-partitions``,
exactly as the simulated client of that id (same data, same seeds), without a data folder."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch

from fedsim import records as R
from fedsim.client.app import Resident, describe_node, node_partition
from fedsim.config import load_config
from fedsim.records import RoundContext, RunSpec
from fedsim.server.loop import copy_arrays

pytestmark = pytest.mark.timeout(120)
EXP = {"task.name": "synthetic", "model.name": "mlp", "federation.clients": 3, "federation.clients_per_round": 3,
       "partitioning.kind": "dirichlet", "partitioning.alpha": 0.3}
ROUND = RoundContext(server_round=1, aggregation=1, client_ids=(0,), reply=R.REPLY_WEIGHTS, lr=0.1, local_epochs=1,
                     batch_size=16, seed=0)


def node(**config: object) -> SimpleNamespace:
    return SimpleNamespace(node_config=config)


def test_box_k_trains_exactly_what_simulated_client_k_would() -> None:
    # Prepare
    exp = load_config(None, EXP)
    start = copy_arrays(Resident(RunSpec.from_experiment(exp)).task.build_model())
    simulated = Resident(RunSpec.from_experiment(exp))
    boxes = [Resident(RunSpec.from_experiment(exp, whole_node=True), partition=(k, 3)) for k in (0, 1)]
    # Execute: each box trains its own share, and so does the simulated client of that id
    # (copied at once: an update's tensors may be the resident model's own)
    def trained(resident: Resident, client_id: int) -> tuple[int, float, dict]:
        update = resident.train(start, client_id, ROUND, None)
        return update.num_examples, update.metrics["loss"], {k: v.clone() for k, v in update.arrays.items()}

    sim = [trained(simulated, k) for k in (0, 1)]
    box = [trained(b, b.partition[0]) for b in boxes]
    # Assert: identical to the simulated client of the same id, different between the boxes
    for s, b in zip(sim, box):
        assert b[:2] == s[:2] and all(torch.equal(b[2][k], s[2][k]) for k in s[2])
    assert box[0][1] != box[1][1] and not all(torch.equal(box[0][2][k], box[1][2][k]) for k in box[0][2])
    assert describe_node(boxes[1], node())["data"] == "partition 1 of 3"


@pytest.mark.parametrize(("config", "message"), [
    ({"partition-id": 7, "num-partitions": 2}, "partition-id=7 is not within 0..1 (num-partitions=2)"),
    ({"partition-id": 1}, "partition-id and num-partitions go together"),
    ({"partition-id": "a", "num-partitions": 2}, "must be integers"),
])
def test_a_misconfigured_box_is_refused_in_one_line(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        node_partition(node(**config))


def test_a_generated_task_needs_no_data_folder_but_a_share_and_a_folder_task_needs_its_folder() -> None:
    exp = load_config(None, EXP)
    assert node_partition(node()) is None and node_partition(node(**{"partition-id": 0, "num-partitions": 2})) == (0, 2)
    assert Resident(RunSpec.from_experiment(exp, whole_node=True), partition=(1, 2)).task is not None
    with pytest.raises(ValueError, match=re.escape("give this node its share with --node-config 'partition-id=K num-partitions=N'")):
        Resident(RunSpec.from_experiment(exp, whole_node=True), data_dir="/ignored")
    folder = RunSpec(seed=0, num_clients=2, task="image", model="resnet_small", strategy="fedavg",
                     partitioning={"kind": "iid"}, folder_data=True, whole_node=True)
    with pytest.raises(ValueError, match="give this node one with --node-config data-dir=PATH"):
        Resident(folder, partition=(0, 2))
