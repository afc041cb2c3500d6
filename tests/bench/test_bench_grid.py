"""The grid: axes from flags and YAML, cell names, and bad values refused with one line (exit 2)
before anything runs."""

from __future__ import annotations

import pytest

from fedsim.bench.grid import grid_axes, expand
from fedsim.bench.plan import read_bench_yaml
from fedsim.config import ConfigError
from tests.bench.conftest import TINY, bench


def test_axes_are_ordered_and_cells_named_by_their_values():
    axes = grid_axes({"seeds": [0, 1], "federation.local_epochs": [1, 5], "strategies": ["fedavg"]},
                     {"strategies": "fedavg,ldawa", "tasks": None, "alpha": "0.1", "seeds": None}, [])

    cells = expand(axes)

    assert [a.label for a in axes] == ["strategy", "alpha", "local_epochs", "seed"]
    assert len(cells) == 2 * 1 * 2 * 2
    assert cells[0].name == "strategy=fedavg,alpha=0.1,local_epochs=1,seed=0"
    assert cells[0].values == {"strategy.name": "fedavg", "partitioning.alpha": 0.1,
                               "federation.local_epochs": 1, "seed": 0}
    assert cells[-1].name == "strategy=ldawa,alpha=0.1,local_epochs=5,seed=1"


@pytest.mark.parametrize(("section", "flags", "extra", "message"), [
    (None, {"seeds": ""}, [], "grid seeds: empty list"),  # case: --seeds ""
    ({"seeds": []}, {}, [], "grid seeds: empty list"),  # case: YAML seeds: []
    ({"colour": [1]}, {}, [], "unknown axis 'colour'"),  # case: not an axis or a config key
    (None, {"seeds": "0,0"}, [], "0 appears twice"),  # case: duplicate value
    (None, {}, ["federation.lr"], "expected KEY=V1,V2"),  # case: --axis without values
])
def test_bad_axes_are_one_line_errors(section, flags, extra, message):
    with pytest.raises(ConfigError, match=message):
        grid_axes(section, flags, extra)


@pytest.mark.parametrize(("args", "message"), [
    (["--strategies", "fedavg,nope"], "strategy.name"),  # case: unknown strategy
    (["--alpha", "0"], "partitioning.alpha"),  # case: α = 0
    (["--alpha", "0.5,-1"], "partitioning.alpha"),  # case: α < 0
    (["--seeds", ""], "grid seeds: empty list"),  # case: empty seed list
    (["--seeds", ","], "grid seeds: empty list"),  # case: only separators
    (["--tasks", "synthetic,nope"], "task.name"),  # case: unknown task
    (["--parallel", "999"], "--parallel"),  # case: more cells at once than cores
    (["--set", "seed=3"], "seed is a grid axis"),  # case: an override fighting an axis
    (["--target", "nope=0.5"], "has no metric 'nope'"),  # case: target metric the task lacks
    (["--tracker", "wandb"], "unknown tracker 'wandb'"),  # case: tracker that does not exist
    (["--set", "partitioning.kind=iid"], "alpha axis needs dirichlet"),  # case: α without Dirichlet
])
def test_bad_grid_values_exit_2_with_one_line_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "b"
    result = bench(*TINY, "--alpha", "0.5", *args, "--out", str(out))

    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not out.exists()


def test_a_yaml_grid_plans_every_cell(tmp_path):
    path = tmp_path / "bench.yaml"
    path.write_text("task: {name: synthetic, params: {image_size: 8}}\nmodel: {name: mlp}\n"
                    "grid:\n  strategies: [fedavg, ldawa]\n  seeds: [0, 1, 2]\n  federation.local_epochs: [1, 5]\n")

    result = bench("--config", str(path), "--rounds", "3", "--out", str(tmp_path / "b"), "--check")

    lines = result.stdout.splitlines()  # stderr: the L-DAWA warm-up warning (3 rounds)
    assert result.exit_code == 0, result.output
    assert len(lines) == 12 and all(line.split()[:2] == ["new", "0/3"] for line in lines)
    assert lines[0].endswith("strategy=fedavg,local_epochs=1,seed=0")


def test_a_directory_that_is_no_bench_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")

    result = bench(*TINY, "--out", str(tmp_path))

    assert result.exit_code == 2 and "is not a bench directory" in result.output


@pytest.mark.parametrize(("name", "cells", "first"), [
    ("ldawa_vs_fedavg", 12, "strategy=fedavg,local_epochs=1,seed=0"),
    ("fedrepopt", 12, "strategy=fedrepopt,model=repopt_vgg,seed=0"),
    ("fassl_objectives", 9, "objective=simclr,seed=0"),  # extends: audio.yaml
])
def test_the_paper_claims_in_simulations_are_valid_grids(tmp_path, name, cells, first):
    from pathlib import Path

    from fedsim.bench.grid import grid_axes
    from fedsim.bench.plan import BenchSpec, plan, read_bench_yaml

    base, grid = read_bench_yaml(Path(__file__).parents[2] / "simulations" / f"{name}.yaml")

    planned = plan(BenchSpec(axes=grid_axes(grid, {}, []), base=base), tmp_path)

    assert len(planned) == cells and planned[0].cell.name == first
    assert all(p.state == "new" for p in planned)
    if name == "fassl_objectives":
        assert planned[0].exp.federation.rounds == 12 and planned[0].exp.task.name == "audio"


def test_a_cell_holding_a_run_with_other_settings_is_refused(tmp_path):
    import yaml

    from fedsim.bench.grid import grid_axes
    from fedsim.bench.plan import BenchSpec, plan
    from fedsim.config import load_config

    spec = BenchSpec(axes=grid_axes(None, {"seeds": "0"}, []), base={"task": {"name": "synthetic"}},
                     overrides={"task.params.image_size": 8})
    cell = tmp_path / "seed=0"
    cell.mkdir()
    config = yaml.safe_load(load_config(None, {"task.name": "synthetic"}).to_yaml())  # image_size unset there
    del config["heterogeneity"]  # as if fedsim added the section after this run: not compared
    (cell / "config.yaml").write_text(yaml.safe_dump(config))
    (cell / "rounds.jsonl").write_text('{"round": 0}\n')

    with pytest.raises(ConfigError, match=r"other settings \(task.params: \{\} there"):
        plan(spec, tmp_path)


def test_a_bench_naming_another_backbone_than_the_file_it_extends_drops_that_files_options(tmp_path):
    # Prepare: an experiment whose backbone has an option, a bench extending it with another backbone
    (tmp_path / "base.yaml").write_text("task: {name: audio}\nmodel: {name: resnet_small, params: {row_bins: 8}}\n")
    (tmp_path / "bench.yaml").write_text("extends: base.yaml\nmodel: {name: audio_rep_inceptionnext}\n"
                                         "grid: {seeds: [0]}\n")
    # Execute
    base, grid = read_bench_yaml(tmp_path / "bench.yaml")
    # Assert
    assert base["model"] == {"name": "audio_rep_inceptionnext"}
    assert grid == {"seeds": [0]}


def test_a_model_name_grid_axis_drops_the_base_backbones_options_in_the_other_cells(tmp_path):
    from fedsim.bench.plan import BenchSpec, plan

    # Prepare: a base whose backbone has an option, a grid over that backbone and another one
    (tmp_path / "bench.yaml").write_text("task: {name: audio}\nmodel: {name: resnet_small, params: {row_bins: 8}}\n"
                                         "grid: {model.name: [resnet_small, audio_rep_inceptionnext], seeds: [0]}\n")
    base, grid = read_bench_yaml(tmp_path / "bench.yaml")
    # Execute
    planned = plan(BenchSpec(axes=grid_axes(grid, {}, []), base=base), tmp_path / "out")
    # Assert: the base's own backbone keeps its option, the other starts from none
    params = {p.exp.model.name: p.exp.model.params for p in planned}
    assert params == {"resnet_small": {"row_bins": 8}, "audio_rep_inceptionnext": {}}
