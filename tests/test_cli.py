"""The CLI: `fedsim list`, and bad input -> one line on stderr, exit code 2, no traceback."""

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from fedsim.cli import app

runner = CliRunner()


def test_list_shows_every_registered_plugin():
    from fedsim.registry import MODELS, STRATEGIES, TASKS, load_plugins

    load_plugins()
    result = runner.invoke(app, ["list"])

    assert result.exit_code == 0
    for name in STRATEGIES.names() + TASKS.names() + MODELS.names():
        assert name in result.stdout


@pytest.mark.parametrize("args, fragment", [
    (["--strategy", "nope"], "unknown strategy 'nope'; choose one of:"),  # case: unknown strategy
    (["--clients", "10", "--clients-per-round", "20"], "clients_per_round (20) is more than clients (10)"),
    (["--set", "federation.lr=-1"], "federation.lr: Input should be greater than 0"),  # case: negative lr
    (["--clients", "abc"], "federation.clients: Input should be a valid integer"),  # case: not a number
    (["--engine", "spark"], "engine.name: Input should be 'flower' or 'cohort'"),
    (["--config", "missing.yaml"], "config file 'missing.yaml' does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(args, fragment):
    result = runner.invoke(app, ["run", *args])

    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.output


def test_real_process_bad_yaml_exit_code(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("federation: {clients: [\n")

    proc = subprocess.run([sys.executable, "-m", "fedsim", "run", "--config", str(bad)],
                          capture_output=True, text=True, timeout=120)

    assert proc.returncode == 2
    assert "bad YAML at line" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
