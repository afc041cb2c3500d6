"""The paper-scale specs (simulations/*_paper.yaml): every cell validates, and one cell of each
runs a round at the paper's input sizes with the counts shrunk (clients, samples, held-out set)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fedsim.bench.grid import grid_axes
from fedsim.bench.plan import BenchSpec, plan, read_bench_yaml
from fedsim.config import load_config

SIMULATIONS = Path(__file__).parents[1] / "simulations"

# spec -> (cells, what shrinks a cell to one cheap round; the input sizes stay the paper's)
PAPERS = {
    "ldawa_paper": (36, {"task.params": {"min_samples": 4, "max_samples": 4, "eval_samples": 40},
                         "federation.clients": 2, "federation.clients_per_round": 2,
                         "federation.batch_size": 4}),
    "fedrepopt_paper": (12, {"task.params": {"min_samples": 4, "max_samples": 4, "eval_samples": 40},
                             "federation.clients": 2, "federation.clients_per_round": 2,
                             "federation.batch_size": 4}),
    "fedvssl_paper": (12, {"task.params": {"min_clips": 2, "max_clips": 2, "eval_samples": 6},
                           "federation.clients": 2, "federation.clients_per_round": 2,
                           "federation.batch_size": 2, "federation.local_epochs": 1}),
    "fassl_paper": (9, {"task.params": {"min_clips": 2, "max_clips": 2, "eval_per_class": 2},
                        "federation.clients": 2, "federation.clients_per_round": 2,
                        "federation.batch_size": 2, "federation.local_epochs": 1}),
    "fssuavl_paper": (6, {"task.params": {"min_samples": 2, "max_samples": 2, "eval_per_class": 2},
                          "federation.clients": 2, "federation.clients_per_round": 2,
                          "federation.batch_size": 2, "federation.local_epochs": 1}),
    "cardiolive_paper": (9, {"task.params": {"min_subjects": 1, "max_subjects": 1, "record_s": 12.0,
                                             "eval_subjects": 2},
                             "federation.clients": 2, "federation.clients_per_round": 2,
                             "federation.local_epochs": 1}),
}


def _planned(name: str, out: Path):
    base, grid = read_bench_yaml(SIMULATIONS / f"{name}.yaml")
    return base, plan(BenchSpec(axes=grid_axes(grid, {}, []), base=base), out)


@pytest.mark.parametrize("name", sorted(PAPERS))
def test_every_cell_of_a_paper_spec_validates(tmp_path, name):
    _, planned = _planned(name, tmp_path)

    assert len(planned) == PAPERS[name][0]
    assert all(p.state == "new" and p.exp.engine.device == "auto" for p in planned)


def test_every_paper_spec_has_its_scaled_spec_and_paper_setting_in_its_header():
    for name in PAPERS:
        header = (SIMULATIONS / f"{name}.yaml").read_text().split("\nname:")[0]
        assert "fedsim bench --config " + name in header and "From the paper" in header
        assert "fedsim's choices" in header


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_one_cell_of_every_paper_spec_runs_a_round(tmp_path):
    from fedsim.engines.warm import warm_cluster
    from fedsim.launcher import simulate

    with warm_cluster():
        for name, (_, shrink) in PAPERS.items():
            base, planned = _planned(name, tmp_path / name)
            config = tmp_path / f"{name}.yaml"
            config.write_text(planned[0].exp.to_yaml())
            params = {f"task.params.{k}": v for k, v in shrink.get("task.params", {}).items()}
            overrides = {k: v for k, v in shrink.items() if k != "task.params"}
            exp = load_config(config, {**params, **overrides, "federation.rounds": 1, "evaluation.every": 1})
            run_dir = tmp_path / name / "run"

            simulate(exp, str(run_dir), quiet=True)

            model = torch.load(run_dir / "model.pt", weights_only=True)
            assert model and all(torch.isfinite(t.float()).all() for t in model.values()), name

