"""The ServerApp of a deployed run (``fedsim deploy run`` submits an app whose ``serverapp``
component is ``fedsim.deploy.serverapp:app``; the ``clientapp`` is fedsim's own ClientApp).

It takes the whole experiment from the run config, not from a file: ``config-yaml`` is the
resolved experiment (``ExperimentConfig.to_yaml``) and ``run-dir`` the absolute run directory
on the SuperLink's host. Then it runs the same round loop as ``fedsim run`` over the
connected SuperNodes (the ServerApp comes from the same factory,
:func:`fedsim.server.app.server_app`), so the run directory holds the same files as a
simulation's.

How SuperNodes map to clients: the experiment runs the ``flower`` engine with
``federation.clients`` equal to the number of SuperNodes; the round loop waits for that many
nodes, orders them by node id and sends client ``c`` to the ``c``-th node. The run record says
``whole-node``: a SuperNode is one client that trains on all of its own ``data-dir``
(:mod:`fedsim.client.app`) under client id ``c``, which is stable for the whole run (it seeds
the node's augmentations and keys its own state) but not chosen by the box. A box of a
generated task trains its node config's share (``partition-id`` of ``num-partitions``) as
that simulated client instead (:class:`fedsim.client.app.Resident`).

What each box did is noted on the way (:class:`fedsim.deploy.boxes.BoxLedger`) and written to
``boxes.json`` beside the rounds, also when the run fails.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from flwr.app import Context
from flwr.serverapp import Grid

from fedsim.config import load_config
from fedsim.deploy.boxes import BoxLedger
from fedsim.server.app import LoopRun, server_app

CONFIG_KEY = "config-yaml"
RUN_DIR_KEY = "run-dir"


def deployed_run(grid: Grid, context: Context) -> LoopRun:
    """The experiment carried in the run config, over a grid that keeps the boxes' ledger."""
    text = str(context.run_config.get(CONFIG_KEY, ""))
    run_dir = str(context.run_config.get(RUN_DIR_KEY, ""))
    if not text or not run_dir:
        raise ValueError(f"the run config needs {CONFIG_KEY!r} and {RUN_DIR_KEY!r}; submit with fedsim deploy run")
    # the resolved experiment's sections, validated as overrides of the defaults (no file)
    exp = load_config(None, yaml.safe_load(text))
    ledger = BoxLedger(grid, Path(run_dir))
    return LoopRun(ledger, exp, run_dir, options={"quiet": True, "whole_nodes": True},  # type: ignore[arg-type]
                   close=ledger.finish)


app = server_app(deployed_run)
