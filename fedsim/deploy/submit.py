"""``fedsim deploy run``: submit an experiment to a running SuperLink through Flower's run API
(``flwr run``), follow it round by round and report where its run directory is.

The submitted Flower app is a small folder fedsim writes (:func:`write_app`): a
``pyproject.toml`` whose components are :mod:`fedsim.deploy.serverapp` and fedsim's ClientApp
and whose run config carries the resolved experiment and the run directory, so neither the
SuperLink nor a SuperNode reads the submitter's files; every box runs the fedsim it has
installed (runtime dependency installation is off on the SuperLink). The ServerApp writes the
run directory on the SuperLink's host; ``deploy run`` follows ``rounds.jsonl`` there, so it
runs on that host (the usual place: beside ``fedsim deploy superlink``).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedsim.config import ExperimentConfig, load_config
from fedsim.deploy.certs import CA_CERT, DeployError
from fedsim.deploy.processes import CONNECTION, INSECURE_MEANING, FlwrCli, _json_tail, _one_line, parse_address
from fedsim.deploy.serverapp import CONFIG_KEY, RUN_DIR_KEY

APP_NAME = "fedsim-deploy"
POLL_SECONDS = 1.0
FINISHED = "finished"


def deployment_experiment(config: Path | None, overrides: dict[str, Any], run_dir: Path) -> ExperimentConfig:
    """The experiment as deployed: engine ``flower`` (one SuperNode per client, replies are
    weights), written to ``run_dir``; validated here so a bad config is one line before submitting."""
    from fedsim.server.resume import check_new_run_dir

    exp = load_config(config, {**overrides, "engine.name": "flower", "out": str(run_dir)})
    check_new_run_dir(run_dir)
    if exp.faults:
        raise DeployError("faults: fault injection is for simulations; remove it from a deployed run's config")
    return exp


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string (JSON's escaping is valid TOML for these characters)."""
    return json.dumps(text)


def write_app(folder: Path, exp: ExperimentConfig, run_dir: Path) -> Path:
    """Write the Flower app that runs ``exp`` into ``folder``; returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(f"""\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{APP_NAME}"
version = "1.0.0"
description = "A fedsim experiment deployed on SuperNodes (fedsim deploy run)"
dependencies = []  # every box runs the fedsim it has installed

[tool.flwr.app]
publisher = "fedsim"

[tool.flwr.app.components]
serverapp = "fedsim.deploy.serverapp:app"
clientapp = "fedsim.client.app:app"

[tool.flwr.app.config]
{CONFIG_KEY} = {toml_string(exp.to_yaml())}
{RUN_DIR_KEY} = {toml_string(str(run_dir))}
""")
    (folder / "README.md").write_text(f"fedsim experiment {exp.name or ''} submitted by fedsim deploy run.\n")
    return folder


def submit(cli: FlwrCli, app_dir: Path) -> int:
    """``flwr run APP CONNECTION``; returns the run id."""
    done = cli.run("run", str(app_dir), CONNECTION, "--format", "json", timeout=180)
    reply = _json_tail(done.stdout)
    if done.returncode != 0 or not reply.get("success") or "run-id" not in reply:
        raise DeployError(f"submitting the run failed: {_one_line(done)}")
    return int(reply["run-id"])


def run_status(cli: FlwrCli, run_id: int) -> str:
    """The run's status as Flower reports it (``pending``, ``running``, ``finished:completed``,
    ``finished:failed``, ...); ``unknown`` when the SuperLink does not answer."""
    done = cli.run("ls", CONNECTION, "--run-id", str(run_id), "--format", "json", timeout=60)
    for run in _json_tail(done.stdout).get("runs", []):
        if int(run.get("run-id", -1)) == run_id:
            return str(run.get("status", "unknown"))
    return "unknown"


def follow(cli: FlwrCli, run_id: int, run_dir: Path, *, timeout: float,
           echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Print each round as it lands in ``rounds.jsonl`` until the run's ``summary.json`` is
    written; return the summary.

    Raises :class:`RuntimeError` when Flower reports the run finished (failed, stopped)
    without a summary, or after ``timeout`` seconds.
    """
    from fedsim.server.outputs import read_rounds

    deadline = time.monotonic() + timeout
    shown = 0
    status = "pending"
    while True:
        rows = read_rounds(run_dir) if run_dir.is_dir() else []
        for row in rows[shown:]:
            metrics = ", ".join(f"{k} {v:.3f}" for k, v in row.items()
                                if isinstance(v, float) and k.endswith(("top1", "loss", "_map", "mae", "psnr")))
            echo(f"round {row['round']}: {metrics}")
        shown = len(rows)
        summary = run_dir / "summary.json"
        if summary.is_file():
            return json.loads(summary.read_text())
        if status.startswith(FINISHED):
            raise RuntimeError(f"run {run_id} ended ({status}) without a summary; its log: flwr log {run_id}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"run {run_id} did not finish within {timeout:.0f}s (status {status}); "
                               f"it keeps running on the SuperLink: flwr stop {run_id}")
        time.sleep(POLL_SECONDS)
        status = run_status(cli, run_id)


def deploy_run(*, superlink: str, config: Path | None, overrides: dict[str, Any], run_dir: Path,
               certs: Path | None, insecure: bool, timeout: float,
               echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Check everything, submit, follow; returns the run's summary."""
    parse_address(superlink)
    if insecure and certs is not None:
        raise DeployError("--insecure and --certs contradict each other; give one")
    if not insecure and certs is None:
        raise DeployError(f"give --certs DIR holding {CA_CERT} or --insecure; {INSECURE_MEANING}")
    ca = None
    if certs is not None:
        ca = (certs / CA_CERT).resolve()
        if not ca.is_file():
            raise DeployError(f"{ca} does not exist: the CA certificate that verifies the SuperLink")
    run_dir = run_dir.resolve()
    exp = deployment_experiment(config, overrides, run_dir)
    with tempfile.TemporaryDirectory(prefix="fedsim-deploy-") as tmp:
        cli = FlwrCli(superlink, ca, Path(tmp) / "flwr-home")
        run_id = submit(cli, write_app(Path(tmp) / "app", exp, run_dir))
        echo(f"submitted run {run_id} to {superlink}: {exp.strategy.name} on {exp.task.name}, "
             f"{exp.federation.clients} SuperNodes, {exp.federation.rounds} rounds -> {run_dir}")
        return follow(cli, run_id, run_dir, timeout=timeout, echo=echo)
