"""``fedsim deploy unit``: systemd units that restart a SuperLink/SuperNode on failure and at boot."""

from __future__ import annotations

import configparser
import sys
from pathlib import Path

from typer.testing import CliRunner

from fedsim.cli import app

runner = CliRunner()


def test_a_supernode_unit_runs_fedsims_wrapper_with_the_environments_bin_on_path(tmp_path: Path) -> None:
    # Execute
    result = runner.invoke(app, ["deploy", "unit", "supernode", "--superlink", "server.local:8000", "--certs",
                                 "/etc/fedsim/certs", "--key", "/etc/fedsim/supernode-1.key", "--partition-id", "0",
                                 "--num-partitions", "2", "--user", "fedsim", "--workdir", str(tmp_path),
                                 "-o", str(tmp_path / "fedsim-supernode.service")])
    # Assert
    assert result.exit_code == 0, result.output
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((tmp_path / "fedsim-supernode.service").read_text())
    service = unit["Service"]
    assert service["ExecStart"] == (f"{sys.executable} -m fedsim deploy supernode --superlink server.local:8000 "
                                    "--certs /etc/fedsim/certs --key /etc/fedsim/supernode-1.key --partition-id 0 "
                                    "--num-partitions 2")
    assert service["Restart"] == "on-failure" and unit["Install"]["WantedBy"] == "multi-user.target"
    assert service["User"] == "fedsim" and service["WorkingDirectory"] == str(tmp_path)
    text = (tmp_path / "fedsim-supernode.service").read_text()
    assert f"Environment=PATH={Path(sys.executable).parent}:" in text  # Flower starts its helpers by name
    assert "systemctl enable --now fedsim-supernode" in result.output


def test_a_unit_refuses_relative_paths_and_insecure_in_one_line() -> None:
    for args, expected in ((["superlink", "--certs", "certs/"], "'certs/' is a relative path"),
                           (["superlink", "--insecure"], "not --insecure"), (["server"], "not one of")):
        result = runner.invoke(app, ["deploy", "unit", *args])
        assert result.exit_code == 2 and expected in result.output and len(result.output.strip().splitlines()) == 1
