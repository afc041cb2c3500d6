"""The paired comparison table, the reference strategy, the process time and the provenance
table, from hand-made cells."""

from __future__ import annotations

import math

import pytest

from fedsim.bench.results import CellResult, process_seconds, read_cell, record_process_time
from fedsim.bench.tables import (bench_tables, comparisons, cost_table, incomplete_table, paired_table,
                                 provenance_table, reference_strategy)

SUMMARY = {"primary_metric": "acc", "acc_best_round": 2, "rounds": 2, "wall_seconds": 10.0}


def cell(strategy: str, seed: int, acc: float | None, alpha: float = 0.1) -> CellResult:
    values = {"strategy": strategy, "alpha": alpha, "seed": seed}
    return CellResult(f"{strategy}-{seed}-{alpha}", values, {**SUMMARY, "acc": acc}, [], {"acc": True})


def test_the_reference_is_fedavg_when_the_grid_has_it_else_its_first_strategy():
    assert reference_strategy([cell("ldawa", 0, 0.5), cell("fedavg", 0, 0.4)]) == "fedavg"
    assert reference_strategy([cell("ldawa", 0, 0.5), cell("fedvssl", 0, 0.4)]) == "ldawa"
    assert reference_strategy([cell("ldawa", 0, 0.5), cell("ldawa", 1, 0.4)]) is None  # nothing to compare


def test_paired_rows_use_only_the_seeds_both_strategies_ran():
    cells = [cell("fedavg", 0, 0.4), cell("fedavg", 1, 0.5), cell("fedavg", 2, 0.55),
             cell("ldawa", 0, 0.5), cell("ldawa", 1, 0.7), cell("ldawa", 3, 0.9),  # seed 3: no fedavg cell
             cell("fedavg", 0, 0.25, alpha=1.0), cell("ldawa", 0, 0.5, alpha=1.0)]

    table = paired_table(cells, ["strategy", "alpha"], "acc", "fedavg")

    assert table.headers == ["alpha", "strategy", "n", "Δ per seed", "mean Δ", "95 % CI", "p"]
    # alpha 0.1: seeds 0 and 1, Δ = 0.1 and 0.2: mean 0.15, std √0.005, half-width 12.7062 · 0.05
    half = 12.7062 * 0.05
    assert table.rows[0][:5] == ["0.1", "ldawa", "2", "0: +0.100; 1: +0.200", "+0.150"]
    assert table.rows[0][5] == f"[{0.15 - half:+.3f}, {0.15 + half:+.3f}]"
    assert 1 - 2 * math.atan(3) / math.pi == pytest.approx(0.2048, abs=1e-4)  # t = 0.15/0.05 = 3, 1 dof
    assert table.rows[0][6] == "0.205"
    assert table.rows[1] == ["1.0", "ldawa", "1", "0: +0.250", "+0.250", "–", "–"]  # one seed: no interval
    assert "positive Δ is better" in table.note


def test_a_grid_of_one_strategy_compares_each_varied_axis_against_its_first_value():
    # FedVSSL's α × SWA grid: one strategy, so no strategy comparison, one per varied axis
    def vssl(alpha: float, swa: bool, seed: int, acc: float) -> CellResult:
        values = {"strategy": "fedvssl", "alpha": alpha, "swa": swa, "seed": seed}
        return CellResult(f"{alpha}-{swa}-{seed}", values, {**SUMMARY, "acc": acc}, [], {"acc": True})
    accs = {(0.0, True): [0.30, 0.29, 0.31], (0.0, False): [0.20, 0.25, 0.30],
            (0.9, True): [0.33, 0.28, 0.31], (0.9, False): [0.26, 0.18, 0.25]}
    cells = [vssl(a, w, seed, acc) for (a, w), row in accs.items() for seed, acc in enumerate(row)]
    labels = ["strategy", "alpha", "swa"]

    tables = bench_tables(cells, labels, None)
    swa = paired_table(cells, labels, "acc", True, axis="swa")

    assert comparisons(cells, labels) == [("alpha", 0.0), ("swa", True)]
    assert [t.title for t in tables] == ["acc (primary; higher is better)", "acc: paired difference against alpha=0.0",
                                         "acc: paired difference against swa=True", "cost per run"]
    assert swa.headers == ["strategy", "alpha", "swa", "n", "Δ per seed", "mean Δ", "95 % CI", "p"]
    # α = 0.9: Δ = −0.07, −0.10, −0.06: mean −0.0767, std 0.0208, half-width 4.3027 · 0.0208 / √3
    half = 4.3027 * math.sqrt(((0.07 - 0.23 / 3) ** 2 + (0.10 - 0.23 / 3) ** 2 + (0.06 - 0.23 / 3) ** 2) / 2) / math.sqrt(3)
    assert swa.rows[1][:6] == ["fedvssl", "0.9", "False", "3", "0: -0.070; 1: -0.100; 2: -0.060", "-0.077"]
    assert swa.rows[1][6] == f"[{-0.23 / 3 - half:+.3f}, {-0.23 / 3 + half:+.3f}]"
    assert swa.rows[0][:5] == ["fedvssl", "0.0", "False", "3", "0: -0.100; 1: -0.040; 2: -0.010"]
    assert swa.note.startswith("Δ = swa − swa=True")
    # several strategies: only the strategy comparison, as before
    assert comparisons([cell("ldawa", 0, 0.5), cell("fedavg", 0, 0.4, alpha=1.0)], ["strategy", "alpha"]) == \
        [("strategy", "fedavg")]


def test_process_time_sums_the_cells_processes_but_failed_attempts_and_reaches_the_cost_table(tmp_path):
    run = tmp_path / "c0"
    run.mkdir()
    (run / "summary.json").write_text('{"primary_metric": "acc", "acc": 0.5, "wall_seconds": 4.0, "rounds": 2}')
    record_process_time(tmp_path, "c0", started_at="2026-01-01T00:00:00Z", seconds=99.0, returncode=1)  # failed
    record_process_time(tmp_path, "c0", started_at="2026-01-01T00:00:00Z", seconds=5.5, returncode=130)
    record_process_time(tmp_path, "c0", started_at="2026-01-01T00:01:00Z", seconds=7.0, returncode=0)
    with open(tmp_path / "logs" / "c0.times.jsonl", "a") as fh:
        fh.write('{"started_at": "2026-01-01T00:02:0')  # a line cut by a crash

    found = read_cell(run, "c0", {"strategy": "fedavg"})
    table = cost_table([found], ["strategy"])

    assert process_seconds(tmp_path, "c0") == 12.5 and found.process_seconds == 12.5
    assert process_seconds(tmp_path, "other") is None
    assert table.headers[3:5] == ["process s", "loop s"] and table.rows[0][3:5] == ["12.5", "4.0"]


def test_provenance_table_shows_the_bench_command_beside_its_runs():
    run = {"fedsim_version": "1.0", "command": "fedsim run a", "started_at": "2026-01-01T00:00:00Z"}
    other = {**run, "command": "fedsim run b", "started_at": "2026-01-01T00:05:00Z"}

    table = provenance_table({"fedsim_version": "1.0", "command": "fedsim bench"}, [run, other])
    single = provenance_table(None, [run])

    assert table.rows == [["fedsim_version", "1.0", "1.0"],
                          ["command", "fedsim bench", "2 command lines (each run's summary.json has its own)"],
                          ["started_at", "–", "2026-01-01T00:00:00Z … 2026-01-01T00:05:00Z"]]
    assert single.rows == [["fedsim_version", "1.0"], ["command", "fedsim run a"],
                           ["started_at", "2026-01-01T00:00:00Z"]]


def test_cells_that_lost_clients_are_listed_with_their_rounds_counts_and_first_error():
    # Prepare: round 0 (evaluation only), then rounds of 5 sampled clients; one cell clean
    ok = {"clients_sampled": 5, "clients_failed": 0, "clients_rejected": 0, "skipped": False, "errors": {}}
    clean = cell("fedavg", 0, 0.4)
    clean.rounds[:] = [{"round": 0}, {"round": 1, **ok}, {"round": 2, **ok}]
    hit = cell("fedavg", 1, 0.3)
    hit.rounds[:] = [{"round": 0}, {"round": 1, **ok},
                     {"round": 2, **ok, "clients_failed": 2, "errors": {"timeout": "no reply | in 30 s"}},
                     {"round": 3, **ok, "clients_failed": 4, "clients_rejected": 1, "skipped": True,
                      "errors": {"nan": "loss is nan"}}]
    # Execute
    table = incomplete_table([clean, hit])
    # Assert: only the hit cell, 2 of its 3 training rounds, 6 failed, 1 rejected, 1 skipped
    assert incomplete_table([clean]) is None
    assert table.rows == [["fedavg-1-0.1", "2 of 3", "6", "1", "1", "no reply \\| in 30 s"]]
