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
POLL_SECONDS = 0.1  # reading the run directory (local files)
STATUS_SECONDS = 5.0  # asking Flower for the run's status (a flwr process each time)
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


WARM_CLIENTAPP = "fedsim.deploy.warm:app"  # hands each message to the box's long-lived fedsim process
COLD_CLIENTAPP = "fedsim.client.app:app"  # fedsim's ClientApp itself: imports and builds per message


def write_app(folder: Path, exp: ExperimentConfig, run_dir: Path, *, clientapp: str = WARM_CLIENTAPP) -> Path:
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
clientapp = "{clientapp}"

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


class BoxesFailed(RuntimeError):
    """The run finished but boxes failed (:func:`fedsim.deploy.boxes.failing_boxes`): ``deploy
    run`` prints ``lines`` and exits with :data:`EXIT_BOXES_FAILED`."""

    def __init__(self, lines: list[str], summary: dict[str, Any]) -> None:
        super().__init__("; ".join(lines))
        self.lines, self.summary = lines, summary


EXIT_BOXES_FAILED = 4


def _round_line(row: dict[str, Any]) -> str:
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in row.items()
                        if isinstance(v, float) and k.endswith(("top1", "loss", "_map", "mae", "psnr")))
    failed = sum(row.get("failed", {}).values()) if isinstance(row.get("failed"), dict) else 0
    counts = f" ({row['clients_ok']} ok, {failed} failed)" if "clients_ok" in row else ""
    return f"round {row['round']}{counts}: {metrics}"


def follow(cli: FlwrCli, run_id: int, run_dir: Path, *, timeout: float,
           echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Print the boxes once they answered whether they are ready (before round 1), then each
    round as soon as it lands in ``rounds.jsonl``, until the run's ``summary.json`` is written;
    return the summary.

    The run directory is read every ``POLL_SECONDS``; Flower's run status (a ``flwr`` call)
    only every ``STATUS_SECONDS``. Raises :class:`RuntimeError` when Flower reports the run
    finished (failed, stopped) without a summary, or after ``timeout`` seconds.
    """
    from fedsim.deploy.boxes import describe, read_boxes
    from fedsim.server.outputs import read_rounds

    deadline = time.monotonic() + timeout
    shown, boxes_shown = 0, False
    status, status_at = "pending", time.monotonic()
    while True:
        if not boxes_shown and (ledger := read_boxes(run_dir)) is not None:
            for box in ledger["boxes"]:
                echo(describe(box))
            boxes_shown = True
        rows = read_rounds(run_dir) if run_dir.is_dir() else []
        for row in rows[shown:]:
            echo(_round_line(row))
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
        if time.monotonic() - status_at > STATUS_SECONDS:
            status, status_at = run_status(cli, run_id), time.monotonic()


def box_failures(run_dir: Path, max_failed_fraction: float, *, wait: float = 30.0) -> list[str]:
    """The lines of :func:`fedsim.deploy.boxes.failing_boxes` once the ServerApp wrote its
    final ``boxes.json`` (right after the summary; waits up to ``wait`` seconds for it)."""
    from fedsim.deploy.boxes import failing_boxes, read_boxes

    deadline = time.monotonic() + wait
    while (ledger := read_boxes(run_dir)) is None or not ledger.get("complete"):
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_SECONDS)
    return failing_boxes(ledger["boxes"], max_failed_fraction) if ledger else []


def deploy_run(*, superlink: str, config: Path | None, overrides: dict[str, Any], run_dir: Path,
               certs: Path | None, insecure: bool, timeout: float, max_failed_fraction: float = 0.5,
               warm: bool = True, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Check everything, submit, follow; returns the run's summary.

    Raises :class:`BoxesFailed` when the run finished but a box failed every round it was
    sampled for, or more than ``max_failed_fraction`` of the client updates failed; a run
    that ended without a summary (:class:`RuntimeError`) also echoes its failing boxes first.
    """
    if not 0.0 <= max_failed_fraction <= 1.0:
        raise DeployError(f"--max-failed-fraction: {max_failed_fraction} is not within 0..1")
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
        app_dir = write_app(Path(tmp) / "app", exp, run_dir, clientapp=WARM_CLIENTAPP if warm else COLD_CLIENTAPP)
        run_id = submit(cli, app_dir)
        echo(f"submitted run {run_id} to {superlink}: {exp.strategy.name} on {exp.task.name}, "
             f"{exp.federation.clients} SuperNodes, {exp.federation.rounds} rounds -> {run_dir}")
        try:
            summary = follow(cli, run_id, run_dir, timeout=timeout, echo=echo)
        except RuntimeError:
            for line in box_failures(run_dir, max_failed_fraction, wait=5.0):
                echo(line)
            raise
    failing = box_failures(run_dir, max_failed_fraction)
    if failing:
        raise BoxesFailed(failing, summary)
    return summary
