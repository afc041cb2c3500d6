"""A warm ClientApp process per box: the ClientApp a deployed run submits.

Flower 1.41 runs a deployed ClientApp in a fresh ``flwr-clientapp`` process for every message
(its SuperExec starts one per task; the long-lived "warm executors" it has serve other task
types, not ClientApps). fedsim's own ClientApp imports PyTorch and torchvision and builds the
task and model: seconds per message, every round, on every box.

So the submitted app's ClientApp is this small module (no PyTorch): it hands the message and
the context to one long-lived fedsim process per SuperNode over a Unix socket and returns its
reply. That process (``python -m fedsim.deploy.warm``) runs :data:`fedsim.client.app.app`
itself, so imports, task, model and strategy stay resident between messages and runs exactly
as in a simulation worker. The first message of a box starts it (a few seconds, once); it ends
when its SuperNode's SuperExec ends, or after ``IDLE_SECONDS`` without a message.

The socket lives in a folder only this user can open (mode 0700) under the system's
temporary folder, one per SuperNode (``context.node_id``) and fedsim installation; the
connection is also authenticated with a random key kept beside it (mode 0600).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Client, Listener
from pathlib import Path

from flwr.app import Context, Message, MetricRecord
from flwr.clientapp import ClientApp

IDLE_SECONDS = 1800.0  # a box's warm process ends after this long without a message
START_SECONDS = 300.0  # its first start (imports, on a slow box) may take this long
WATCH_SECONDS = 1.0

app = ClientApp()


def _home() -> Path:
    home = Path(tempfile.gettempdir()) / f"fedsim-warm-{os.getuid()}"
    home.mkdir(mode=0o700, exist_ok=True)
    if home.stat().st_uid != os.getuid() or home.stat().st_mode & 0o077:
        raise PermissionError(f"{home} must belong to this user with mode 0700")
    return home


def socket_path(node_id: int) -> Path:
    """The socket of the warm process of SuperNode ``node_id`` for this fedsim installation."""
    import fedsim

    tag = hashlib.sha256(f"{sys.executable}|{fedsim.__file__}|{node_id}".encode()).hexdigest()[:16]
    return _home() / f"{tag}.sock"


def _key(sock: Path) -> bytes:
    path = sock.with_suffix(".key")
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
    return path.read_bytes()


def _connect(sock: Path, *, start: bool) -> object:
    """A connection to the warm process at ``sock``; starts it first when none answers."""
    try:
        return Client(str(sock), family="AF_UNIX", authkey=_key(sock))
    except (FileNotFoundError, ConnectionRefusedError):
        if not start:
            raise
    sock.unlink(missing_ok=True)
    log = open(sock.with_suffix(".log"), "ab")
    # same process group as the SuperNode: stopping the SuperNode's group stops it too
    subprocess.Popen([sys.executable, "-m", "fedsim.deploy.warm", str(sock), str(os.getppid())],
                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, close_fds=True)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            return Client(str(sock), family="AF_UNIX", authkey=_key(sock))
        except (FileNotFoundError, ConnectionRefusedError):
            continue
    raise RuntimeError(f"fedsim's warm ClientApp process did not start within {START_SECONDS:.0f}s; "
                       f"its log: {sock.with_suffix('.log')}")


STEPS = "deploy-steps"  # MetricRecord of a reply: when each step on the box happened (time.time())


def process_started() -> float:
    """When this process started (``time.time()`` scale; Linux ``/proc``), else now."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(ln.split()[1]) for ln in Path("/proc/stat").read_text().splitlines() if ln.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


@app.train()
@app.query()
def forward(msg: Message, context: Context) -> Message:
    """Have the box's warm process handle ``msg``; return its reply, stamped with when the
    ClientApp process started, when this handler ran and when the warm process handled it."""
    entered = time.time()
    sock = socket_path(context.node_id)
    try:
        conn = _connect(sock, start=True)
    except ConnectionError:  # a process that was ending: start a new one
        conn = _connect(sock, start=True)
    with conn:  # type: ignore[attr-defined]
        conn.send((msg, context))  # type: ignore[attr-defined]
        reply, handled, done = conn.recv()  # type: ignore[attr-defined]
    if isinstance(reply, Exception):
        raise reply
    if not reply.has_error():
        reply.content[STEPS] = MetricRecord({"process-started": process_started(), "entered": entered,
                                             "handled": handled, "done": done, "returned": time.time()})
    return reply


def _watch(sock: Path, watch_pid: int, last: list[float]) -> None:
    """End this process when ``watch_pid`` (the SuperNode's SuperExec) is gone or no message
    came for ``IDLE_SECONDS``; its socket and key go with it (its log stays)."""
    while time.monotonic() - last[0] < IDLE_SECONDS:
        time.sleep(WATCH_SECONDS)
        try:
            os.kill(watch_pid, 0)
        except ProcessLookupError:
            break
    sock.unlink(missing_ok=True)
    sock.with_suffix(".key").unlink(missing_ok=True)
    os._exit(0)


def serve(sock: Path, watch_pid: int) -> None:
    """Answer messages on ``sock`` with fedsim's ClientApp, one at a time, while the SuperNode runs."""
    import threading

    from flwr.supercore.task_identity import TaskIdentity

    from fedsim.client.app import app as fedsim_app

    last = [time.monotonic()]
    threading.Thread(target=_watch, args=(sock, watch_pid, last), daemon=True).start()
    with Listener(str(sock), family="AF_UNIX", authkey=_key(sock)) as listener:
        while True:
            with listener.accept() as conn:
                msg, context = conn.recv()
                handled = time.time()
                TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = context.run_id, context.node_id, 0
                try:
                    reply: object = fedsim_app(message=msg, context=context)
                except Exception as e:  # noqa: BLE001 - handed to the ClientApp process, which raises it
                    reply = e
                conn.send((reply, handled, time.time()))
            last[0] = time.monotonic()


if __name__ == "__main__":
    serve(Path(sys.argv[1]), int(sys.argv[2]))
