"""The cohort worker folds by the server's aggregation index, read from the round record."""

from types import SimpleNamespace

import pytest
import torch

from fedsim import records as R
from fedsim.client.app import train_cohort
from fedsim.records import RoundContext
from fedsim.strategies.ldawa import LDAWA
from tests.conftest import make_update

GLOBAL = {"w": torch.tensor([1.0, 0.0])}


@pytest.mark.parametrize(("aggregation", "warmup_keys"), [
    (3, True),  # case: round 5 after two skipped rounds is the 3rd aggregation: FedAvg warm-up sums
    (4, False),  # case: the 4th aggregation: L-DAWA's cosine-scaled sums
])
def test_cohort_worker_folds_by_the_aggregation_index(aggregation, warmup_keys):
    resident = SimpleNamespace(hooks=LDAWA().client_hooks(),
                               train=lambda global_arrays, cid, ctx, store: make_update(cid, w=[2.0, float(cid)]))
    ctx = RoundContext(server_round=5, aggregation=aggregation, client_ids=(0, 1), reply=R.REPLY_SUMS, lr=0.1,
                       local_epochs=1, batch_size=8, seed=0)

    reply = train_cohort(resident, GLOBAL, [0, 1], RoundContext.from_record(ctx.to_record()), None)

    keys = set(reply[R.ARRAYS].keys())
    assert ("w:w" in keys, "d:w" in keys) == (warmup_keys, not warmup_keys)
