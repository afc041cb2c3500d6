"""The audio task learns: fixed-seed SimCLR lifts kNN above the random-init encoder (in-process).

Only above the random init: at a test's budget SimCLR does not yet reach the hand-made
pooled log-mel baseline (measured below: 0.35 after 60 steps, 0.41 after 90, pooled log-mel
0.42); the federated spec beats it by 0.085 on average only after 12 rounds of ~150 local
steps on each of 10 clients (docs/reproductions/objectives.md). Barlow Twins is tested with
the spec's frequency-keeping encoder (``model.params.row_bins``), with which it learns;
temporal order too, pooled on 1 s clips (federated, it needs 24 rounds to pass pooled log-mel:
docs/reproductions/objectives.md).
"""

from __future__ import annotations

import pytest

from fedsim.config import load_config
from fedsim.factory import task_for
from tests.tasks.pooled import one_thread, pretrain_pooled

pytestmark = pytest.mark.timeout(600)  # ~40 s on a quiet 2-core machine; shared CI runners are slower


@pytest.mark.slow
def test_simclr_lifts_knn_above_random_init():
    # Prepare: seed 0, the calibrated population cut to 0.5 s clips, 8 clients' clips pooled
    exp = load_config(None, {"task.name": "audio", "seed": 0, "model.name": "resnet_small", "federation.clients": 100,
                             "evaluation.knn_k": 20,
                             "task.params": {"objective": "simclr", "clip_seconds": 0.5, "eval_per_class": 20}})
    task = task_for(exp)
    # Execute: 60 SGD steps of NT-Xent on batches of 32, one thread
    with one_thread():
        before, after = pretrain_pooled(task, "audio", steps=60)
    init, trained, pooled = before["knn_top1"], after["knn_top1"], task.baselines()["knn_top1_pooled_logmel"]
    # Assert: measured 0.246 (init) -> 0.354 after 60 steps (linear probe 0.41 -> 0.53), pooled
    # log-mel 0.417, raw log-mel 0.329; chance is 1/12
    assert trained >= init + 0.06, (init, pooled, trained)


# objective, clip length, steps; measured kNN init -> trained, raw log-mel, pooled log-mel:
# barlow (its defaults), 0.5 s, 60 steps: 0.333 -> 0.438, raw 0.329, pooled 0.417;
# order (6-way segment order), 1 s, 120 steps: 0.325 -> 0.458, raw 0.308, pooled 0.375 (on 0.5 s
# clips the three segments of the 0.4 s crop are too short: 120 steps took kNN 0.333 -> 0.279)
@pytest.mark.slow
@pytest.mark.parametrize(("objective", "clip_seconds", "steps"), [("barlow", 0.5, 60), ("order", 1.0, 120)])
def test_frequency_band_encoder_lifts_knn_above_random_init_and_raw_log_mel(objective, clip_seconds, steps):
    # Prepare: as above, with simulations/audio.yaml's encoder (resnet_small keeping 8 mel bands)
    exp = load_config(None, {"task.name": "audio", "seed": 0, "model.name": "resnet_small", "federation.clients": 100,
                             "evaluation.knn_k": 20, "model.params": {"row_bins": 8},
                             "task.params": {"objective": objective, "clip_seconds": clip_seconds,
                                             "eval_per_class": 20}})
    task = task_for(exp)
    # Execute: SGD steps of the objective's loss at its defaults, one thread
    with one_thread():
        before, after = pretrain_pooled(task, "audio", steps=steps)
    init, trained, baselines = before["knn_top1"], after["knn_top1"], task.baselines()
    # Assert: both clear the random init and raw log-mel by 0.06 (measured margins above)
    assert trained >= init + 0.06, (init, baselines, trained)
    assert trained >= baselines["knn_top1_raw_input"] + 0.06, (init, baselines, trained)
