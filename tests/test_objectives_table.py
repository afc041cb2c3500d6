"""benchmarks/objectives.py: the paired column of the objectives table and ``--add``, which
joins new seeds to a cell's committed JSON (and refuses a JSON run with other settings); every
committed cell JSON matches its cell's current settings."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_objectives():
    """benchmarks/objectives.py as a module (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location("objectives_bench", ROOT / "benchmarks" / "objectives.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def objectives(tmp_path, monkeypatch):
    module = load_objectives()
    monkeypatch.setattr(module, "OUT", str(tmp_path))
    return module


def result(seed: int, final: float, init: float, raw: float) -> dict:
    """A seed's entry in the calibrate layout, as :func:`calibrate.run_seed` writes it."""
    return {"seed": seed, "init": {"knn_top1": init}, "baselines": {"knn_top1_raw_input": raw},
            "rounds": [{"round": 1}, {"round": 2}], "final": {"knn_top1": final}}


def test_paired_column_is_the_t_interval_of_the_per_seed_differences(objectives):
    # differences 0.1, 0.2, 0.2: mean 0.1667, std 0.0577, t(0.975, 2) = 4.303 -> half-width 0.1434
    assert objectives.paired_text([0.5, 0.6, 0.7], [0.4, 0.4, 0.5]) == "+0.167 [+0.023, +0.310]"
    assert objectives.paired_text([0.5], [0.4]) == "+0.100"
    row = objectives.table_row({"cell": "image-simclr", "raw_baseline": "knn_top1_raw_input",
                                "results": [result(0, 0.5, 0.2, 0.4), result(1, 0.6, 0.2, 0.4),
                                            result(2, 0.7, 0.2, 0.5)]})
    assert row == ("| image | simclr | knn_top1 | 0.600 ± 0.100 | 0.200 ± 0.000 | 0.433 ± 0.058 "
                   "(knn_top1_raw_input) | +0.167 [+0.023, +0.310] | 3 | 2 | learns |")


def test_verdict_needs_both_means_beaten_and_says_when_raw_is_within_noise(objectives):
    init = [0.2, 0.2, 0.2]
    assert objectives.verdict([0.5, 0.6, 0.7], init, [0.4, 0.4, 0.5]) == "learns"
    # differences +0.3, -0.1, +0.1: mean above raw, interval [-0.40, +0.60] contains 0
    assert objectives.verdict([0.7, 0.3, 0.6], init, [0.4, 0.4, 0.5]) == "learns, within noise of raw"
    assert objectives.verdict([0.4, 0.4, 0.4], init, [0.4, 0.4, 0.5]) == "**experimental**"  # below raw
    assert objectives.verdict([0.3, 0.3, 0.3], [0.3, 0.4, 0.5], [0.1, 0.1, 0.1]) == "**experimental**"  # below init


def test_add_joins_new_seeds_to_the_committed_ones_in_seed_order(objectives, tmp_path, monkeypatch):
    ran: list[int] = []

    def fake_seed_run(spec, sets, seed, threads):  # the training itself is tested elsewhere
        ran.append(seed)
        return result(seed, 0.5 + seed / 100, 0.2, 0.4)

    monkeypatch.setattr(objectives, "seed_run", fake_seed_run)
    objectives.run_cell("image-simclr", [0, 2], {})
    objectives.run_cell("image-simclr", [1, 2], {}, add=True)  # seed 2 again: the new run replaces it
    data = json.loads((tmp_path / "image-simclr.json").read_text())
    assert ran == [0, 2, 1, 2]
    assert [r["seed"] for r in data["results"]] == [0, 1, 2]
    objectives.run_cell("image-simclr", [3], {})  # without --add the file holds only the new seeds
    assert [r["seed"] for r in json.loads((tmp_path / "image-simclr.json").read_text())["results"]] == [3]


def test_add_refuses_seeds_run_with_other_settings(objectives, monkeypatch):
    monkeypatch.setattr(objectives, "seed_run", lambda spec, sets, seed, threads: result(seed, 0.5, 0.2, 0.4))
    objectives.run_cell("image-simclr", [0], {"federation.rounds": 5})
    with pytest.raises(SystemExit, match="run without --add to replace it"):
        objectives.run_cell("image-simclr", [1], {}, add=True)


def test_fedsim_list_flags_exactly_the_objectives_the_committed_table_calls_experimental():
    from fedsim.plugins import load_plugins
    from fedsim.registry import TASKS

    module = load_objectives()
    load_plugins()
    from_table = set()
    for path in sorted((ROOT / "benchmarks" / "results" / "objectives").glob("*.json")):
        data = json.loads(path.read_text())
        task, objective = data["cell"].split("-")[:2]  # video-colorize-fedavg: colorize under FedAvg
        _, final, init, base = module.cell_scores(data)
        if module.verdict(final, init, base) == "**experimental**":
            from_table.add((task, objective))
    flagged = {(task, objective) for task in TASKS.names()
               for objective in getattr(TASKS.get(task), "experimental", {})}
    assert flagged == from_table


def test_every_committed_cell_was_run_with_the_settings_its_cell_names_now():
    """A cell's JSON holds the spec and overrides it was run with; the table must not show a
    result of settings that ``CELLS`` no longer names (edit a cell, rerun it)."""
    module = load_objectives()
    for path in sorted((ROOT / "benchmarks" / "results" / "objectives").glob("*.json")):
        data = json.loads(path.read_text())
        spec, overrides, raw = module.CELLS[data["cell"]]
        assert path.stem == data["cell"]
        assert module.run_with(data, spec, overrides) and data["raw_baseline"] == raw, path.name
