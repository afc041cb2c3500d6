"""Both engines train the same global model (DESIGN.md, "Two engines, one API").

Real Flower/Ray simulations of the benchmark workload (synthetic task, MLP): the flower
engine (one SuperNode and one reply per client) and the cohort engine (two workers that
each reply with the partial sums of their clients) must end with the same weights up to
float summation order.
"""

import pytest
import torch

from fedsim.config import load_config
from fedsim.engines.runtime import simulate

SMALL = {"task.name": "synthetic", "model.name": "mlp", "federation.clients": 8,
         "federation.clients_per_round": 6, "federation.rounds": 2,
         "evaluation.linear_probe": False, "evaluation.every": 2}


def _final_model(engine, tmp_path, **extra):
    exp = load_config(None, {**SMALL, "engine.name": engine, **extra})
    run_dir = tmp_path / engine / "run"
    simulate(exp, str(run_dir), quiet=True)
    return torch.load(run_dir / "model.pt", weights_only=True)


@pytest.mark.timeout(300)
def test_flower_and_cohort_engines_give_the_same_global_model(tmp_path):
    flower = _final_model("flower", tmp_path)
    cohort = _final_model("cohort", tmp_path, **{"engine.workers": 2})

    assert flower.keys() == cohort.keys()
    for name, value in flower.items():
        torch.testing.assert_close(cohort[name], value, rtol=1e-5, atol=1e-5)
