"""The ``fedsim`` command line (Typer + rich): ``fedsim run``, ``bench``, ``report`` and ``list``."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fedsim import version
from fedsim.config import ConfigError, load_config, parse_override
from fedsim.plugins import builtin_experimental, builtin_listing
from fedsim.registry import MODELS, STRATEGIES, TASKS
from fedsim.server.progress import error, print_summary
from fedsim.specs import describe_specs, resolve_spec

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Federated self-supervised learning simulations on Flower.")
err = Console(stderr=True, soft_wrap=True)  # a line is never wrapped, piped or not


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"fedsim {version()}")
        raise typer.Exit()


@app.callback()
def main(_version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print fedsim's version and exit.")) -> None:
    """Federated self-supervised learning simulations on Flower."""

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


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one line (at most ~300 characters) to stderr and exit with ``code``."""
    error(message, err)
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


def _finished(run_dir: Path, exp: Any, quiet: bool) -> bool:
    """A resumed run that already completed its rounds is left as it is (its summary.json
    keeps its wall time); say so."""
    from fedsim.server.resume import is_finished

    if not is_finished(run_dir, exp):
        return False
    if not quiet:
        err.print(f"{run_dir} already finished its {exp.federation.rounds} rounds; nothing to do "
                  f"(--rounds N with a larger N continues it)", highlight=False, soft_wrap=True)
    return True


def _checked_task(exp: Any) -> None:
    """Build the task and its model and scan a ``--data-dir`` before start-up, so a malformed
    folder, a bad ``model.params`` option or a model the task cannot use is one line, exit 2."""
    from fedsim.factory import task_for

    try:
        task = task_for(exp)
        task.describe_data()
        task.build_model()
    except ValueError as e:  # a DataFolderError too (a ValueError): importing it loads the image readers
        raise ConfigError(str(e)) from None


def _warn_schedules(exps: list[Any]) -> None:
    """One line on stderr for each distinct warning the runs' strategies give about their own
    schedule, e.g. an L-DAWA warm-up that covers every round (the run is plain FedAvg)."""
    from fedsim.factory import strategy_for

    warnings = (strategy_for(exp).schedule_warning(exp.federation.rounds) for exp in exps)
    for warning in dict.fromkeys(w for w in warnings if w):
        err.print(f"warning: {escape(warning)}", highlight=False, soft_wrap=True)


@app.command()
def run(
    config: Path = typer.Option(None, "--config", "-c", metavar="FILE|NAME",
                                help="Experiment YAML, or the name of a bundled one (`fedsim list`); "
                                     "default: built-in defaults."),
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
    trust_plugins: bool = typer.Option(False, "--trust-plugins",
                                       help="With --resume: import the plugin modules the run's config.yaml names."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    verbose: bool = typer.Option(False, "--verbose", help="Flower/Ray logs and tracebacks."),
    as_json: bool = typer.Option(False, "--json", help="Print the end-of-run summary as JSON on stdout."),
    tracker: list[str] = typer.Option([], "--tracker", metavar="NAME",
                                      help="Also log every round to tensorboard or mlflow (optional extras)."),
) -> None:
    """Run a federated SSL simulation and write results under the run directory."""
    from fedsim.server.trackers import parse_trackers

    flags = dict(strategy=strategy, clients=clients, clients_per_round=clients_per_round,
                 rounds=rounds, local_epochs=local_epochs, seed=seed, task=task, model=model,
                 engine=engine, data_dir=data_dir, ray_address=ray_address, out=out,
                 dp_clip=dp_clip, dp_noise=dp_noise)
    try:
        overrides = _overrides(set_, flags, FLAGS)
        unused_address = None
        if resume is not None:
            config, unused_address = _resume_config(resume, config, overrides)
        elif config is not None:
            config = resolve_spec(config)
        exp = load_config(config, overrides, trust_plugins=resume is None or trust_plugins)
        run_dir = _checked_run_dir(exp, resume)
        _checked_task(exp)
        trackers = parse_trackers(tracker)
    except ConfigError as e:
        fail(str(e))
    _warn_schedules([exp])
    if unused_address and not quiet:
        err.print(f"note: not attaching to the Ray cluster {unused_address} named in {config}; "
                  f"add --ray-address {unused_address} to use it", highlight=False, soft_wrap=True)
    if check:
        typer.echo(exp.to_yaml(), nl=False)
        return
    if resume is not None and _finished(run_dir, exp, quiet):
        return
    summary = _simulate(exp, run_dir, trackers, quiet=quiet, verbose=verbose, resume=resume is not None)
    if as_json or not quiet:
        print_summary(summary, as_json=as_json)


def _overrides(set_: list[str], flags: dict[str, str | None], keys: dict[str, str]) -> dict[str, Any]:
    """Config overrides from ``--set KEY=VALUE`` items, then the flags given (flag -> config
    key in ``keys``); a value is read as YAML, paths and addresses as text."""
    overrides = dict(parse_override(item) for item in set_)
    for name, value in flags.items():
        if value is not None:
            overrides[keys[name]] = value if name in ("out", "data_dir", "ray_address") \
                else parse_override(f"x={value}")[1]
    return overrides


def _simulate(exp: Any, run_dir: Path, trackers: list[str], *, quiet: bool, verbose: bool,
              resume: bool) -> dict[str, Any]:
    """Run ``exp`` (the start line first) and return its summary; a run that ends without
    one exits with one line and its exit code (:func:`end_run`)."""
    if not quiet:  # before the runtime's imports and Ray's start-up, which take seconds
        fed = exp.federation
        err.print(f"fedsim {version()}: {exp.strategy.name} on {exp.task.name}, {fed.clients} clients, "
                  f"{fed.cohort_size()} per round, {fed.rounds} rounds, engine {exp.engine.name} "
                  f"-> {run_dir}", highlight=False, markup=False)
    from fedsim.launcher import simulate
    from fedsim.server.trackers import make_trackers

    own_threads = set(threading.enumerate())
    try:
        return simulate(exp, str(run_dir), quiet=quiet, verbose=verbose, resume=resume,
                        callbacks=make_trackers(trackers))
    except KeyboardInterrupt:  # before the runtime's own handlers were installed
        end_run(f"interrupted by SIGINT before the run started; nothing to resume in {run_dir}", code=130,
                leftover=own_threads)
    except Exception as e:
        ended = _run_ended(e, exp, run_dir)
        if ended is None:  # a one-line report; --verbose shows the traceback
            if verbose:
                raise
            fail(f"run failed: {type(e).__name__}: {e}", code=1)
        end_run(ended[1], code=ended[0], leftover=own_threads)


def _run_ended(e: Exception, exp: Any, run_dir: Path) -> tuple[int, str] | None:
    """The exit code and line of a run that ended early with ``e`` (stopped, aborted, no
    Ray, disk full); ``None`` for any other error."""
    from fedsim.atomic import DiskFull
    from fedsim.engines.ray_cluster import RayUnavailable
    from fedsim.engines.stop import RunStopped
    from fedsim.server.waits import EXIT_RUN_ABORTED, RunAborted

    if isinstance(e, RunStopped):
        code = 128 + e.signum if e.signum else EXIT_RUN_ABORTED
        if e.last_round is None:
            return code, f"{e.reason} before the run started"
        where = f"after round {e.last_round} of {exp.federation.rounds}" if e.last_round else "before round 1 completed"
        return code, f"{e.reason} {where}; continue with: fedsim run --resume {run_dir}"
    if isinstance(e, RayUnavailable):
        return 2, str(e)
    if isinstance(e, RunAborted):
        return EXIT_RUN_ABORTED, f"run aborted: {e}"
    if isinstance(e, DiskFull):  # the last checkpoint is intact
        return 1, f"{e}; free some space, then continue with: fedsim run --resume {run_dir}"
    return None


# How long threads of a stopped runtime get before the process exits without them.
THREAD_GRACE_SECONDS = 5.0


def end_run(message: str, code: int, *, leftover: set[threading.Thread]) -> NoReturn:
    """Print ``message`` (one line) and exit with ``code``. A thread the runtime started (not
    in ``leftover``) and left stuck, in a Ray call say, would keep the interpreter from
    exiting; after THREAD_GRACE_SECONDS the process exits without it (outputs are on disk)."""
    error(message, err)
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
    """List the built-in strategies, tasks and models and the bundled experiment files, one line each."""
    out = Console(soft_wrap=True)
    listing = builtin_listing()  # read from the plugins' source: listing them imports no torch
    for kind, registry in (("strategy", STRATEGIES), ("task", TASKS), ("model", MODELS)):
        listing[kind] = {**listing[kind], **registry.describe()}  # and plugins this process imported
    for task, flagged in builtin_experimental().items():  # objectives that do not yet beat their baselines
        listing["task"][task] += " — experimental: " + "; ".join(f"{k} ({v})" for k, v in flagged.items())
    sections = {"strategies": listing["strategy"], "tasks": listing["task"], "models": listing["model"],
                "experiments (--config NAME)": describe_specs()}
    for title, described in sections.items():
        if not out.is_terminal:  # piped: plain "name  description" rows, whole, for grep and cut
            width = max(map(len, described), default=0)
            out.out(f"{title}:\n" + "".join(f"  {name:<{width}}  {text}\n" for name, text in described.items()),
                    end="")
            continue
        table = Table(title=title, show_header=False, title_justify="left")
        table.add_column("name", style="bold")
        table.add_column("description")
        for name, text in described.items():
            table.add_row(name, escape(text))
        out.print(table)


# Run flags that `fedsim bench` passes to every cell (strategy, task and seed are grid axes).
BENCH_FLAGS = {name: key for name, key in FLAGS.items() if name not in ("strategy", "task", "seed", "out")}


@app.command()
def bench(
    config: Path = typer.Option(None, "--config", "-c", metavar="FILE|NAME",
                                help="Bench YAML (an experiment plus a grid: section, axis -> values), or the "
                                     "name of a bundled one (`fedsim list`)."),
    strategies: str = _opt("Strategies, comma-separated (e.g. fedavg,ldawa).", "LIST"),
    tasks: str = _opt("Tasks, comma-separated (e.g. image,audio).", "LIST"),
    alpha: str = _opt("Dirichlet α values, comma-separated (e.g. 0.1,1.0).", "LIST"),
    seeds: str = _opt("Seeds, comma-separated (e.g. 0,1,2).", "LIST"),
    axis: list[str] = typer.Option([], "--axis", metavar="KEY=V1,V2",
                                   help="Another axis: any config key, e.g. federation.local_epochs=1,5."),
    rounds: str = _opt("Federated rounds of every cell.", "INT"),
    clients: str = _opt("Registered clients.", "INT"),
    clients_per_round: str = _opt("Clients sampled per round.", "INT"),
    local_epochs: str = _opt("Local epochs per client per round.", "INT"),
    model: str = _opt("Backbone (see `fedsim list`).", "NAME"),
    engine: str = _opt("Execution engine: flower | cohort.", "NAME"),
    data_dir: str = _opt("Local dataset folder for the task.", "DIR"),
    ray_address: str = _opt("Attach every cell to an existing Ray cluster (HOST:PORT).", "ADDR"),
    dp_clip: str = _opt("Differential privacy: clip norm C.", "C"),
    dp_noise: str = _opt("Differential privacy: noise multiplier z.", "Z"),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help="Override any key in every cell."),
    out: str = _opt("Bench directory (default runs/bench-<time>); rerun with the same --out to continue.", "DIR"),
    parallel: int = typer.Option(1, "--parallel", metavar="N", help="Cells run at once (at most the CPU cores)."),
    target: str = _opt("Also report the rounds each cell needs to reach METRIC=VALUE.", "METRIC=VALUE"),
    tracker: list[str] = typer.Option([], "--tracker", metavar="NAME", help="Every cell also logs to tensorboard/mlflow."),
    check: bool = typer.Option(False, "--check", "--dry-run",
                               help="Validate the grid, list the planned cells and their state, and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
) -> None:
    """Run a grid of experiments (strategies × tasks × α × seeds × other axes), one run per cell,
    then write bench.csv, bench.md, plots and report.html. Rerun to continue an interrupted bench."""
    from fedsim.bench.grid import grid_axes
    from fedsim.bench.plan import BENCH_FILE, DONE, BenchSpec, parse_target, plan, read_bench_yaml
    from fedsim.bench.runner import start_hosts
    from fedsim.machine import usable_cores
    from fedsim.server.outputs import is_run
    from fedsim.server.trackers import parse_trackers

    flags = dict(rounds=rounds, clients=clients, clients_per_round=clients_per_round, local_epochs=local_epochs,
                 model=model, engine=engine, data_dir=data_dir, ray_address=ray_address, dp_clip=dp_clip,
                 dp_noise=dp_noise)
    bench_dir = Path(out or f"runs/bench-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        overrides = _overrides(set_, flags, BENCH_FLAGS)
        base, grid = read_bench_yaml(resolve_spec(config)) if config is not None else ({}, None)
        axes = grid_axes(grid, {"strategies": strategies, "tasks": tasks, "alpha": alpha, "seeds": seeds}, axis)
        if not 1 <= parallel <= usable_cores():
            raise ConfigError(f"--parallel: {parallel} is not within 1..{usable_cores()} (this machine's CPU cores)")
        if bench_dir.exists() and (not bench_dir.is_dir() or is_run(bench_dir) or (
                any(bench_dir.iterdir()) and not (bench_dir / BENCH_FILE).is_file())):
            raise ConfigError(f"out: {bench_dir} is not a bench directory (no {BENCH_FILE}) and not empty; "
                              "choose a new --out, or the --out of an earlier bench to continue it")
        spec = BenchSpec(axes=axes, base=base, overrides=overrides, target=parse_target(target),
                         trackers=tuple(parse_trackers(tracker)))
        planned = plan(spec, bench_dir)
    except ConfigError as e:
        fail(str(e))
    hosts = [] if check else start_hosts(planned, parallel)
    try:
        checked: set[str] = set()
        for cell in planned:  # a bad model option or data folder: one line before anything runs
            what = json.dumps([cell.exp.task.model_dump(), cell.exp.model.model_dump()], sort_keys=True)
            if cell.state != DONE and what not in checked:
                _checked_task(cell.exp)
                checked.add(what)
    except ConfigError as e:
        for host in hosts:
            host.close(timeout=10.0)
        fail(str(e))
    _warn_schedules([cell.exp for cell in planned if cell.state != DONE])
    if check:
        for cell in planned:
            typer.echo(f"{cell.state:6s} {cell.rounds_done:>4d}/{cell.rounds:<4d} {cell.dir}")
        return
    _run_bench(spec, planned, bench_dir, parallel=parallel, quiet=quiet, hosts=hosts)


def _run_bench(spec: Any, planned: list[Any], bench_dir: Path, *, parallel: int, quiet: bool,
               hosts: list[Any]) -> None:
    """Run the planned cells, then write the results; exit 1 if a cell failed, 130/143 if interrupted."""
    from fedsim.bench.plan import DONE, command, write_bench_files
    from fedsim.bench.report import build_report
    from fedsim.bench.runner import BenchInterrupted, Runner

    write_bench_files(spec, bench_dir, planned, ["fedsim", *sys.argv[1:]])
    todo = sum(1 for c in planned if c.state != DONE)
    if not quiet:
        err.print(f"fedsim bench: {len(planned)} cells ({len(planned) - todo} already done) -> {bench_dir}",
                  highlight=False, markup=False)
    runner = Runner(planned, lambda cell: command(cell, spec, bench_dir), bench_dir, parallel=parallel, quiet=quiet,
                    hosts=hosts)
    try:
        outcomes = runner.run()
    except BenchInterrupted as e:
        report = build_report(bench_dir)
        fail(f"interrupted by {signal_name(e.signum)}: {report.finished} of {report.total} cells done; "
             f"rerun the same command to continue (interrupted cells resume)", code=128 + e.signum)
    try:
        report = build_report(bench_dir)  # while the cell hosts shut their clusters down
    finally:
        runner.close()
    failed = [o for o in outcomes if not o.ok]
    if not quiet:
        for path in report.files:
            typer.echo(str(path))
    if failed:
        fail(f"{len(failed)} of {len(planned)} cells failed (first: {failed[0].cell.cell.name}: "
             f"{failed[0].message}; log in {bench_dir / 'logs'}); rerun the same command to retry them", code=1)


def signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


@app.command()
def report(
    path: Path = typer.Argument(..., metavar="DIR", help="A bench directory (fedsim bench) or a run directory."),
    target: str = _opt("Also report the rounds each cell needs to reach METRIC=VALUE.", "METRIC=VALUE"),
) -> None:
    """Rebuild bench.csv, bench.md, plots and report.html of a bench (or report.html of a run) from its files."""
    from fedsim.bench.report import build_report

    if not path.is_dir():
        fail(f"report: {path} is not a directory; give a bench or run directory")
    try:
        result = build_report(path, target=target)
    except ConfigError as e:
        fail(str(e))
    for file in result.files:
        typer.echo(str(file))


# issue 25: `fedsim export` and `fedsim deploy` live in fedsim/edge_cli.py
from fedsim.edge_cli import deploy_app, export_command  # noqa: E402

app.command("export")(export_command)
app.add_typer(deploy_app, name="deploy")
