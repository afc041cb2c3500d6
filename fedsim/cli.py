"""The ``fedsim`` command line (Typer + rich): ``fedsim run`` and ``fedsim list``."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from fedsim.config import ConfigError, load_config, parse_override
from fedsim.registry import MODELS, STRATEGIES, TASKS, load_plugins

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Federated self-supervised learning simulations on Flower.")
err = Console(stderr=True)

# CLI flag -> config key. Values are passed as text and validated by the config models,
# so a bad value gets the same one-line error as in YAML ("federation.clients: ...").
FLAGS = {
    "strategy": "strategy.name", "task": "task.name", "model": "model.name",
    "engine": "engine.name", "clients": "federation.clients",
    "clients_per_round": "federation.clients_per_round", "rounds": "federation.rounds",
    "local_epochs": "federation.local_epochs", "seed": "seed", "out": "out",
    "data_dir": "task.data_dir", "ray_address": "engine.ray_address",
    "dp_clip": "strategy.dp_clip", "dp_noise": "strategy.dp_noise",
}
# What --resume lets the command line change; the rest comes from the run's config.yaml.
RESUME_MAY_CHANGE = {"federation.rounds", "engine.ray_address"}


def fail(message: str, code: int = 2) -> None:
    """Print one line to stderr and exit with ``code``."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _opt(help_text: str, metavar: str = "TEXT") -> Any:
    return typer.Option(None, help=help_text, metavar=metavar, show_default=False)


def _resume_config(resume: Path, config: Path | None, overrides: dict[str, Any]) -> tuple[Path, str | None]:
    """The resumed run's ``config.yaml`` and the Ray address it names that is not used.

    ``overrides`` may change only ``RESUME_MAY_CHANGE``. The config's ``engine.ray_address``
    is dropped unless ``--ray-address`` gives one again: a run directory must not be able
    to point the driver at a Ray cluster by itself.
    """
    from fedsim.config import read_yaml
    from fedsim.server.resume import resume_config_path

    if config is not None or overrides.keys() - RESUME_MAY_CHANGE:
        raise ConfigError("--resume takes the run's own config.yaml; only --rounds and --ray-address may change")
    path = resume_config_path(resume)
    overrides["out"] = str(resume)
    if "engine.ray_address" in overrides:
        return path, None
    overrides["engine.ray_address"] = None
    engine = read_yaml(path).get("engine")
    return path, engine.get("ray_address") if isinstance(engine, dict) else None


def _checked_run_dir(exp: Any, resume: Path | None) -> Path:
    """The run directory, checked before start-up: a new run never overwrites a directory
    that holds files, and a resumed run's checkpoint fits its config (:class:`ConfigError`)."""
    from fedsim.server.resume import check_new_run_dir, check_resumable

    if resume is not None:
        check_resumable(resume, exp)
        return resume
    run_dir = Path(exp.out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}-{exp.strategy.name}")
    check_new_run_dir(run_dir)
    return run_dir


def _checked_task(exp: Any) -> None:
    """Build the task and its model and scan a ``--data-dir`` before start-up, so a malformed
    folder, a bad ``model.params`` option or a model the task cannot use is one line, exit 2."""
    from fedsim.data.folders import DataFolderError

    try:
        task = exp.build_task()
        task.describe_data()
        task.build_model()
    except (DataFolderError, ValueError) as e:
        raise ConfigError(str(e)) from None


@app.command()
def run(
    config: Path = typer.Option(None, "--config", "-c", help="Experiment YAML (default: built-in defaults)."),
    strategy: str = _opt("Aggregation strategy (see `fedsim list`).", "NAME"),
    clients: str = _opt("Registered clients.", "INT"),
    clients_per_round: str = _opt("Clients sampled per round.", "INT"),
    rounds: str = _opt("Federated rounds.", "INT"),
    local_epochs: str = _opt("Local epochs per client per round.", "INT"),
    seed: str = _opt("Seed of sampling, data and training.", "INT"),
    task: str = _opt("SSL task (see `fedsim list`).", "NAME"),
    model: str = _opt("Backbone (see `fedsim list`).", "NAME"),
    engine: str = _opt("Execution engine: flower | cohort.", "NAME"),
    data_dir: str = _opt("Local dataset folder for the task.", "DIR"),
    ray_address: str = _opt("Attach to an existing Ray cluster (HOST:PORT).", "ADDR"),
    dp_clip: str = _opt("Differential privacy: clip each client update to L2 norm C.", "C"),
    dp_noise: str = _opt("Differential privacy: noise multiplier z (std z*C).", "Z"),
    out: str = _opt("Run directory: new or empty (default runs/<time>-<strategy>).", "DIR"),
    resume: Path = typer.Option(None, "--resume", metavar="RUN_DIR", show_default=False,
                                help="Continue the run in RUN_DIR from its last complete round (after checking "
                                     "that its checkpoint fits its config.yaml); only --rounds and --ray-address "
                                     "may change."),
    set_: list[str] = typer.Option([], "--set", help="Override any key: --set federation.lr=0.01",
                                   metavar="KEY=VALUE"),
    check: bool = typer.Option(False, "--check", help="Validate the configuration, print it resolved, and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    verbose: bool = typer.Option(False, "--verbose", help="Flower/Ray logs and tracebacks."),
) -> None:
    """Run a federated SSL simulation and write results under the run directory."""
    flags = dict(strategy=strategy, clients=clients, clients_per_round=clients_per_round,
                 rounds=rounds, local_epochs=local_epochs, seed=seed, task=task, model=model,
                 engine=engine, data_dir=data_dir, ray_address=ray_address, out=out,
                 dp_clip=dp_clip, dp_noise=dp_noise)
    overrides: dict[str, Any] = {}
    try:
        for item in set_:
            key, value = parse_override(item)
            overrides[key] = value
        for name, value in flags.items():
            if value is not None:
                overrides[FLAGS[name]] = value if name in ("out", "data_dir", "ray_address") \
                    else parse_override(f"x={value}")[1]
        unused_address = None
        if resume is not None:
            config, unused_address = _resume_config(resume, config, overrides)
        exp = load_config(config, overrides)
        run_dir = _checked_run_dir(exp, resume)
        _checked_task(exp)
    except ConfigError as e:
        fail(str(e))
    if unused_address and not quiet:
        err.print(f"note: not attaching to the Ray cluster {unused_address} named in {config}; "
                  f"add --ray-address {unused_address} to use it", highlight=False, soft_wrap=True)
    if check:
        typer.echo(exp.to_yaml(), nl=False)
        return
    from fedsim.engines.ray_cluster import RayUnavailable
    from fedsim.engines.runtime import simulate
    from fedsim.engines.stop import RunStopped
    from fedsim.server.loop import EXIT_RUN_ABORTED, RunAborted

    if not quiet:
        fed = exp.federation
        err.print(f"fedsim: {exp.strategy.name} on {exp.task.name}, {fed.clients} clients, "
                  f"{fed.cohort_size()} per round, {fed.rounds} rounds, engine {exp.engine.name} "
                  f"-> {run_dir}", highlight=False)
    own_threads = set(threading.enumerate())
    try:
        simulate(exp, str(run_dir), quiet=quiet, verbose=verbose, resume=resume is not None)
    except RunStopped as e:
        code = 128 + e.signum if e.signum else EXIT_RUN_ABORTED
        if e.last_round is None:
            end_run(f"{e.reason} before the run started", code=code, leftover=own_threads)
        where = (f"after round {e.last_round} of {exp.federation.rounds}" if e.last_round
                 else "before round 1 completed")
        end_run(f"{e.reason} {where}; continue with: fedsim run --resume {run_dir}", code=code,
                leftover=own_threads)
    except RayUnavailable as e:
        end_run(str(e), code=2, leftover=own_threads)
    except RunAborted as e:
        end_run(f"run aborted: {e}", code=EXIT_RUN_ABORTED, leftover=own_threads)
    except KeyboardInterrupt:  # before the runtime's own handlers were installed
        end_run(f"interrupted by SIGINT before the run started; nothing to resume in {run_dir}", code=130,
                leftover=own_threads)
    except Exception as e:  # a one-line report; --verbose shows the traceback
        if verbose:
            raise
        fail(f"run failed: {type(e).__name__}: {e}", code=1)


# How long threads of a stopped runtime get before the process exits without them.
THREAD_GRACE_SECONDS = 5.0


def end_run(message: str, code: int, *, leftover: set[threading.Thread]) -> None:
    """Print ``message`` (one line) and exit with ``code``. A thread the runtime started (not
    in ``leftover``) and left stuck, in a Ray call say, would keep the interpreter from
    exiting; after THREAD_GRACE_SECONDS the process exits without it (outputs are on disk)."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    deadline = time.monotonic() + THREAD_GRACE_SECONDS
    stuck = [t for t in threading.enumerate() if t not in leftover and not t.daemon]
    for thread in stuck:
        thread.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in stuck):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)


@app.command("list")
def list_plugins() -> None:
    """List the registered strategies, tasks and models, one line each."""
    load_plugins()
    out = Console()
    for title, registry in (("strategies", STRATEGIES), ("tasks", TASKS), ("models", MODELS)):
        table = Table(title=title, show_header=False, title_justify="left")
        table.add_column("name", style="bold")
        table.add_column("description")
        for name, text in registry.describe().items():
            table.add_row(name, text)
        out.print(table)
