"""Communication accounting: the bytes a round sends down and up equal the tensors' sizes
(numel × element size), counted per client; FedVSSL clients send the backbone only."""

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedsim import records as R
from fedsim.records import REPLY_SUMS, REPLY_WEIGHTS
from fedsim.server.replies import RoundTally, fold_content, payload_bytes
from fedsim.strategies.fedavg import FedAvg
from fedsim.strategies.fedvssl import FedVSSL, FedVSSLParams

# A tiny model: backbone 3×4 float32 + 4 float32 + an int64 counter, head 4×2 float64.
MODEL = {
    "backbone.w": torch.zeros(3, 4),
    "backbone.b": torch.zeros(4),
    "backbone.bn.num_batches_tracked": torch.tensor(7),
    "head.w": torch.zeros(4, 2, dtype=torch.float64),
}
BACKBONE_BYTES = 3 * 4 * 4 + 4 * 4 + 8  # 72
MODEL_BYTES = BACKBONE_BYTES + 4 * 2 * 8  # 136


def test_payload_bytes_is_numel_times_element_size_for_tensors_and_records():
    assert payload_bytes(MODEL) == MODEL_BYTES
    assert payload_bytes(ArrayRecord(MODEL)) == MODEL_BYTES  # the .npy headers are not counted
    assert payload_bytes({}) == 0


def _weights_reply(arrays):
    return RecordDict({R.ARRAYS: ArrayRecord(arrays),
                       R.METRICS: MetricRecord({R.NUM_EXAMPLES: 5, R.LOSS: 1.0})})


def _sums_reply(done: int, **counts: int):
    metrics = {R.NUM_CLIENTS_DONE: done, "loss-sum": float(done), **counts}
    sums = {"w:backbone.w": torch.ones(3, 4)} if done else {}
    return RecordDict({R.ARRAYS: ArrayRecord(sums), R.METRICS: MetricRecord(metrics), R.ERRORS: ConfigRecord({})})


def test_a_weights_reply_counts_its_own_tensors_rejected_or_not():
    acc = FedAvg().new_accumulator(MODEL, 1)
    tally = RoundTally()

    fold_content(_weights_reply({k: v + 1 for k, v in MODEL.items()}), [3], acc, REPLY_WEIGHTS, tally)
    fold_content(_weights_reply({"backbone.w": torch.zeros(3, 4)}), [4], acc, REPLY_WEIGHTS, tally)  # rejected

    assert tally.ok == 1 and sum(tally.rejected.values()) == 1
    assert tally.bytes_up == MODEL_BYTES + 48


@pytest.mark.parametrize(("strategy", "per_client"), [
    (FedAvg(), MODEL_BYTES),  # case: every tensor goes up
    (FedVSSL(FedVSSLParams(backbone_prefix="backbone.")), BACKBONE_BYTES),  # case: the backbone only
])
def test_cohort_sums_count_what_each_client_would_send(strategy, per_client):
    acc = strategy.new_accumulator(MODEL, 1)
    tally = RoundTally()

    # a worker trained 4 clients: 2 folded, 1 rejected by validation (it sent), 1 raised (it did not)
    fold_content(_sums_reply(2, **{"rejected:nan": 1, "failed:client-exception": 1}), [0, 1, 2, 3], acc,
                 REPLY_SUMS, tally)
    fold_content(_sums_reply(0, **{"failed:timeout": 2}), [4, 5], acc, REPLY_SUMS, tally)

    assert tally.bytes_up == 3 * per_client


def test_fedvssl_sends_less_up_than_fedavg():
    up = {}
    for name, strategy in (("fedavg", FedAvg()), ("fedvssl", FedVSSL(FedVSSLParams(backbone_prefix="backbone.")))):
        tally = RoundTally()
        fold_content(_sums_reply(3), [0, 1, 2], strategy.new_accumulator(MODEL, 1), REPLY_SUMS, tally)
        up[name] = tally.bytes_up

    assert up["fedvssl"] < up["fedavg"]
    assert (up["fedavg"], up["fedvssl"]) == (3 * MODEL_BYTES, 3 * BACKBONE_BYTES)
