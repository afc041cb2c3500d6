"""End to end: real Flower simulations (Ray backend) of a few rounds, checking every output."""

import csv
import json

import pytest
import torch

from fedsim.server.outputs import json_safe
from tests.server.conftest import read_rows, small_config
from fedsim.factory import task_for


@pytest.mark.timeout(300)
@pytest.mark.parametrize("engine", ["flower", "cohort"])
def test_outputs_of_a_real_run(simulated, engine):
    run_dir = simulated(engine)

    rows = read_rows(run_dir)
    assert [r["round"] for r in rows] == [0, 1, 2, 3]
    for row in rows[1:]:
        assert row["clients_sampled"] == 3 and row["clients_ok"] == 3
        assert row["clients_failed"] == 0 and row["clients_rejected"] == 0
        assert row["train_loss"] > 0 and not row["skipped"]
    assert 0.0 <= rows[0]["knn_top1_raw_input"] <= 1.0 and 0.0 <= rows[-1]["knn_top1"] <= 1.0
    with open(run_dir / "metrics.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [int(r["round"]) for r in table] == [0, 1, 2, 3]
    assert [r["skipped"] for r in table] == ["", "false", "false", "false"]  # not Python's False
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["engine"] == engine and summary["rounds"] == 3 and summary["clients_per_round"] == 3
    assert summary["provenance"]["device"] in ("cpu", "cuda") and summary["provenance"]["flwr_version"]
    assert (run_dir / "curves.pdf").read_bytes()[:5] == b"%PDF-"
    assert summary["knn_top1"] == pytest.approx(rows[-1]["knn_top1"])
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "strategy:\n  name: fedavg" in (run_dir / "config.yaml").read_text()
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    final = torch.load(run_dir / "model.pt", weights_only=True)
    assert ckpt["round"] == 3 and final.keys() == ckpt["global"].keys()
    assert all(torch.equal(final[k], ckpt["global"][k]) for k in final)
    initial = task_for(small_config()).build_model().state_dict()
    assert any(not torch.equal(final[k], initial[k]) for k in final)  # training moved the model


@pytest.mark.timeout(300)
def test_callbacks_get_every_line_then_the_summary_then_close(simulated):
    run_dir = simulated("cohort")

    calls = simulated.hooks[run_dir].calls

    assert [c[0] for c in calls] == ["on_begin", *["after_round"] * 4, "on_end", "on_close"]
    assert calls[0] == ("on_begin", 0) and calls[-1] == ("on_close", True)
    as_written = [json.loads(json.dumps(json_safe(c[1]))) for c in calls[1:6]]  # NaN -> null
    assert as_written[:4] == read_rows(run_dir)
    assert as_written[4] == json.loads((run_dir / "summary.json").read_text())


@pytest.mark.timeout(600)
@pytest.mark.parametrize("strategy", ["fedavg", "ldawa", "fedvssl"])
def test_flower_and_cohort_engines_give_the_same_global(simulated, strategy):
    flower = torch.load(simulated("flower", strategy) / "model.pt", weights_only=True)
    cohort = torch.load(simulated("cohort", strategy) / "model.pt", weights_only=True)

    for name, value in flower.items():
        torch.testing.assert_close(cohort[name], value, rtol=1e-5, atol=1e-5)
