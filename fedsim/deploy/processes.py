"""The Flower processes of a deployment: ``flower-superlink``, ``flower-supernode`` and the
``flwr`` CLI calls (register a SuperNode key, submit and list runs), as command lines.

fedsim starts Flower's own executables rather than re-implementing them; this module only
builds their command lines from fedsim's folders (:mod:`fedsim.deploy.certs`), checks the
inputs first (one line, exit 2) and runs the ``flwr`` CLI against a SuperLink connection kept
in a private ``FLWR_HOME`` (the user's ``~/.flwr`` is never changed).

What the flags mean (Flower 1.41, tried on loopback by ``tests/deploy/``): the SuperLink serves the
Fleet API (SuperNodes) and the Control API (``flwr``) over HTTPS on one ``--host``/``--port``;
``--enable-supernode-auth`` makes it refuse a SuperNode whose public key was not registered
(``flwr supernode register``; refusal code 2004). A SuperNode verifies the SuperLink with the
CA certificate (``--root-certificates``) and proves its identity with its private key.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fedsim import records as R
from fedsim.deploy.certs import CA_CERT, SERVER_CERT, SERVER_KEY, DeployError

CONNECTION = "fedsim"  # the connection's name in the private FLWR_HOME
SUPEREXEC_POLL_ENV = "FLWR_SUPEREXEC_TASK_POLL_INTERVAL"  # Flower's own setting (seconds, default 1.0)
SUPEREXEC_POLL_SECONDS = "0.1"
INSECURE_MEANING = ("without TLS, model weights and run settings cross the network unencrypted, SuperNodes "
                    "cannot tell the real SuperLink from an impostor, and SuperNode authentication is off "
                    "(any machine that reaches the port can join and train)")


def flower_exe(name: str) -> str:
    """The path of Flower's executable ``name`` beside this Python (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise DeployError(f"{name} is not installed beside {sys.executable} nor on PATH; install flwr")
    return found


def flower_env(**extra: str) -> dict[str, str]:
    """The environment for Flower's processes: this Python's bin folder first on ``PATH`` (the
    SuperLink and SuperNode start ``flower-superexec`` / ``flwr-serverapp`` / ``flwr-clientapp``
    by name), the SuperExec's task polling at 0.1 s unless set (Flower's default 1 s adds up
    to a second to every round), plus ``extra``."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {SUPEREXEC_POLL_ENV: SUPEREXEC_POLL_SECONDS, **os.environ, "PATH": path, **extra}


def parse_address(text: str, what: str = "--superlink") -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port), checked."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise DeployError(f"{what}: {text!r} is not HOST:PORT (port 1-65535)")
    return host.strip("[]"), int(port)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _file(folder: Path, name: str, what: str) -> Path:
    path = folder / name
    if not path.is_file():
        raise DeployError(f"{path} does not exist: {what}")
    return path.resolve()


@dataclass(frozen=True)
class SuperLinkPlan:
    """A ``flower-superlink`` command line and the keys to register once it is up."""

    argv: list[str]
    address: str
    ca_cert: Path | None
    public_keys: list[Path]


def superlink_plan(*, certs: Path | None, keys: list[Path], host: str = "127.0.0.1", port: int = 8000,
                   insecure: bool = False, database: Path | None = None) -> SuperLinkPlan:
    """The SuperLink's command: TLS from ``certs`` and SuperNode authentication with the public
    keys ``keys`` (``*.pub`` files or folders of them); ``insecure=True`` turns both off."""
    argv = [flower_exe("flower-superlink"), "--host", host, "--port", str(port),
            "--disable-runtime-dependency-installation"]  # boxes run the fedsim they have; nothing is installed
    if database is not None:
        argv += ["--database", str(database)]
    if insecure:
        if certs is not None:
            raise DeployError("--insecure and --certs contradict each other; give one")
        return SuperLinkPlan(argv + ["--insecure"], f"{host}:{port}", None, [])
    if certs is None:
        raise DeployError(f"give --certs DIR (from fedsim deploy certs) or --insecure; {INSECURE_MEANING}")
    ca = _file(certs, CA_CERT, "the CA certificate (fedsim deploy certs writes it)")
    cert = _file(certs, SERVER_CERT, "the server certificate (fedsim deploy certs writes it)")
    key = _file(certs, SERVER_KEY, "the server's private key (fedsim deploy certs writes it)")
    public = public_key_files(keys)
    if not public:
        raise DeployError("SuperNode authentication is on and no public key was given: --keys DIR|FILE.pub "
                          "(fedsim deploy keys writes them)")
    argv += ["--ssl-ca-certfile", str(ca), "--ssl-certfile", str(cert), "--ssl-keyfile", str(key),
             "--enable-supernode-auth"]
    return SuperLinkPlan(argv, f"{host}:{port}", ca, public)


def public_key_files(items: list[Path]) -> list[Path]:
    """``*.pub`` files given directly or inside the given folders, sorted, checked to exist."""
    found: list[Path] = []
    for item in items:
        if item.is_dir():
            found += sorted(item.glob("*.pub"))
        elif item.is_file():
            found.append(item)
        else:
            raise DeployError(f"--keys: {item} is neither a folder nor a file")
    return [p.resolve() for p in found]


def node_config(*, data_dir: Path | None, state_dir: Path, device: str, partition_id: int | None,
                num_partitions: int | None, plugins: str | None = None) -> str:
    """The SuperNode's node config as TOML: its own data folder (when given), state folder and
    device (what :func:`fedsim.client.app.node_setting` reads), Flower's partition keys
    (which share of a generated task the box trains) when given, and the plugin modules it may import.

    It goes to ``flower-supernode --node-config FILE.toml``: Flower's inline form
    (``k="v" ...``) cannot carry a path with a quote in it; a TOML file carries any path.
    """
    items: dict[str, object] = {R.NODE_STATE_DIR: str(state_dir), R.NODE_DEVICE: device}
    if data_dir is not None:
        items[R.NODE_DATA_DIR] = str(data_dir)
    if partition_id is not None:
        items.update({R.NODE_PARTITION_ID: partition_id, R.NODE_NUM_PARTITIONS: num_partitions})
    if plugins:  # the only plugin modules this box imports for a run
        items[R.NODE_PLUGINS] = plugins
    # json.dumps of a str is a valid TOML basic string; ints are TOML ints
    return "".join(f"{json.dumps(k)} = {json.dumps(v)}\n" for k, v in items.items())


NODE_CONFIG_FILE = "node-config.toml"


def supernode_argv(*, superlink: str, certs: Path | None, key: Path | None, data_dir: Path | None, state_dir: Path,
                   port: int, device: str = "cpu", partition_id: int | None = None,
                   num_partitions: int | None = None, insecure: bool = False,
                   max_wait: float | None = None, plugins: str | None = None) -> list[str]:
    """The SuperNode's command line, its inputs checked first (one :class:`DeployError` line)."""
    parse_address(superlink)
    if data_dir is not None and not data_dir.is_dir():
        raise DeployError(f"--data-dir: {data_dir} is not a folder; give this box's own data folder")
    if (partition_id is None) != (num_partitions is None):
        raise DeployError("--partition-id and --num-partitions go together")
    if partition_id is not None and not 0 <= partition_id < num_partitions:  # type: ignore[operator]
        raise DeployError(f"--partition-id: {partition_id} is not within 0..{num_partitions - 1}")  # type: ignore[operator]
    if insecure:
        if certs is not None or key is not None:
            raise DeployError("--insecure connects without TLS and authentication; drop --certs/--key")
        security = ["--insecure"]
    elif certs is None:
        raise DeployError(f"give --certs DIR holding {CA_CERT} (copied from the server) or --insecure; "
                          f"{INSECURE_MEANING}")
    else:
        ca = _file(certs, CA_CERT, f"this box needs the deployment's CA certificate to verify the SuperLink; "
                                   f"copy {CA_CERT} from the server's certs folder")
        if key is None or not key.is_file():
            raise DeployError(f"--key: {key} is not a file; give this box's private key (fedsim deploy keys)")
        security = ["--root-certificates", str(ca), "--auth-supernode-private-key", str(key.resolve())]
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DeployError(f"--state-dir: cannot create {state_dir}: {e.strerror}") from None
    config_file = state_dir.resolve() / NODE_CONFIG_FILE
    config_file.write_text(node_config(data_dir=data_dir.resolve() if data_dir else None,
                                       state_dir=state_dir.resolve(), device=device,
                                       partition_id=partition_id, num_partitions=num_partitions, plugins=plugins))
    argv = [flower_exe("flower-supernode"), "--superlink", superlink, "--port", str(port),
            "--node-config", str(config_file), *security]
    return argv + (["--max-wait-time", str(max_wait)] if max_wait is not None else [])


class FlwrCli:
    """The ``flwr`` CLI against one SuperLink, through a private ``FLWR_HOME`` whose
    ``config.toml`` holds only that connection."""

    def __init__(self, address: str, ca_cert: Path | None, home: Path) -> None:
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        lines = ["[superlink]", f'default = "{CONNECTION}"', "", f"[superlink.{CONNECTION}]",
                 f"address = {json.dumps(address)}"]
        lines.append(f"root-certificates = {json.dumps(str(ca_cert))}" if ca_cert else "insecure = true")
        (home / "config.toml").write_text("\n".join(lines) + "\n")

    def run(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        env = flower_env(FLWR_HOME=str(self.home), NO_COLOR="1")
        return subprocess.run([flower_exe("flwr"), *args], capture_output=True, text=True, env=env,
                              timeout=timeout, check=False)

    def register(self, public_key: Path) -> int:
        """Register ``public_key`` with the SuperLink; returns its node id."""
        done = self.run("supernode", "register", str(public_key), CONNECTION, "--format", "json")
        reply = _json_tail(done.stdout)
        if done.returncode != 0 or not reply.get("success"):
            raise DeployError(f"registering {public_key} failed: {_one_line(done)}")
        return int(reply["node-id"])


def _json_tail(text: str) -> dict:
    """The last JSON object printed on stdout (flwr prints progress lines before it)."""
    start = text.find("{")
    try:
        return json.loads(text[start:]) if start >= 0 else {}
    except json.JSONDecodeError:
        return {}


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    reply = _json_tail(done.stdout)
    if reply.get("error-message"):
        return str(reply["error-message"]).splitlines()[0]
    lines = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit code {done.returncode}"


def wait_for_port(host: str, port: int, *, timeout: float, process: subprocess.Popen | None = None) -> None:
    """Wait until ``host:port`` accepts TCP connections (or ``process`` exits: DeployError)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise DeployError(f"the process exited with code {process.returncode} before {host}:{port} opened")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise DeployError(f"{host}:{port} did not open within {timeout:.0f}s")


def quoted(argv: list[str]) -> str:
    """``argv`` as a shell line (printed so users see what runs)."""
    return " ".join(shlex.quote(a) for a in argv)
