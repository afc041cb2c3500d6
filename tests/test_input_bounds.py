"""Every bad number or flag is one line, exit 2, before anything starts; the actor pool is
never larger than the planned workers."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fedsim.cli import app
from fedsim.config import MAX_EPOCHS, MAX_ROUNDS, MAX_SEED, ConfigError, load_config

runner = CliRunner()


def _one_line_exit_2(args: list[str]) -> str:
    result = runner.invoke(app, args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, (result.exit_code, result.output)
    assert "Usage" not in result.output and "Traceback" not in result.output
    return lines[0]


@pytest.mark.parametrize("args, words", [
    (["--rounds", str(10 ** 30)], f"federation.rounds: Input should be less than or equal to {MAX_ROUNDS}"),
    (["--local-epochs", "1.0e+21"], "federation.local_epochs:"),
    (["--seed", "1.0e+30"], "seed:"),
    (["--seed", str(2 ** 32)], f"seed: Input should be less than or equal to {MAX_SEED}"),
    (["--clients", "true"], "federation.clients: expected a number, got true"),
    (["--rounds", "false"], "federation.rounds: expected a number, got false"),
    (["--set", "federation.lr=true"], "federation.lr: expected a number, got true"),
    (["--clients", "3", "--clients-per-round", "2", "--set", "faults={nan: [1, 3]}"],
     "faults.nan: client id(s) 3 are not among the 3 clients; ids run 0..2"),
    (["--set", "engine.num_cpus_per_client=1e-9"], "engine.num_cpus_per_client: Input should be greater than or equal to 0.5"),
])
def test_out_of_range_numbers_are_one_line_exit_2(args, words):
    assert words in _one_line_exit_2(["run", "--check", *args])


def test_the_bounds_themselves_are_accepted():
    exp = load_config(None, {"federation.rounds": MAX_ROUNDS, "federation.local_epochs": MAX_EPOCHS,
                             "seed": MAX_SEED, "engine.num_cpus_per_client": 0.5, "faults": {"nan": [0, 19]}})
    assert (exp.federation.rounds, exp.seed, exp.engine.num_cpus_per_client) == (MAX_ROUNDS, MAX_SEED, 0.5)
    assert load_config(None, {"evaluation.linear_probe": True}).evaluation.linear_probe is True  # booleans stay
    with pytest.raises(ConfigError, match="faults.nan: client id"):
        load_config(None, {"faults": {"nan": [-1]}})


@pytest.mark.parametrize("args", [
    ["deploy", "superlink", "--insecure", "--port", "99999"],  # case: above 65535
    ["deploy", "superlink", "--insecure", "--port", "0"],  # case: the superlink needs a real port
])
def test_deploy_ports_out_of_range_are_one_line_exit_2(args):
    assert "is not a TCP port; choose one in 1..65535" in _one_line_exit_2(args)


def test_supernode_port_out_of_range_is_one_line_exit_2(tmp_path):
    line = _one_line_exit_2(["deploy", "supernode", "--superlink", "127.0.0.1:9092", "--insecure",
                             "--data-dir", str(tmp_path), "--port", "70000"])
    assert "--port: 70000 is not a TCP port" in line


def test_flower_s_actor_pool_is_capped_at_the_planned_workers(monkeypatch):
    # Prepare: a cluster where Flower would start 8 actors (2 cores / 0.25 CPUs each)
    from flwr.simulation.ray_transport import ray_actor

    from fedsim.engines import make_engine
    from fedsim.launcher import actor_pool_at_most, planned_workers

    monkeypatch.setattr(ray_actor, "pool_size_from_resources", lambda resources: 8)
    cohort = load_config(None, {"engine.workers": 2})
    flower = load_config(None, {"engine.name": "flower", "federation.clients": 20,
                                "federation.clients_per_round": 3})
    # Execute / Assert: cohort -> its workers, flower -> the clients of one round; restored after
    for exp, expected in ((cohort, 2), (flower, 3)):
        with actor_pool_at_most(planned_workers(exp, make_engine(exp))):
            pool = ray_actor.BasicActorPool(actor_type=object, client_resources={"num_cpus": 0.25}, actor_kwargs={})
        assert pool.actors_capacity == expected
    assert ray_actor.BasicActorPool(actor_type=object, client_resources={}, actor_kwargs={}).actors_capacity == 8


def test_error_lines_are_one_line_of_at_most_300_characters_with_escaped_bytes():
    import os

    from fedsim.config import MAX_ERROR_CHARS, one_line

    assert one_line("a\n  b\tc") == "a b c"
    long = one_line("field: " + "x" * 5000 + " choose 1..3")
    assert len(long) == MAX_ERROR_CHARS and long.startswith("field: x") and long.endswith("choose 1..3")
    assert one_line("file " + os.fsdecode(b"bad\xff.png")) == "file bad\\xff.png"


def test_a_non_utf8_file_name_is_shown_with_its_path(tmp_path):
    # Prepare: an image folder whose unreadable file has a name that is not UTF-8
    import os

    import torch
    from torchvision.io import write_png

    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            write_png(torch.full((1, 6, 6), 40 * i, dtype=torch.uint8), str(tmp_path / cls / f"i{i}.png"))
    bad = os.path.join(os.fsencode(tmp_path / "b"), b"caf\xe9.png")
    with open(bad, "wb") as fh:
        fh.write(b"not an image")
    # Execute
    line = _one_line_exit_2(["run", "--check", "--task", "image", "--data-dir", str(tmp_path)])
    # Assert: the folder's path and the name with its odd byte escaped
    assert f"{tmp_path / 'b'}/caf\\xe9.png cannot be decoded" in line
