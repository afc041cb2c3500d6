"""fedsim bench end to end: a tiny grid writes its tables, plots and HTML; a rerun starts no
process; an interrupted cell resumes to the same table; bytes are the model's sizes."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import yaml

from fedsim.bench import runner as runner_module
from tests.bench.conftest import BACKBONE_BYTES, HAS_TENSORBOARD, MODEL_BYTES, TINY, bench

CELLS = ["strategy=fedavg,task=synthetic,seed=0", "strategy=fedavg,task=synthetic,seed=1",
         "strategy=fedvssl,task=synthetic,seed=0", "strategy=fedvssl,task=synthetic,seed=1"]
# columns that measure time, so differ between two runs of the same cell
TIMING = {"process_seconds", "wall_seconds", "rounds_seconds", "updates_per_s"}


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_tiny_grid_writes_csv_markdown_plots_and_html(tiny_bench):
    rows = read_csv(tiny_bench / "bench.csv")
    md = (tiny_bench / "bench.md").read_text()
    html = (tiny_bench / "report.html").read_text()

    assert [r["cell"] for r in rows] == CELLS
    assert all((tiny_bench / cell / "summary.json").is_file() for cell in CELLS)
    for column in ("strategy", "seed", "knn_top1", "knn_top1_best", "knn_top1_init", "knn_top1_raw_input",
                   "linear_top1", "rounds_to_knn_top1_0.1", "wall_seconds", "updates_per_s", "bytes_down", "bytes_up"):
        assert column in rows[0], column
    assert "## knn_top1 (primary; higher is better)" in md and "95 % CI" in md and "raw_input" in md
    assert "| fedavg | synthetic | 2 |" in md and "| fedvssl | synthetic | 2 |" in md
    pngs = sorted(p.name for p in (tiny_bench / "plots").glob("*.png"))
    assert pngs == ["curves_task=synthetic.png", "final_knn_top1.png"]
    assert all((tiny_bench / "plots" / png).with_suffix(".pdf").is_file() for png in pngs)
    # the paired comparison against fedavg over both seeds, the cells' process time, provenance
    assert "## knn_top1: paired difference against fedavg" in md and "| synthetic | fedvssl | 2 |" in md
    assert all(float(r["process_seconds"]) >= float(r["wall_seconds"]) > 0 for r in rows)
    assert "process s" in md and "## provenance" in md and "flwr_version" in md
    commands = [json.loads((tiny_bench / cell / "summary.json").read_text())["provenance"]["command"] for cell in CELLS]
    assert all(c.startswith("fedsim run ") and f"--out {tiny_bench / cell}" in c for c, cell in zip(commands, CELLS))
    assert html.count("data:image/png;base64,") == 2  # self-contained: the plots are inside
    assert "http://" not in html and "https://" not in html and "<link" not in html


def test_bytes_are_the_tensor_sizes_and_fedvssl_sends_less_up(tiny_bench):
    rows = {r["cell"]: r for r in read_csv(tiny_bench / "bench.csv")}
    lines = [json.loads(x) for x in (tiny_bench / CELLS[2] / "rounds.jsonl").read_text().splitlines()]

    # 2 rounds × 2 clients, each gets the whole model; sends all of it (fedavg) or the backbone (fedvssl)
    assert int(rows[CELLS[0]]["bytes_down"]) == 2 * 2 * MODEL_BYTES
    assert int(rows[CELLS[0]]["bytes_up"]) == 2 * 2 * MODEL_BYTES
    assert int(rows[CELLS[2]]["bytes_down"]) == 2 * 2 * MODEL_BYTES
    assert int(rows[CELLS[2]]["bytes_up"]) == 2 * 2 * BACKBONE_BYTES
    assert [(r["bytes_down"], r["bytes_up"]) for r in lines[1:]] == [(2 * MODEL_BYTES, 2 * BACKBONE_BYTES)] * 2


def test_a_rerun_starts_no_process_for_finished_cells(tiny_bench, monkeypatch):
    def no_process(*args, **kwargs):
        raise AssertionError("a finished cell was started again")

    # (the runner's own method: patching subprocess.Popen would also stop provenance's `git rev-parse`)
    monkeypatch.setattr(runner_module.Runner, "_start", no_process)
    before = (tiny_bench / "bench.csv").read_text()

    result = bench(*TINY, "--out", str(tiny_bench))

    assert result.exit_code == 0, result.output
    assert "4 cells (4 already done)" in result.output
    assert (tiny_bench / "bench.csv").read_text() == before


def _interrupt_after_round_one(cell_dir):
    """Make a finished 1-round run look like a 2-round run stopped after round 1's checkpoint."""
    config = yaml.safe_load((cell_dir / "config.yaml").read_text())
    config["federation"]["rounds"] = 2
    (cell_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    for name in ("summary.json", "model.pt", "metrics.csv", "curves.png"):  # written only at the end
        (cell_dir / name).unlink()


def test_an_interrupted_cell_resumes_to_the_same_table(tiny, tmp_path):
    # Prepare: a copy of the finished bench whose fedvssl seed-1 cell stopped after round 1
    tiny_bench = tiny.dir
    copy = tmp_path / "copy"
    shutil.copytree(tiny_bench, copy)
    shutil.rmtree(copy / CELLS[3])
    shutil.copytree(tiny.one_round / CELLS[3], copy / CELLS[3])
    _interrupt_after_round_one(copy / CELLS[3])
    assert bench(*TINY, "--out", str(copy), "--check").output.splitlines()[3].split()[:2] == ["resume", "1/2"]

    # Execute
    result = bench(*TINY, "--out", str(copy), "--quiet")

    # Assert: the resumed cell has both rounds and the table equals the uninterrupted one
    assert result.exit_code == 0, result.output
    assert "--resume" in (copy / "logs" / f"{CELLS[3]}.log").read_text()
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING} for r in rows]  # noqa: E731
    assert strip(read_csv(copy / "bench.csv")) == strip(read_csv(tiny_bench / "bench.csv"))


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboard is not installed (pip install 'fedsim-ssl[tensorboard]')")
def test_cells_log_every_round_to_tensorboard(tiny_bench):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tiny_bench / CELLS[0] / "tensorboard"))
    events.Reload()

    assert [e.step for e in events.Scalars("knn_top1")] == [0, 1, 2]
    assert [e.value for e in events.Scalars("bytes_up")] == [2 * MODEL_BYTES] * 2
