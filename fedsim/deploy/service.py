"""systemd units for a SuperLink and for a box's SuperNode (``fedsim deploy unit``).

The templates are files shipped with fedsim (``fedsim/deploy/units/*.service``): a service
that restarts on failure and starts at boot (``WantedBy=multi-user.target``), with the
environment's ``bin`` first on ``PATH`` (Flower starts ``flower-superexec`` and the app
processes by name) and its own ``FLWR_HOME``. ``ExecStart`` is fedsim's wrapper command
(``fedsim deploy superlink|supernode`` with the given options) run by this Python.
"""

from __future__ import annotations

import getpass
import os
import shlex
import sys
from importlib.resources import files
from pathlib import Path
from string import Template

from fedsim.deploy.certs import DeployError

ROLES = ("superlink", "supernode")


def unit_text(role: str, args: list[str], *, user: str | None = None, workdir: Path | None = None,
              flwr_home: Path | None = None) -> str:
    """The unit file of ``role`` whose ``ExecStart`` is ``fedsim deploy ROLE ARGS``."""
    if role not in ROLES:
        raise DeployError(f"unit: {role!r} is not one of {', '.join(ROLES)}")
    if any(a in ("--insecure",) for a in args):
        raise DeployError("unit: a service is for a real deployment; give --certs (and --key/--keys), not --insecure")
    workdir = (workdir or Path.cwd()).resolve()
    relative = [a for a in args if not a.startswith("-") and ("/" in a or a.startswith(".")) and not Path(a).is_absolute()]
    if relative:
        raise DeployError(f"unit: {relative[0]!r} is a relative path; a service needs absolute paths")
    template = Template(files("fedsim.deploy").joinpath("units", f"fedsim-{role}.service").read_text())
    bin_dir = str(Path(sys.executable).parent)
    return template.substitute(
        user=user or getpass.getuser(), workdir=str(workdir),
        path=os.pathsep.join([bin_dir, "/usr/local/bin", "/usr/bin", "/bin"]),
        flwr_home=str(flwr_home or workdir / "flwr-home"),
        exec_start=shlex.join([sys.executable, "-m", "fedsim", "deploy", role, *args]))
