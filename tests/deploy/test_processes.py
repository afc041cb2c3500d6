"""The Flower command lines fedsim builds, and the refusals before anything starts (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flwr.common.config import parse_config_args
from typer.testing import CliRunner

from fedsim.cli import app
from fedsim.deploy.certs import DeployError, write_certs, write_node_keys
from fedsim.deploy.processes import parse_address, superlink_plan, supernode_argv
from fedsim.deploy.submit import write_app

pytestmark = pytest.mark.timeout(60)
runner = CliRunner()


def test_superlink_runs_tls_and_supernode_auth_and_registers_the_public_keys(tmp_path: Path) -> None:
    # Prepare
    write_certs(tmp_path / "c", ["127.0.0.1"])
    write_node_keys(tmp_path / "k", 2)
    # Execute
    plan = superlink_plan(certs=tmp_path / "c", keys=[tmp_path / "k"], port=9100)
    # Assert
    argv = plan.argv
    assert argv[argv.index("--ssl-certfile") + 1] == str((tmp_path / "c" / "server.crt").resolve())
    assert argv[argv.index("--ssl-keyfile") + 1] == str((tmp_path / "c" / "server.key").resolve())
    assert "--enable-supernode-auth" in argv and "--insecure" not in argv
    assert [p.name for p in plan.public_keys] == ["supernode-1.pub", "supernode-2.pub"]
    assert plan.address == "127.0.0.1:9100"


def test_supernode_gets_its_own_folders_through_a_node_config_flower_parses(tmp_path: Path) -> None:
    # Prepare: a data folder whose path has a space and a quote
    write_certs(tmp_path / "c", ["127.0.0.1"])
    (key, _), = write_node_keys(tmp_path / "k", 1)
    data = tmp_path / 'box "a" 1'
    data.mkdir()
    # Execute
    argv = supernode_argv(superlink="127.0.0.1:9100", certs=tmp_path / "c", key=key, data_dir=data,
                          state_dir=tmp_path / "state", port=9200, partition_id=1, num_partitions=3)
    # Assert
    config = parse_config_args([argv[argv.index("--node-config") + 1]])  # as flower-supernode parses it
    assert config == {"data-dir": str(data.resolve()), "state-dir": str((tmp_path / "state").resolve()),
                      "device": "cpu", "partition-id": 1, "num-partitions": 3}
    assert argv[argv.index("--root-certificates") + 1] == str((tmp_path / "c" / "ca.crt").resolve())
    assert argv[argv.index("--auth-supernode-private-key") + 1] == str(key.resolve())
    # a box of a generated task: its share and no data folder
    argv = supernode_argv(superlink="127.0.0.1:9100", certs=tmp_path / "c", key=key, data_dir=None,
                          state_dir=tmp_path / "state", port=9200, partition_id=0, num_partitions=2)
    assert "data-dir" not in parse_config_args([argv[argv.index("--node-config") + 1]])


@pytest.mark.parametrize(("args", "expected"), [
    # no TLS material and no --insecure: refuse, and say what --insecure would mean
    (["superlink"], "give --certs DIR (from fedsim deploy certs) or --insecure; without TLS, model weights"),
    (["superlink", "--certs", "CERTS"], "no public key was given"),
    (["superlink", "--certs", "CERTS", "--insecure"], "--insecure and --certs contradict each other"),
    (["supernode", "--superlink", "127.0.0.1", "--data-dir", "DATA", "--insecure"], "is not HOST:PORT"),
    (["supernode", "--superlink", "h:1", "--data-dir", "MISSING", "--insecure"], "is not a folder"),
    (["supernode", "--superlink", "h:1", "--data-dir", "DATA", "--certs", "CERTS"], "--key: None is not a file"),
    (["supernode", "--superlink", "h:1", "--data-dir", "DATA", "--insecure", "--partition-id", "3",
      "--num-partitions", "3"], "--partition-id: 3 is not within 0..2"),
    (["run", "--superlink", "h:1", "--certs", "DATA"], "ca.crt does not exist"),
    (["run", "--superlink", "h:1", "--insecure", "--set", "federation.rounds=0"], "federation.rounds"),
])
def test_bad_deploy_input_is_one_line_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    # Prepare
    write_certs(tmp_path / "CERTS", ["127.0.0.1"])
    (tmp_path / "DATA").mkdir()
    names = {"CERTS", "DATA", "MISSING"}
    args = [str(tmp_path / a) if a in names else a for a in args]
    # Execute
    result = runner.invoke(app, ["deploy", *args])
    # Assert
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.output


def test_submitted_app_carries_the_experiment_and_fedsims_components(tmp_path: Path) -> None:
    import tomllib

    from fedsim.config import load_config

    # Prepare
    exp = load_config(None, {"federation.clients": 3, "federation.clients_per_round": 3, "engine.name": "flower"})
    # Execute
    folder = write_app(tmp_path / "app", exp, tmp_path / "run")
    # Assert
    project = tomllib.loads((folder / "pyproject.toml").read_text())
    assert project["tool"]["flwr"]["app"]["components"] == {"serverapp": "fedsim.deploy.serverapp:app",
                                                            "clientapp": "fedsim.deploy.warm:app"}
    run_config = project["tool"]["flwr"]["app"]["config"]
    assert run_config["config-yaml"] == exp.to_yaml() and run_config["run-dir"] == str(tmp_path / "run")
    assert parse_address("[::1]:8000") == ("::1", 8000)
    with pytest.raises(DeployError):
        parse_address("host:99999")
