"""The CLI: `fedsim list`, and bad input -> one line on stderr, exit code 2, no traceback."""

import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from fedsim.cli import app

runner = CliRunner()


def test_list_shows_every_registered_plugin():
    from fedsim.plugins import load_plugins
    from fedsim.registry import MODELS, STRATEGIES, TASKS

    load_plugins()
    result = runner.invoke(app, ["list"])

    assert result.exit_code == 0
    for name in STRATEGIES.names() + TASKS.names() + MODELS.names():
        assert name in result.stdout
    # objectives that do not learn yet are flagged with their numbers
    assert "experimental: byol (kNN" in " ".join(result.stdout.split())


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


def _one_line_exit_2(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


# --- refused before Ray starts (issue 17) ---

@pytest.mark.parametrize("args, fragment", [
    (["--set", "federation.lr=.inf"], "federation.lr: must be a finite number (got inf)"),
    (["--set", "federation.lr=nan"], None),  # case: "nan" is text to YAML: not a number at all
    (["--set", "federation.lr=.nan"], "federation.lr: must be a finite number (got nan)"),
    (["--task", "synthetic", "--model", "mlp", "--data-dir", "."],
     "task.data_dir: task 'synthetic' does not read data folders"),
    (["--set", "engine.num_cpus_per_client=999"], "engine.num_cpus_per_client: 999 is more than the"),
    (["--ray-address", "localhost"], "engine.ray_address: expected HOST:PORT"),  # case: no port
    (["--ray-address", "localhost:70000"], "engine.ray_address: expected HOST:PORT"),  # case: port too big
    (["--ray-address", "http://head:6379"], "engine.ray_address: expected HOST:PORT"),  # case: not ray://
])
@pytest.mark.parametrize("check", [True, False])  # refused at --check and before a run starts
def test_bad_settings_exit_2_before_ray_starts(args, fragment, check):
    result = runner.invoke(app, ["run", *(["--check"] if check else []), *args])

    line = _one_line_exit_2(result)
    assert fragment is None or fragment in line


def test_deeply_nested_and_binary_configs_are_one_line(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("task:\n  params:\n    x: " + "[" * 5000 + "]" * 5000 + "\n")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)) * 8)

    assert "nested more than 20 levels deep" in _one_line_exit_2(runner.invoke(app, ["run", "--config", str(deep)]))
    assert "not a UTF-8 text file" in _one_line_exit_2(runner.invoke(app, ["run", "--config", str(binary)]))


def _tree(path):
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_out_into_a_foreign_directory_leaves_it_byte_identical(tmp_path):
    mine = tmp_path / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "config.yaml").write_text("my: own config\n")
    (mine / "model.pt").write_bytes(b"\x80my weights")
    (mine / "sub" / "notes.txt").write_text("keep me")
    before = _tree(mine)

    result = runner.invoke(app, ["run", "--task", "synthetic", "--model", "mlp", "--out", str(mine)])

    line = _one_line_exit_2(result)
    assert f"out: {mine} is not empty and holds no fedsim run" in line
    assert _tree(mine) == before


def test_out_into_a_fedsim_run_suggests_resume(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "rounds.jsonl").write_text("")

    line = _one_line_exit_2(runner.invoke(app, ["run", "--out", str(run)]))

    assert line.endswith(f"already holds a run; choose another --out, or --resume {run}")


def test_out_that_is_a_file_exits_2_at_once(tmp_path):
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a directory")
    inside = a_file / "run"

    # the CLI in a fresh interpreter that reports whether Ray was ever imported
    script = ("import sys\nfrom fedsim.cli import app\ntry:\n    app()\nfinally:\n"
              "    print('ray imported:', 'ray' in sys.modules)")

    for out in (a_file, inside):  # case: the file itself; a path below it
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", script, "run", "--task", "synthetic", "--model", "mlp",
                               "--out", str(out)], capture_output=True, text=True, timeout=120)
        elapsed = time.monotonic() - started

        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == f"error: out: {a_file} is a file, not a directory; choose another --out"
        assert proc.stdout.strip() == "ray imported: False"
        assert elapsed < 30, elapsed  # about 3 s here; Flower and Ray's start-up alone took 15 s
    assert a_file.read_text() == "not a directory"


@pytest.mark.parametrize("args, words", [
    (["--task", "audio", "--model", "mlp"], "square inputs"),  # case: a model the task cannot use
    (["--set", "model.params.foo=1"], "model.params for 'resnet_small'"),  # case: unknown model option
])
def test_the_task_and_its_model_are_built_before_start_up(args, words):
    result = CliRunner().invoke(app, ["run", *args, "--check"])
    assert result.exit_code == 2 and words in result.output
