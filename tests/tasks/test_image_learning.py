"""The image task learns: fixed-seed BYOL with the recipe of ``simulations/byol.yaml`` lifts kNN
above the random-init encoder (in-process, pooled).

Only above the random init: raw-pixel kNN (0.579 here) is beaten by the federated spec after
its 20 rounds of ~60 local steps on each of 10 clients (docs/reproductions/objectives.md), a
budget no test can afford; 300 pooled steps reach about 0.33.
"""

from __future__ import annotations

import pytest

from fedsim.config import load_config
from fedsim.factory import task_for
from tests.tasks.pooled import one_thread, pretrain_pooled

pytestmark = pytest.mark.timeout(600)  # ~30 s on a quiet 2-core machine; shared CI runners are slower


@pytest.mark.slow
def test_byol_with_the_specs_predictor_lr_lifts_knn_above_random_init():
    # Prepare: seed 0, the demo population at 16 px, BYOL with simulations/byol.yaml's task
    # parameters (tau 0.99, predictor at 10x the lr); 8 clients' images pooled (765)
    exp = load_config(None, {"task.name": "image", "seed": 0, "model.name": "resnet_small",
                             "federation.clients": 1000, "evaluation.knn_k": 20,
                             "task.params": {"objective": "byol", "image_size": 16, "byol_predictor_lr": 10}})
    task = task_for(exp)
    # Execute: 300 SGD steps (lr 0.05, momentum 0.9, weight decay 5e-4 as in the spec) of the
    # symmetrised BYOL loss, the target following by EMA; one thread
    with one_thread():
        before, after = pretrain_pooled(task, "image", steps=300, weight_decay=5e-4)
    init, trained = before["knn_top1"], after["knn_top1"]
    # Assert: measured 0.149 (init) -> 0.334 after 300 steps (linear probe 0.30 -> 0.52);
    # raw pixels 0.579
    assert trained >= init + 0.10, (init, trained)
