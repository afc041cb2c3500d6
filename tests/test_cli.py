"""The CLI: `fedsim list`, `--version`, bundled experiments by name, warnings, and bad input ->
one line on stderr, exit code 2, no traceback."""

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
    assert "experimental: order (kNN" in " ".join(result.stdout.split())


def test_piped_list_rows_are_whole_lines_even_when_narrow():
    from fedsim.plugins import load_plugins
    from fedsim.registry import STRATEGIES

    load_plugins()
    result = runner.invoke(app, ["list"], env={"COLUMNS": "40"})

    lines = result.stdout.splitlines()
    assert result.exit_code == 0 and lines[0] == "strategies:"
    for name, text in STRATEGIES.describe().items():
        assert any(line.split() == [name, *text.split()] for line in lines), (name, result.stdout)
    assert "─" not in result.stdout and "\x1b" not in result.stdout


@pytest.mark.parametrize("args, fragment", [
    (["--strategy", "nope"], "unknown strategy 'nope'; choose one of:"),  # case: unknown strategy
    (["--clients", "10", "--clients-per-round", "20"], "clients_per_round (20) is more than clients (10)"),
    (["--set", "federation.lr=-1"], "federation.lr: Input should be greater than 0"),  # case: negative lr
    (["--clients", "abc"], "federation.clients: Input should be a valid integer"),  # case: not a number
    (["--engine", "spark"], "engine.name: unknown engine 'spark'; choose one of: cohort, flower"),
    (["--config", "missing.yaml"], "config file 'missing.yaml' does not exist"),
    (["--config", "nope"], "names no bundled experiment (audio, audio_image, byol, cardio, cardiolive_paper, fassl_objectives,"),
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


@pytest.mark.slow
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


# --- issue 30: --version, bundled experiments by name, a light `fedsim list` ---

def test_version_is_the_one_in_pyproject():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    result = runner.invoke(app, ["--version"])

    assert result.exit_code == 0
    assert result.stdout == f"fedsim {project['version']}\n"


def test_list_imports_no_torch_and_names_the_bundled_experiments():
    script = ("import sys\nfrom fedsim.cli import app\ntry:\n    app(['list'])\nfinally:\n"
              "    print('torch imported:', 'torch' in sys.modules)")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "COLUMNS": "200"})
    elapsed = time.monotonic() - started

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("torch imported: False")
    for name in ("ldawa", "image", "resnet_small", "quickstart", "ldawa_vs_fedavg"):
        assert f" {name} " in proc.stdout
    assert "bench: L-DAWA vs FedAvg" in proc.stdout
    assert elapsed < 30, elapsed  # about 1 s on an idle machine; importing torch alone takes 2-10 s


def test_the_listing_read_from_source_is_the_registry_after_import():
    from fedsim.plugins import builtin_listing, load_plugins
    from fedsim.registry import MODELS, STRATEGIES, TASKS

    listing = builtin_listing()
    load_plugins()

    def builtin(registry):  # other tests register test plugins in this process
        return {n: d for n, d in registry.describe().items() if registry.get(n).__module__.startswith("fedsim.")}

    assert listing == {"strategy": builtin(STRATEGIES), "task": builtin(TASKS), "model": builtin(MODELS)}
    assert "ldawa" in listing["strategy"] and listing["strategy"]["ldawa"]


def test_experimental_objectives_read_from_source_are_the_tasks_attributes():
    from fedsim.plugins import builtin_experimental, load_plugins
    from fedsim.registry import TASKS

    flagged = builtin_experimental()
    load_plugins()

    assert flagged == {name: TASKS.get(name).experimental for name in TASKS.names()
                       if getattr(TASKS.get(name), "experimental", None)}
    assert "colorize" in flagged["video"]  # below its random-init probe (docs)
    # every audio objective and image BYOL beat both baselines on average at their documented rounds
    assert "audio" not in flagged and "image" not in flagged


@pytest.mark.parametrize("given", ["quickstart", "quickstart.yaml"])
def test_a_bundled_experiment_is_found_by_name_from_any_directory(tmp_path, monkeypatch, given):
    monkeypatch.chdir(tmp_path)  # no simulations/ folder here

    result = runner.invoke(app, ["run", "--config", given, "--check"])

    assert result.exit_code == 0, result.output
    assert "clients: 1000" in result.stdout and "name: ldawa" in result.stdout


def test_an_existing_path_wins_over_a_bundled_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quickstart").write_text("federation: {clients: 7, clients_per_round: 7}\n")

    result = runner.invoke(app, ["run", "--config", "quickstart", "--check"])

    assert result.exit_code == 0, result.output
    assert "clients: 7" in result.stdout


def test_bench_dry_run_finds_its_bundled_grid_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    result = runner.invoke(app, ["bench", "--config", "ldawa_vs_fedavg", "--dry-run", "--out", "b"])

    assert result.exit_code == 0, result.output
    cells = result.stdout.splitlines()
    assert len(cells) == 12 and all(line.startswith("new ") for line in cells)  # 2 strategies x 2 E x 3 seeds
    assert any("strategy=ldawa" in line for line in cells) and any("strategy=fedavg" in line for line in cells)
    assert list(tmp_path.iterdir()) == []


# --- issue 30: a strategy schedule that covers the whole run is one warning line ---

@pytest.mark.parametrize("rounds, warned", [(2, True), (3, True), (4, False)])
def test_an_ldawa_warm_up_covering_the_run_is_a_warning(rounds, warned):
    result = runner.invoke(app, ["run", "--config", "quickstart", "--rounds", str(rounds), "--check"])

    assert result.exit_code == 0, result.output
    warning = (f"warning: ldawa: warm-up of 3 rounds covers all {rounds} rounds; this run is plain FedAvg "
               "(run more than 3 rounds, or set strategy.params.warmup_rounds)")
    assert result.stderr.splitlines() == ([warning] if warned else [])


def test_a_bench_warns_once_per_distinct_schedule(tmp_path):
    result = runner.invoke(app, ["bench", "--strategies", "fedavg,ldawa,fedvssl", "--seeds", "0,1", "--rounds", "1",
                                 "--tasks", "synthetic", "--model", "mlp", "--dry-run", "--out", str(tmp_path / "b")])

    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "warning: ldawa: warm-up of 3 rounds covers all 1 rounds; this run is plain FedAvg "
        "(run more than 3 rounds, or set strategy.params.warmup_rounds)",
        "warning: fedvssl: SWA starts at the 2nd aggregation but this run has only 1 round; "
        "it is FedVSSL without SWA (run 2 rounds or more)"]
