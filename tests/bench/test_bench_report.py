"""fedsim report rebuilds a bench's files (same table) or a run's report from what is on disk."""

from __future__ import annotations

import shutil

from typer.testing import CliRunner

from fedsim.bench.report import build_report
from fedsim.cli import app

FILES = ("bench.csv", "bench.md", "report.html")


def report(*args: str):
    return CliRunner().invoke(app, ["report", *args], catch_exceptions=False)


def test_report_reproduces_the_bench_tables_from_files(tiny_bench, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bench, copy)
    for name in FILES:
        (copy / name).unlink()
    shutil.rmtree(copy / "plots")

    result = report(str(copy))

    assert result.exit_code == 0, result.output
    for name in ("bench.csv", "bench.md"):
        assert (copy / name).read_text() == (tiny_bench / name).read_text().replace(tiny_bench.name, copy.name)
    assert sorted(p.name for p in (copy / "plots").glob("*.png")) == sorted(
        p.name for p in (tiny_bench / "plots").glob("*.png"))
    assert "data:image/png;base64," in (copy / "report.html").read_text()


def test_a_folder_of_runs_without_bench_json_is_read_by_the_config_keys_that_differ(tiny_bench, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    for cell in tiny_bench.iterdir():
        if (cell / "summary.json").is_file():
            shutil.copytree(cell, runs / cell.name.replace(",", "-"))

    result = build_report(runs)

    assert (result.finished, result.total) == (4, 4)
    assert (runs / "bench.csv").read_text().splitlines()[0].startswith("cell,strategy,seed,")
    assert "| fedavg | 2 |" in (runs / "bench.md").read_text()


def test_report_of_one_run_writes_its_html_and_curves(tiny_bench, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(next(p for p in tiny_bench.iterdir() if (p / "summary.json").is_file()), run)
    (run / "curves.png").unlink()

    result = report(str(run))

    html = (run / "report.html").read_text()
    assert result.exit_code == 0, result.output
    assert (run / "curves.png").is_file()
    assert "knn_top1_best_round" in html and "bytes_up" in html and "data:image/png;base64," in html
    assert "<h2>provenance</h2>" in html and "flwr_version" in html and (run / "curves.pdf").is_file()


def test_report_of_a_directory_that_is_neither_exits_2(tmp_path):
    result = report(str(tmp_path))

    assert result.exit_code == 2 and "holds no bench" in result.output
