"""End to end: real Flower simulations (Ray backend) of a few rounds, checking every output.

Each engine runs once per module (Ray start-up dominates); the tests then read the files.
"""

import csv
import json

import pytest
import torch

from fedsim.config import load_config
from fedsim.engines.runtime import simulate

SMALL = {
    "federation.clients": 6, "federation.clients_per_round": 3, "federation.rounds": 2,
    "task.params": {"image_size": 16, "min_samples": 32, "max_samples": 48},
}


@pytest.fixture(scope="module", params=["flower", "cohort"])
def run(request, tmp_path_factory):
    exp = load_config(None, {**SMALL, "engine.name": request.param})
    run_dir = tmp_path_factory.mktemp(request.param) / "run"
    summary = simulate(exp, str(run_dir), quiet=True)
    return exp, run_dir, summary


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines()]


@pytest.mark.timeout(300)
def test_rounds_jsonl_counts_every_client(run):
    _, run_dir, _ = run

    rows = _rows(run_dir)

    assert [r["round"] for r in rows] == [0, 1, 2]
    for row in rows[1:]:
        assert row["clients_sampled"] == 3 and row["clients_ok"] == 3
        assert row["clients_failed"] == 0 and row["clients_rejected"] == 0
        assert row["train_loss"] > 0 and 0.0 <= row["knn_top1"] <= 1.0
    assert 0.0 <= rows[0]["knn_top1_raw_input"] <= 1.0


@pytest.mark.timeout(60)
def test_summary_csv_config_and_plot(run):
    exp, run_dir, summary = run

    rows = _rows(run_dir)
    with open(run_dir / "metrics.csv") as fh:
        assert [int(r["round"]) for r in csv.DictReader(fh)] == [0, 1, 2]
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["engine"] == exp.engine.name and saved["rounds"] == 2
    assert saved["knn_top1"] == pytest.approx(rows[-1]["knn_top1"])
    assert summary["clients_per_round"] == 3
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "strategy:\n  name: fedavg" in (run_dir / "config.yaml").read_text()


@pytest.mark.timeout(60)
def test_checkpoint_and_final_model(run):
    exp, run_dir, _ = run

    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    final = torch.load(run_dir / "model.pt", weights_only=True)

    assert ckpt["round"] == 2
    assert final.keys() == ckpt["global"].keys()
    assert all(torch.equal(final[k], ckpt["global"][k]) for k in final)
    initial = exp.build_task().build_model().state_dict()
    assert any(not torch.equal(final[k], initial[k]) for k in final)  # training moved the model
