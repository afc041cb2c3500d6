"""Run a bench's cells (``fedsim run --quiet``), N at a time, on N cell hosts: long-lived
processes that keep one Ray cluster and its workers between cells (:mod:`fedsim.bench.host`);
any other command runs as a subprocess of its own.

Each cell is a normal run directory, so an interrupted bench continues where it stopped:
finished cells are skipped, interrupted ones resumed (see :mod:`fedsim.bench.plan`). A
cell's output goes to ``logs/<cell>.log`` in the bench directory, and the wall time of each
of its processes, from start to exit, to ``logs/<cell>.times.jsonl`` (the cost table's
process time). Progress shows the cells
done, each running cell's round (read from its ``rounds.jsonl``) and an ETA from the rounds
completed so far. Ctrl-C or SIGTERM is passed on to the running cells, which stop at a
resumable point; the bench then exits 130/143.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from fedsim.bench.host import CellHost, default_sigint, hostable
from fedsim.bench.plan import DONE, LOG_DIR, PlannedCell
from fedsim.bench.results import record_process_time
from fedsim.provenance import now_utc
from fedsim.server.progress import diagnostics
from fedsim.server.outputs import SUMMARY_FILE, read_rounds

POLL_SECONDS = 0.5
HOSTS_ENV = "FEDSIM_BENCH_HOSTS"  # "0": every cell a `fedsim run` process of its own (as before hosts)
STOP_GRACE_SECONDS = 60.0  # how long a signalled cell gets to stop before it is killed


class BenchInterrupted(Exception):
    """The bench got SIGINT or SIGTERM; running cells were told to stop."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class CellOutcome:
    """How one cell's process ended (``skipped``: it was already done)."""

    cell: PlannedCell
    returncode: int | None = None
    seconds: float = 0.0
    message: str = ""
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return self.skipped or (self.returncode == 0 and (self.cell.dir / SUMMARY_FILE).is_file())


@dataclass
class _Running:
    cell: PlannedCell
    proc: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)
    started_at: str = field(default_factory=now_utc)
    host: CellHost | None = None  # the cell host running it (None: a subprocess of its own)

    def poll(self) -> int | None:
        return self.host.result() if self.host is not None else self.proc.poll()


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].removeprefix("error: ") if lines else ""


def _rounds_done(cell: PlannedCell) -> int:
    return max((int(r.get("round", 0)) for r in read_rounds(cell.dir)), default=0)


class BenchProgress:
    """Cells done / total and an ETA on one bar (counted in rounds), a line per running cell;
    plain lines when stderr is not a terminal; nothing when quiet."""

    def __init__(self, cells: list[PlannedCell], *, quiet: bool, console: Console | None = None) -> None:
        self.console = console or diagnostics()
        self.quiet = quiet
        self.total_cells = len(cells)
        self.cells_done = sum(1 for c in cells if c.state == DONE)
        self.live = self.console.is_terminal and not quiet
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[note]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=self.console,
                                 disable=not self.live)
        total_rounds = sum(c.rounds - c.rounds_done for c in cells if c.state != DONE)
        self.overall = self.progress.add_task(self._cells_text(), total=max(1, total_rounds), note="rounds")
        self.rows: dict[str, TaskID] = {}

    def _cells_text(self) -> str:
        return f"[bold]cells {self.cells_done}/{self.total_cells}"

    def __enter__(self) -> "BenchProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def started(self, cell: PlannedCell, index: int) -> None:
        self.rows[cell.cell.name] = self.progress.add_task(f"  {cell.cell.name}", total=cell.rounds,
                                                           completed=cell.rounds_done, note=f"round {cell.rounds_done}/{cell.rounds}")
        if not self.live and not self.quiet:
            what = f"resuming after round {cell.rounds_done}" if cell.rounds_done else "starting"
            self.console.print(f"cell {index}/{self.total_cells} {cell.cell.name}: {what}", markup=False)

    def rounds(self, cell: PlannedCell, done: int, new_rounds: int) -> None:
        row = self.rows.get(cell.cell.name)
        if row is not None:
            self.progress.update(row, completed=done, note=f"round {done}/{cell.rounds}")
        if new_rounds:
            self.progress.advance(self.overall, new_rounds)

    def finished(self, outcome: CellOutcome) -> None:
        name = outcome.cell.cell.name
        if name in self.rows:
            self.progress.remove_task(self.rows.pop(name))
        if outcome.ok:
            self.cells_done += 1
        self.progress.update(self.overall, description=self._cells_text())
        if self.quiet:
            return
        if outcome.ok:
            line = f"cell {escape(name)}: done in {outcome.seconds:.0f} s"
        else:
            line = f"[red]cell {escape(name)}: failed (exit {outcome.returncode}): {escape(outcome.message)}"
        self.console.print(line, highlight=False, soft_wrap=True)


class Runner:
    """Starts cells up to ``parallel`` at a time and waits for them."""

    def __init__(self, cells: list[PlannedCell], command: Callable[[PlannedCell], list[str]], bench_dir: Path, *,
                 parallel: int = 1, quiet: bool = False, console: Console | None = None,
                 hosts: list[CellHost] | None = None) -> None:
        self.cells = cells
        self.command = command
        self.bench_dir = bench_dir
        self.log_dir = bench_dir / LOG_DIR
        self.parallel = parallel
        self.progress = BenchProgress(cells, quiet=quiet, console=console)
        self.running: list[_Running] = []
        self.seen_rounds: dict[str, int] = {}
        self.hosts: list[CellHost] = list(hosts or [])  # started early (start_hosts) or on demand
        self.wake = threading.Event()  # a host answered: a cell ended, reap it without waiting a poll
        for host in self.hosts:
            host.wake = self.wake

    def run(self) -> list[CellOutcome]:
        """Run every cell not done; returns one outcome per cell (skipped ones included).

        Raises :class:`BenchInterrupted` after SIGINT/SIGTERM, once the running cells stopped.
        """
        outcomes = [CellOutcome(c, skipped=True) for c in self.cells if c.state == DONE]
        todo = [c for c in self.cells if c.state != DONE]
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        previous_int = signal.getsignal(signal.SIGINT)
        if previous_int == signal.SIG_IGN:  # started ignoring SIGINT: Ctrl-C still stops the bench
            signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            with self.progress:
                try:
                    while todo or self.running:
                        while todo and len(self.running) < self.parallel:
                            self._start(todo.pop(0), index=len(outcomes) + len(self.running) + 1)
                        self.wake.clear()  # an answer from here on ends the wait below at once
                        outcomes += self._reap()
                        self.wake.wait(POLL_SECONDS)
                except (KeyboardInterrupt, BenchInterrupted) as e:
                    signum = e.signum if isinstance(e, BenchInterrupted) else signal.SIGINT
                    self._stop_all(signum)
                    raise BenchInterrupted(signum) from None
        finally:
            signal.signal(signal.SIGTERM, previous)
            if previous_int == signal.SIG_IGN:
                signal.signal(signal.SIGINT, previous_int)
            for host in self.hosts:  # they shut their clusters down while the bench writes its report
                host.end()
        return outcomes

    def close(self) -> None:
        """Wait for the hosts to end (each is killed after ``STOP_GRACE_SECONDS``)."""
        self._close_hosts(STOP_GRACE_SECONDS)

    def _host(self) -> CellHost:
        """An idle, live cell host (a dead one is replaced by a new one)."""
        self.hosts = [h for h in self.hosts if h.alive or h.busy]
        host = next((h for h in self.hosts if not h.busy), None)
        if host is None:
            host = CellHost()
            host.wake = self.wake
            self.hosts.append(host)
        return host

    def _close_hosts(self, timeout: float) -> None:
        for host in self.hosts:
            host.close(timeout)
        self.hosts = []

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        raise BenchInterrupted(signum)

    def _start(self, cell: PlannedCell, index: int) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{cell.cell.name}.log"
        cmd = self.command(cell)
        args = hostable(cmd) if os.environ.get(HOSTS_ENV, "1") != "0" else None
        with open(log, "ab") as fh:
            fh.write(f"$ {' '.join(cmd)}\n".encode())
            fh.flush()
            if args is None:
                proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        preexec_fn=default_sigint)
        if args is None:
            self.running.append(_Running(cell, proc, log))
        else:
            host = self._host()
            host.submit(args, log)
            self.running.append(_Running(cell, host.proc, log, host=host))
        self.seen_rounds[cell.cell.name] = cell.rounds_done
        self.progress.started(cell, index)

    def _reap(self) -> list[CellOutcome]:
        finished = []
        for run in list(self.running):
            self._poll_rounds(run.cell)
            code = run.poll()
            if code is None:
                continue
            self.running.remove(run)
            outcome = CellOutcome(run.cell, returncode=code, seconds=time.monotonic() - run.started,
                                  message=_last_line(run.log))
            record_process_time(self.bench_dir, run.cell.cell.name, started_at=run.started_at,
                                seconds=outcome.seconds, returncode=code)
            if outcome.ok:
                record_cell_seconds(run.cell, outcome.seconds)
            self.progress.finished(outcome)
            finished.append(outcome)
        return finished

    def _poll_rounds(self, cell: PlannedCell) -> None:
        done = _rounds_done(cell)
        before = self.seen_rounds.get(cell.cell.name, 0)
        self.seen_rounds[cell.cell.name] = max(before, done)
        self.progress.rounds(cell, done, max(0, done - before))

    def _stop_all(self, signum: int) -> None:
        """Pass ``signum`` on to the running cells (only the processes this runner started) and
        wait for them; a cell still running after ``STOP_GRACE_SECONDS`` is killed."""
        for run in self.running:
            if run.proc.poll() is None:
                run.proc.send_signal(signum)
        self._close_hosts(STOP_GRACE_SECONDS)  # a host ends once its cell stopped
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for run in self.running:
            try:
                run.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                run.proc.kill()
                run.proc.wait()
            record_process_time(self.bench_dir, run.cell.cell.name, started_at=run.started_at,
                                seconds=time.monotonic() - run.started, returncode=run.proc.returncode)
        self.running = []


def start_hosts(cells: list[PlannedCell], parallel: int) -> list[CellHost]:
    """The cell hosts the bench's first cells will need, started now with their local Ray
    (``--prestart``), so that their imports and Ray's start-up overlap the bench's own checks;
    none when cells run as processes of their own (``FEDSIM_BENCH_HOSTS=0``) or attach to a
    cluster (``engine.ray_address``: a host starts no local Ray for them)."""
    todo = [c for c in cells if c.state != DONE]
    if os.environ.get(HOSTS_ENV, "1") == "0" or any(c.exp.engine.ray_address for c in todo):
        return []
    return [CellHost(prestart=True) for _ in range(min(parallel, len(todo)))]


def record_cell_seconds(cell: PlannedCell, seconds: float) -> None:
    """Add to the cell's summary its wall time as the bench saw it (``cell_seconds``) and the
    part of it that was not its rounds (``cell_overhead_seconds``: start-up, the initial
    evaluation, shut-down), for the bench's cost table."""
    import json

    from fedsim.atomic import atomic_write_bytes

    path = cell.dir / SUMMARY_FILE
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    rounds = sum(float(r.get("round_seconds", 0.0)) for r in read_rounds(cell.dir)
                 if int(r.get("round", 0)) > cell.rounds_done)
    summary.update(cell_seconds=round(seconds, 3), cell_overhead_seconds=round(max(0.0, seconds - rounds), 3))
    atomic_write_bytes(path, lambda fh: fh.write((json.dumps(summary, indent=2) + "\n").encode()))
