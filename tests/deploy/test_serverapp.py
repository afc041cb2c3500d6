"""The deployed ServerApp's setup: the experiment comes whole from the run config (no file),
over a grid that keeps the boxes' ledger, which is written complete at the end."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from fedsim.config import load_config
from fedsim.deploy.boxes import BOXES_FILE, BoxLedger
from fedsim.deploy.serverapp import CONFIG_KEY, RUN_DIR_KEY, deployed_run


def test_the_run_config_carries_the_whole_experiment(tmp_path):
    exp = load_config(None, {"federation.clients": 3, "federation.clients_per_round": 3, "federation.rounds": 2,
                             "strategy.name": "ldawa",
                             "engine.name": "flower", "seed": 7})
    context = SimpleNamespace(run_config={CONFIG_KEY: exp.to_yaml(), RUN_DIR_KEY: str(tmp_path / "run")})

    run = deployed_run("grid", context)

    assert run.exp == exp and run.run_dir == str(tmp_path / "run")
    assert isinstance(run.grid, BoxLedger) and run.options == {"quiet": True, "whole_nodes": True}
    (tmp_path / "run").mkdir()
    run.close()  # the ledger's final file, also when the run failed
    assert json.loads((tmp_path / "run" / BOXES_FILE).read_text())["complete"] is True


@pytest.mark.parametrize("missing", [CONFIG_KEY, RUN_DIR_KEY])
def test_a_run_config_without_the_experiment_or_run_dir_is_refused(missing):
    run_config = {CONFIG_KEY: load_config(None).to_yaml(), RUN_DIR_KEY: "/tmp/x"}
    del run_config[missing]

    with pytest.raises(ValueError, match="submit with fedsim deploy run"):
        deployed_run("grid", SimpleNamespace(run_config=run_config))
