"""The ServerApp that ``flwr run .`` starts (``[tool.flwr.app.components]`` in pyproject).

It reads the experiment from the run config's ``config-path`` (default
``simulations/quickstart.yaml``) and runs the same round loop as ``fedsim run``.
"""

from __future__ import annotations

import time

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedsim.config import load_config
from fedsim.server.loop import RoundLoop

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Load the experiment named by the run config and run it."""
    path = str(context.run_config.get("config-path", "simulations/quickstart.yaml"))
    exp = load_config(path)
    run_dir = exp.out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}-{exp.strategy.name}"
    RoundLoop(grid, exp, run_dir).run()
