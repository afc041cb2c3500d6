"""Run one Flower process in the foreground: start it in its own process group, pass its log
through, stop the whole group on SIGINT/SIGTERM, and turn a failure into one line.

``fedsim deploy superlink`` and ``fedsim deploy supernode`` are services: they return when
their Flower process ends. Flower starts helpers of its own under it (``flower-superexec``,
``flwr-serverapp``, ``flwr-clientapp``); they share the process group, so stopping fedsim's
command stops them too: SIGTERM to the group, then SIGKILL after ``STOP_GRACE`` seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

STOP_GRACE = 10.0
TAIL_LINES = 200

# Flower's log lines that say why a SuperNode stopped, and what to tell the user
KNOWN_FAILURES = (
    ("code: 2004", "the SuperLink refused this SuperNode (Flower code 2004): its public key is not registered; "
                   "add its .pub to the SuperLink's --keys and restart it, or flwr supernode register KEY.pub"),
    ("CERTIFICATE_VERIFY_FAILED", "TLS verification of the SuperLink failed: --certs must hold the deployment's "
                                  "ca.crt, and the server certificate must name the --superlink host"),
    ("Unable to parse the private key", "--key is not an OpenSSH EC private key (fedsim deploy keys writes them)"),
)


class Supervised:
    """A Flower process started by fedsim (its pid is its process group id)."""

    def __init__(self, argv: list[str], *, env: dict[str, str], log: IO[str] | None = None,
                 echo: bool = True) -> None:
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, text=True, errors="replace",
                                        start_new_session=True)
        self._reader = threading.Thread(target=self._read, args=(log, echo), daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self, log: IO[str] | None, echo: bool) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.tail.append(line.rstrip("\n"))
            if log is not None:
                log.write(line)
                log.flush()
            if echo:
                sys.stderr.write(line)

    def stop(self, grace: float = STOP_GRACE) -> int:
        """SIGTERM to the process group, SIGKILL after ``grace`` seconds; returns the exit code."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(wait)
                break
        # helpers left in the group after the leader ended (Flower's own children)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self._reader.join(2.0)
        return self.process.returncode if self.process.returncode is not None else -9

    def wait(self) -> int:
        code = self.process.wait()
        self._reader.join(2.0)
        with contextlib.suppress(ProcessLookupError):  # Flower's helpers, if any outlived it
            os.killpg(self.pid, signal.SIGKILL)
        return code

    def why(self) -> str:
        """One line: the known reason in the log, else its last ERROR (or last) line."""
        text = "\n".join(self.tail)
        for needle, message in KNOWN_FAILURES:
            if needle in text:
                return message
        errors = [ln for ln in self.tail if "ERROR" in ln or "rror:" in ln]
        lines = [ln for ln in self.tail if ln.strip()]
        last = (errors or lines or ["no output"])[-1]
        return " ".join(last.replace("\x1b[91m", "").replace("\x1b[0m", "").split())


@contextlib.contextmanager
def stopping_on_signals(child: Supervised) -> Iterator[list[int]]:
    """While inside, SIGINT/SIGTERM stop ``child``'s group; yields the received signals."""
    got: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        got.append(signum)
        threading.Thread(target=child.stop, daemon=True).start()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield got
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_service(child: Supervised, *, ready: Callable[[Supervised], None] | None = None) -> tuple[int, list[int]]:
    """Wait for ``child`` (after ``ready(child)``, e.g. registering keys), stopping it on
    SIGINT/SIGTERM; returns its exit code and the signals received."""
    with stopping_on_signals(child) as got:
        try:
            if ready is not None:
                ready(child)
        except BaseException:
            child.stop()
            raise
        code = child.wait()
        deadline = time.monotonic() + STOP_GRACE
        while got and child.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    return code, got


def open_log(path: Path | None) -> IO[str] | None:
    """``path`` opened for appending (its folder created), or ``None``."""
    if path is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a", buffering=1)
