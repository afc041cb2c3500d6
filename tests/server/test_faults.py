"""Fault-injection matrix: every kind of bad client is rejected or counted, and the global
equals the aggregation of the good clients only — for FedAvg, L-DAWA, FedVSSL and median.

Runs the real client code (``train_one`` for the flower engine's reply shape,
``train_cohort`` for the cohort engine's) and the real server folding (``fold_reply``),
in-process; ``tests/server/test_e2e.py`` runs the same through Flower and Ray.
"""

import time

import pytest
import torch

from fedsim.client.app import train_cohort, train_one
from fedsim.records import REPLY_SUMS, REPLY_WEIGHTS
from fedsim.client.faults import InjectedClientError
from fedsim.client.state import ClientStateStore
from fedsim.config import load_config
from fedsim.server.loop import copy_arrays
from fedsim.server.replies import RoundTally, fold_content
from tests.conftest import resident_of, round_of

# client id -> injected fault; clients 9, 10, 11 are good
FAULTS = {"nan": [0], "inf": [1], "wrong-shape": [2], "wrong-dtype": [3], "missing-tensor": [4],
          "no-num-examples": [5], "negative-num-examples": [6], "exception": [7], "timeout": [8]}
GOOD = [9, 10, 11]
EXPECTED_REJECTED = {"non-finite": 2, "wrong-shape": 1, "wrong-dtype": 1, "missing-tensor": 1,
                     "bad-num-examples": 2}
EXPECTED_FAILED = {"client-exception": 1, "timeout": 1}
ROUND = 5  # past L-DAWA's warm-up, and FedVSSL's SWA is active


def _resident(strategy, tmp_path):
    exp = load_config(None, {
        "strategy.name": strategy, "federation.clients": 12, "federation.clients_per_round": 12,
        "federation.round_timeout": 1.0, "faults": FAULTS,
        "task.params": {"image_size": 12, "min_samples": 8, "max_samples": 8}, "model.name": "resnet_small"})
    resident = resident_of(exp)
    global_arrays = copy_arrays(resident.task.build_model())
    # warm up (data partitioner, first backward) so only the injected timeout is slow
    train_one(resident, global_arrays, GOOD[0], round_of(exp, 1), ClientStateStore(tmp_path / "warm"))
    return resident, global_arrays, round_of(exp, ROUND)


def _reference(resident, global_arrays, rnd, store):
    acc = resident.strategy.new_accumulator(global_arrays, ROUND)
    for cid in GOOD:
        acc.accumulate(resident.train(global_arrays, cid, rnd, store))
    return acc.finalize()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("strategy", ["fedavg", "ldawa", "fedvssl", "median"])
@pytest.mark.parametrize("reply", [REPLY_WEIGHTS, REPLY_SUMS])
def test_bad_clients_never_reach_the_global(strategy, reply, tmp_path):
    resident, global_arrays, rnd = _resident(strategy, tmp_path)
    store = ClientStateStore(tmp_path / "state")
    acc = resident.strategy.new_accumulator(global_arrays, ROUND)
    tally = RoundTally()

    if reply == REPLY_WEIGHTS:
        timeout = rnd.round_timeout
        for cid in sorted(sum(FAULTS.values(), []) + GOOD):
            began = time.perf_counter()
            try:
                content = train_one(resident, global_arrays, cid, rnd, store)
            except InjectedClientError:  # Flower turns this into an error reply
                tally.failed["client-exception"] += 1
                continue
            if time.perf_counter() - began > timeout:  # the server stops waiting at its deadline
                tally.failed["timeout"] += 1
                continue
            fold_content(content, [cid], acc, reply, tally)
    else:
        content = train_cohort(resident, global_arrays, list(range(12)), rnd, store)
        fold_content(content, list(range(12)), acc, reply, tally)
    result = acc.finalize()

    assert tally.ok == len(GOOD)
    assert dict(tally.rejected) == EXPECTED_REJECTED
    assert dict(tally.failed) == EXPECTED_FAILED
    expected = _reference(resident, global_arrays, rnd, ClientStateStore(tmp_path / "ref"))
    for name, value in expected.items():
        assert torch.isfinite(result[name].float()).all()
        torch.testing.assert_close(result[name], value, rtol=1e-5, atol=1e-6)
