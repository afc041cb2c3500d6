"""The ServerApp of a deployed run (``fedsim deploy run`` submits an app whose ``serverapp``
component is ``fedsim.deploy.serverapp:app``; the ``clientapp`` is fedsim's own ClientApp).

It takes the whole experiment from the run config, not from a file: ``config-yaml`` is the
resolved experiment (``ExperimentConfig.to_yaml``) and ``run-dir`` the absolute run directory
on the SuperLink's host. Then it runs the same round loop as ``fedsim run`` over the
connected SuperNodes, so the run directory holds the same files as a simulation's.

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

import tempfile
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedsim.config import load_config
from fedsim.deploy.boxes import BoxLedger
from fedsim.server.loop import RoundLoop

CONFIG_KEY = "config-yaml"
RUN_DIR_KEY = "run-dir"

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the experiment carried in the run config and write its run directory."""
    text = str(context.run_config.get(CONFIG_KEY, ""))
    run_dir = str(context.run_config.get(RUN_DIR_KEY, ""))
    if not text or not run_dir:
        raise ValueError(f"the run config needs {CONFIG_KEY!r} and {RUN_DIR_KEY!r}; submit with fedsim deploy run")
    with tempfile.TemporaryDirectory(prefix="fedsim-deploy-") as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(text)
        exp = load_config(path)
    ledger = BoxLedger(grid, Path(run_dir))
    try:
        RoundLoop(ledger, exp, run_dir, quiet=True, whole_nodes=True).run()  # type: ignore[arg-type]
    finally:
        ledger.finish()
