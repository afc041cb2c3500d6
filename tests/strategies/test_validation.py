"""check_update: every kind of bad reply is named, a good one passes."""

import pytest
import torch

from fedsim.strategies.validation import check_update
from tests.conftest import make_update

EXPECTED = {"w": torch.zeros(2), "steps": torch.tensor(0)}


@pytest.mark.parametrize("update, reason", [
    # case: valid
    (make_update(0, n=3, w=[1.0, 2.0], steps=1), None),
    # case: NaN and +Inf values
    (make_update(0, n=3, w=[float("nan"), 2.0], steps=1), "non-finite"),
    (make_update(0, n=3, w=[float("inf"), 2.0], steps=1), "non-finite"),
    # case: wrong shape / dtype
    (make_update(0, n=3, w=[1.0, 2.0, 3.0], steps=1), "wrong-shape"),
    (make_update(0, n=3, w=torch.tensor([1.0, 2.0], dtype=torch.float64), steps=1), "wrong-dtype"),
    # case: missing and extra tensors
    (make_update(0, n=3, w=[1.0, 2.0]), "missing-tensor"),
    (make_update(0, n=3, w=[1.0, 2.0], steps=1, extra=[0.0]), "unexpected-tensor"),
    # case: bad num-examples
    (make_update(0, n=0, w=[1.0, 2.0], steps=1), "bad-num-examples"),
    (make_update(0, n=-4, w=[1.0, 2.0], steps=1), "bad-num-examples"),
    # case: non-finite metric
    (make_update(0, n=3, loss=float("nan"), w=[1.0, 2.0], steps=1), "non-finite-metric"),
])
def test_check_update(update, reason):
    assert check_update(update, EXPECTED) == reason


def test_missing_num_examples_is_rejected():
    update = make_update(0, n=3, w=[1.0, 2.0], steps=1)
    update.num_examples = None  # a reply without num-examples

    assert check_update(update, EXPECTED) == "bad-num-examples"
