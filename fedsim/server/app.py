"""fedsim's ServerApps: one factory (:func:`server_app`) for every way the round loop runs.

The three ServerApps differ only in where a run comes from, which a *setup* function says
(``(grid, context) -> LoopRun``):

* ``fedsim run`` (:mod:`fedsim.launcher`): the experiment and options the CLI checked, the
  trackers as objects, and the launcher's stop flag.
* ``flwr run .`` (``[tool.flwr.app.components]`` in pyproject; :data:`app` here): the
  experiment file named by the run config's ``config-path`` (default
  ``simulations/quickstart.yaml``) and the trackers named by its ``trackers``
  (``flwr run . --run-config 'trackers="tensorboard"'``); the summary is printed at the end.
* a deployed run (:mod:`fedsim.deploy.serverapp`): the resolved experiment carried in the
  run config, every SuperNode one client, the boxes' ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedsim.config import ExperimentConfig, load_config
from fedsim.server.callbacks import PrintSummary, RoundCallback
from fedsim.server.loop import RoundLoop
from fedsim.server.outputs import default_run_dir
from fedsim.server.trackers import make_trackers, parse_trackers

CONFIG_PATH_KEY = "config-path"  # run config keys of `flwr run .` ([tool.flwr.app.config])
TRACKERS_KEY = "trackers"
DEFAULT_CONFIG = "simulations/quickstart.yaml"


@dataclass
class LoopRun:
    """One run of the round loop as a setup function describes it (fedsim's counterpart of
    Flower's ``ServerAppComponents``). The ServerApp fills in ``loop`` once it is built and
    ``summary`` once it returned, and calls ``close`` at the end, whatever happened."""

    grid: Grid
    exp: ExperimentConfig
    run_dir: str
    callbacks: Sequence[RoundCallback] = ()
    options: dict[str, Any] = field(default_factory=dict)  # RoundLoop keywords: quiet, resume, stop...
    close: Callable[[], None] = lambda: None
    loop: RoundLoop | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def server_app(setup: Callable[[Grid, Context], LoopRun]) -> ServerApp:
    """A ServerApp that runs the round loop ``setup`` describes for each run."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run = setup(grid, context)
        try:
            run.loop = RoundLoop(run.grid, run.exp, run.run_dir, callbacks=run.callbacks, **run.options)
            run.summary = run.loop.run()
        finally:
            run.close()

    return app


def from_run_config(grid: Grid, context: Context) -> LoopRun:
    """``flwr run .``: the experiment file and trackers its run config names."""
    exp = load_config(str(context.run_config.get(CONFIG_PATH_KEY, DEFAULT_CONFIG)))
    trackers = make_trackers(parse_trackers([str(context.run_config.get(TRACKERS_KEY, ""))]))
    return LoopRun(grid, exp, exp.out or str(default_run_dir(exp)), callbacks=[*trackers, PrintSummary()])


app = server_app(from_run_config)
