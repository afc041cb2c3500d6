"""The cohort worker folds by the server's aggregation index, read from the train message."""

from types import SimpleNamespace

import pytest
import torch
from flwr.app import ConfigRecord

from fedsim import records as R
from fedsim.client.app import aggregation_index, train_cohort
from fedsim.strategies.ldawa import LDAWA
from tests.conftest import make_update

GLOBAL = {"w": torch.tensor([1.0, 0.0])}


@pytest.mark.parametrize(("config", "expected"), [
    ({R.SERVER_ROUND: 5, R.AGGREGATION: 3}, 3),  # case: two rounds were skipped
    ({R.SERVER_ROUND: 5}, 5),  # case: a sender without the key (older server): the round
])
def test_aggregation_index_from_the_config(config, expected):
    assert aggregation_index(ConfigRecord(config)) == expected


@pytest.mark.parametrize(("aggregation", "warmup_keys"), [
    (3, True),  # case: round 5 after two skipped rounds is the 3rd aggregation: FedAvg warm-up sums
    (4, False),  # case: the 4th aggregation: L-DAWA's cosine-scaled sums
])
def test_cohort_worker_folds_by_the_aggregation_index(aggregation, warmup_keys):
    resident = SimpleNamespace(
        strategy=LDAWA(), exp=SimpleNamespace(federation=SimpleNamespace(round_timeout=None)),
        train=lambda global_arrays, cid, server_round, store: make_update(cid, w=[2.0, float(cid)]))

    reply = train_cohort(resident, GLOBAL, [0, 1], 5, None, aggregation=aggregation)

    keys = set(reply[R.ARRAYS].keys())
    assert ("w:w" in keys, "d:w" in keys) == (warmup_keys, not warmup_keys)
