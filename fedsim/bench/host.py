"""A cell host: one process that runs a bench's ``fedsim run`` cells one after another on one
kept Ray cluster (:mod:`fedsim.engines.warm`), so a bench pays Python's imports and Ray's
start-up once per host instead of once per cell.

The bench's runner writes a job per line on the host's stdin (``{"args": [...], "log": PATH}``:
the ``fedsim`` arguments and the cell's log file); the host runs it as ``fedsim ARGS`` in this
process, with its stdout and stderr going to the log, and answers ``{"code": N}`` on its own
stdout. A cell still has its own run directory, seed and resume; a cell that raises ends with
exit code 1 (its traceback in its log) and the host takes the next one; a host that dies
(killed, out of memory) fails only its running cell and the runner starts a new host. The host
ends when its stdin closes. SIGINT/SIGTERM during a cell stop that cell at a resumable point
(as for a ``fedsim run`` process), then the host exits.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import traceback
from pathlib import Path
from typing import IO, Any

HOST_MODULE = "fedsim.bench.host"
PRESTART = "--prestart"  # start the host's local Ray before its first cell


def default_sigint() -> None:
    """In a cell's process or a cell host before it starts: SIGINT back to its default. A bench
    started with SIGINT ignored (``nohup``, some CI runners) would pass that on, and its cells
    and hosts would ignore the SIGINT the bench forwards to stop them at a resumable point."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cell(args: list[str], log: str) -> int:
    """``fedsim ARGS`` in this process, stdout and stderr appended to ``log``; its exit code.
    ``sys.argv`` reads ``fedsim ARGS`` meanwhile, so the run's provenance records the cell's
    command line, not the host's."""
    import typer

    from fedsim.cli import app

    sys.stdout.flush()
    sys.stderr.flush()
    with open(log, "ab") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
    host_argv, sys.argv = sys.argv, ["fedsim", *args]
    try:
        typer.main.get_command(app).main(args, prog_name="fedsim", standalone_mode=True)
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # the cell failed; the host goes on with the next one
        traceback.print_exc()
        return 1
    finally:
        sys.argv = host_argv
        sys.stdout.flush()
        sys.stderr.flush()


def main(argv: list[str]) -> None:
    from fedsim.engines import warm

    answers: IO[str] = os.fdopen(os.dup(1), "w", buffering=1)  # the runner's channel, not a cell's log
    with warm.warm_cluster():
        if PRESTART in argv:  # Ray and the cell code load while the bench still plans and checks
            try:
                warm.prestart()
            except Exception:  # the first cell starts Ray itself, and its log says what failed
                warm.release()
        import fedsim.cli  # noqa: F401  (what run_cell needs, loaded before the first job)

        for line in sys.stdin:
            if not line.strip():
                continue
            job = json.loads(line)
            code = run_cell(job["args"], job["log"])
            answers.write(json.dumps({"code": code}) + "\n")
            if code in (130, 143):  # the cell was stopped by a signal: so is the bench
                break


def hostable(cmd: list[str]) -> list[str] | None:
    """The ``fedsim`` arguments of ``cmd`` when it is ``python -m fedsim run ...``, else ``None``."""
    if len(cmd) > 3 and cmd[0] == sys.executable and cmd[1:4] == ["-m", "fedsim", "run"]:
        return cmd[3:]
    return None


class CellHost:
    """The runner's handle on one host process."""

    def __init__(self, *, prestart: bool = False) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", HOST_MODULE, *([PRESTART] if prestart else [])],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
                                     preexec_fn=default_sigint)
        self.answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self.wake = threading.Event()  # set on each answer; the runner may share one among its hosts
        self.busy = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.answers.put(json.loads(line))
            self.wake.set()
        self.wake.set()  # the host ended

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def submit(self, args: list[str], log: Path) -> None:
        assert self.proc.stdin is not None and not self.busy
        self.busy = True
        self.proc.stdin.write(json.dumps({"args": args, "log": str(log)}) + "\n")
        self.proc.stdin.flush()

    def result(self) -> int | None:
        """The running cell's exit code once it ended (the host's own, negative for a signal,
        when the host died under it); ``None`` while it runs."""
        try:
            code = int(self.answers.get_nowait()["code"])
        except queue.Empty:
            if self.alive:
                return None
            try:  # its last answer may still be on the way
                code = int(self.answers.get(timeout=1.0)["code"])
            except queue.Empty:
                code = self.proc.returncode
        self.busy = False
        return code

    def end(self) -> None:
        """Ask the host to end once its running cell (if any) is done: stdin closed, no wait."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def close(self, timeout: float) -> None:
        """Ask the host to end (stdin closed) and wait ``timeout`` seconds, then kill it."""
        self.end()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


if __name__ == "__main__":
    main(sys.argv[1:])
