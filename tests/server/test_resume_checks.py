"""``--resume`` checks its run directory before start-up; ``--out`` never clobbers one.

Run directories are written the way ``RunWriter`` writes them (``config.yaml``,
``rounds.jsonl``, ``checkpoint.pt``); one tiny real run checks that what the round loop
writes passes the checks. Resumes are tried with ``--check``, which runs every check and
exits before Ray starts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from fedsim.cli import app
from fedsim.config import ConfigError, load_config
from fedsim.server.resume import IDENTITY_KEY, check_new_run_dir, check_resumable, identity
from fedsim.factory import strategy_for, task_for

runner = CliRunner()
TINY = {"task.name": "synthetic", "model.name": "mlp", "federation.clients": 2,
        "federation.clients_per_round": 2, "federation.rounds": 3,
        "task.params": {"samples": 4, "image_size": 8, "eval_samples": 4}}


def tiny(**extra: object):
    return load_config(None, {**TINY, **extra})


def write_run(run_dir: Path, exp, *, completed: int = 2, checkpoint: bool = True,
              with_identity: bool = True) -> Path:
    """A run directory as ``RunWriter`` leaves it after round ``completed``."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(exp.to_yaml())
    rows = [{"round": r, "train_loss": 1.0} for r in range(completed + 1)]
    (run_dir / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if checkpoint:
        state = {"round": completed, "global": task_for(exp).build_model().state_dict(),
                 "strategy": strategy_for(exp).state_dict(), "failed_streak": 0,
                 "aggregations": completed}
        if with_identity:
            state[IDENTITY_KEY] = identity(exp)
        torch.save(state, run_dir / "checkpoint.pt")
    return run_dir


def resume(run_dir: Path, *args: str):
    return runner.invoke(app, ["run", "--check", "--resume", str(run_dir), *args])


def one_line_exit_2(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output and "weights_only" not in result.output
    return lines[0].removeprefix("error: ")


def test_a_matching_run_dir_resumes(tmp_path):
    run = write_run(tmp_path / "run", tiny())

    result = resume(run, "--rounds", "5")

    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["federation"]["rounds"] == 5


@pytest.mark.parametrize("written, resumed, expected", [
    # case: another strategy
    ({}, {"strategy.name": "ldawa"},
     "checkpoint.pt was written by strategy 'fedavg' but config.yaml says 'ldawa'"),
    # case: another model
    ({}, {"model.name": "resnet_small"},
     "checkpoint.pt was written by model 'mlp' but config.yaml says 'resnet_small'"),
    # case: another task
    ({"task.name": "image", "task.params": {}}, {},
     "checkpoint.pt was written by task 'image' but config.yaml says 'synthetic'"),
])
def test_config_and_checkpoint_that_disagree_exit_2(tmp_path, written, resumed, expected):
    run = write_run(tmp_path / "run", tiny(**written))
    (run / "config.yaml").write_text(tiny(**resumed).to_yaml())  # e.g. edited, or copied from elsewhere

    line = one_line_exit_2(resume(run))

    assert line.startswith(f"resume: {expected}; resume with the config the run started with")


@pytest.mark.parametrize("resumed, expected", [
    # case: another backbone: other parameter names
    ({"model.name": "resnet_small"}, "holds another model than config.yaml's 'resnet_small' on task 'synthetic' "
                                     "(missing: backbone."),
    # case: same names, other shapes (inputs of 12x12 instead of 8x8)
    ({"task.params": {"samples": 4, "image_size": 12, "eval_samples": 4}},
     "checkpoint.pt's backbone.fc.weight is [100, 64] torch.float32 but config.yaml's model has [100, 144]"),
])
def test_checkpoints_without_identity_are_compared_by_parameters(tmp_path, resumed, expected):
    run = write_run(tmp_path / "run", tiny(), with_identity=False)  # written before checkpoints recorded it
    (run / "config.yaml").write_text(tiny(**resumed).to_yaml())

    line = one_line_exit_2(resume(run))

    assert expected in line


def test_checkpoint_without_identity_that_matches_resumes(tmp_path):
    run = write_run(tmp_path / "run", tiny(), with_identity=False)

    assert resume(run).exit_code == 0


@pytest.mark.parametrize("damage", [
    lambda data: b"not a checkpoint at all",  # case: garbage
    lambda data: data[: len(data) // 2],  # case: truncated
    lambda data: b"",  # case: empty
])
def test_corrupt_checkpoint_is_one_line(tmp_path, damage):
    run = write_run(tmp_path / "run", tiny())
    path = run / "checkpoint.pt"
    path.write_bytes(damage(path.read_bytes()))

    line = one_line_exit_2(resume(run))

    assert line.startswith(f"{path} is not a readable checkpoint (")


def test_checkpoint_of_something_else_is_one_line(tmp_path):
    run = write_run(tmp_path / "run", tiny())
    torch.save({"weights": torch.zeros(3)}, run / "checkpoint.pt")

    line = one_line_exit_2(resume(run))

    assert line == f"{run / 'checkpoint.pt'} is not a fedsim checkpoint (no round, global, strategy, failed_streak)"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000), cut=st.floats(0.0, 1.0))
def test_any_damaged_checkpoint_is_one_config_error(tmp_path, data, cut):
    run = tmp_path / "run"
    if not run.exists():
        write_run(run, tiny())
        (run / "good.pt").write_bytes((run / "checkpoint.pt").read_bytes())
    good = (run / "good.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(good[: int(cut * len(good))] + data)

    try:
        check_resumable(run, tiny())
    except ConfigError as err:
        assert "\n" not in str(err)


def test_missing_checkpoint_after_completed_rounds_exits_2_and_keeps_rounds(tmp_path):
    run = write_run(tmp_path / "run", tiny(), completed=2, checkpoint=False)
    before = (run / "rounds.jsonl").read_bytes()

    line = one_line_exit_2(resume(run))

    assert line.startswith(f"resume: {run / 'rounds.jsonl'} has 2 completed rounds but there is no checkpoint.pt")
    assert (run / "rounds.jsonl").read_bytes() == before


@pytest.mark.parametrize("completed", [
    None,  # case: an empty rounds.jsonl
    0,  # case: only round 0's evaluation
    1,  # case: killed after round 1's line, before its checkpoint (the loop writes the line first)
])
def test_a_run_dir_without_a_checkpoint_restarts_up_to_round_1(tmp_path, completed):
    run = write_run(tmp_path / "run", tiny(), completed=completed or 0, checkpoint=False)
    if completed is None:
        (run / "rounds.jsonl").write_text("")

    check_resumable(run, tiny())  # no error: the run restarts from round 0, losing at most round 1

    assert resume(run).exit_code == 0


@pytest.mark.parametrize("break_config, expected", [
    (lambda p: p.unlink(), "resume: {run}/config.yaml is missing; a run cannot be resumed without its config"),
    (lambda p: p.write_bytes(bytes(range(256))), "{run}/config.yaml: not a UTF-8 text file"),
    (lambda p: p.write_text("federation: [\n"), "{run}/config.yaml: bad YAML at line"),
])
def test_missing_or_unreadable_config_is_one_line(tmp_path, break_config, expected):
    run = write_run(tmp_path / "run", tiny())
    break_config(run / "config.yaml")

    line = one_line_exit_2(resume(run))

    assert line.startswith(expected.format(run=run))


def test_a_directory_without_a_run_is_refused(tmp_path):
    (tmp_path / "config.yaml").write_text(tiny().to_yaml())

    assert one_line_exit_2(resume(tmp_path)) == f"resume: {tmp_path} holds no fedsim run (no rounds.jsonl)"
    assert one_line_exit_2(resume(tmp_path / "nope")).startswith(f"resume: {tmp_path / 'nope'} is not a directory")


def test_fewer_rounds_than_completed_is_refused(tmp_path):
    run = write_run(tmp_path / "run", tiny(), completed=2)

    line = one_line_exit_2(resume(run, "--rounds", "1"))

    assert line == "federation.rounds: 1 is fewer than the 2 rounds this run completed; choose at least 2"


@pytest.mark.parametrize("lines, expected", [
    (1, "rounds.jsonl ends at round 0 but checkpoint.pt is from round 2"),  # case: lines lost
    (5, "rounds.jsonl ends at round 4 but checkpoint.pt is from round 2"),  # case: an older checkpoint
])
def test_rounds_jsonl_that_disagrees_with_the_checkpoint_is_refused(tmp_path, lines, expected):
    run = write_run(tmp_path / "run", tiny(), completed=2)
    (run / "rounds.jsonl").write_text("".join(json.dumps({"round": r}) + "\n" for r in range(lines)))

    line = one_line_exit_2(resume(run))

    assert expected in line


def test_the_round_after_the_checkpoint_may_have_its_line(tmp_path):
    run = write_run(tmp_path / "run", tiny(), completed=2)
    with open(run / "rounds.jsonl", "a") as fh:  # killed between round 3's line and its checkpoint
        fh.write(json.dumps({"round": 3}) + "\n")

    check_resumable(run, tiny())


@pytest.mark.parametrize("args", [["--strategy", "ldawa"], ["--out", "elsewhere"], ["--set", "federation.lr=0.1"],
                                  ["--config", "exp.yaml"]])
def test_resume_changes_only_rounds_and_ray_address(tmp_path, args):
    run = write_run(tmp_path / "run", tiny())

    line = one_line_exit_2(resume(run, *args))

    assert line == "--resume takes the run's own config.yaml; only --rounds and --ray-address may change"


def test_resumed_config_ray_address_is_used_only_when_given_again(tmp_path):
    exp = tiny(**{"engine.ray_address": "10.1.2.3:6379"})
    run = write_run(tmp_path / "run", exp)

    dropped = resume(run)
    given = resume(run, "--ray-address", "10.1.2.3:6379", "--quiet")
    other = resume(run, "--set", "engine.ray_address=auto")

    assert dropped.exit_code == 0, dropped.output
    assert yaml.safe_load(dropped.stdout)["engine"]["ray_address"] is None
    assert "not attaching to the Ray cluster 10.1.2.3:6379" in dropped.stderr
    assert yaml.safe_load(given.stdout)["engine"]["ray_address"] == "10.1.2.3:6379"
    assert yaml.safe_load(other.stdout)["engine"]["ray_address"] == "auto"


def test_resume_with_a_malformed_ray_address_is_one_line(tmp_path):
    run = write_run(tmp_path / "run", tiny())

    assert one_line_exit_2(resume(run, "--ray-address", "head")).startswith("engine.ray_address: expected HOST:PORT")


@pytest.mark.parametrize("case", ["new", "empty", "foreign", "run", "file", "below-a-file"])
def test_check_new_run_dir(tmp_path, case):
    target = tmp_path / "out"
    if case == "empty":
        target.mkdir()
    elif case == "foreign":
        target.mkdir()
        (target / "model.pt").write_bytes(b"mine")
    elif case == "run":
        target.mkdir()
        (target / "rounds.jsonl").write_text("")
    elif case in ("file", "below-a-file"):
        target.write_text("a file")
        target = target / "run" if case == "below-a-file" else target

    if case in ("new", "empty"):
        check_new_run_dir(target)
        return
    with pytest.raises(ConfigError) as info:
        check_new_run_dir(target)
    expected = {"foreign": "is not empty and holds no fedsim run", "run": "already holds a run",
                "file": "is a file, not a directory", "below-a-file": "is a file, not a directory"}[case]
    assert expected in str(info.value)


def test_run_writer_refuses_a_foreign_directory(tmp_path):
    from fedsim.server.outputs import RunDirError, RunWriter

    (tmp_path / "config.yaml").write_text("mine")

    with pytest.raises(RunDirError, match="holds no fedsim run"):
        RunWriter(tmp_path, "config: new")
    assert (tmp_path / "config.yaml").read_text() == "mine"


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """One tiny real run (synthetic task, mlp, 2 clients, 1 round), written by the round loop."""
    from fedsim.launcher import simulate

    run_dir = tmp_path_factory.mktemp("real") / "run"
    simulate(tiny(**{"federation.rounds": 1}), str(run_dir), quiet=True)
    return run_dir


@pytest.mark.timeout(300)
def test_what_the_round_loop_writes_passes_the_checks(real_run):
    exp = load_config(real_run / "config.yaml", {"engine.ray_address": None})

    check_resumable(real_run, exp)

    state = torch.load(real_run / "checkpoint.pt", weights_only=True)
    assert state[IDENTITY_KEY] == {"strategy": "fedavg", "model": "mlp", "task": "synthetic"}
    assert resume(real_run, "--rounds", "2").exit_code == 0


@pytest.mark.timeout(300)
def test_real_run_resumed_under_another_strategy_exits_2(real_run, tmp_path):
    import shutil

    run = Path(shutil.copytree(real_run, tmp_path / "copy"))
    (run / "config.yaml").write_text(tiny(**{"strategy.name": "fedyogi", "federation.rounds": 1}).to_yaml())

    line = one_line_exit_2(resume(run))

    assert line.startswith("resume: checkpoint.pt was written by strategy 'fedavg' but config.yaml says 'fedyogi'")
