"""A bench started with SIGINT ignored (nohup, some CI runners) still gives its cells the
default SIGINT, so the SIGINT it forwards stops them (cell processes and cell hosts alike); its
own handlers are given back."""

from __future__ import annotations

import signal
import sys
import time

import pytest

from fedsim.bench.grid import Cell
from fedsim.bench.host import CellHost
from fedsim.bench.plan import NEW, PlannedCell
from fedsim.bench.runner import Runner
from fedsim.config import load_config


def test_cells_of_a_bench_started_with_sigint_ignored_get_the_default_sigint(tmp_path):
    # Prepare: this process ignores SIGINT, as under nohup; the cell reports its own SIGINT handler
    exp = load_config(None)
    cells = [PlannedCell(Cell("c0", {}), tmp_path / "c0", exp, NEW)]
    probe = [sys.executable, "-c", "import signal; print('default' if signal.getsignal(signal.SIGINT) "
                                   "is signal.default_int_handler else 'ignored')"]
    original = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        # Execute
        outcomes = Runner(cells, lambda cell: probe, tmp_path, quiet=True).run()
        after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, original)
    # Assert: the cell could be interrupted; the bench's own disposition came back
    assert outcomes[0].returncode == 0
    assert (tmp_path / "logs" / "c0.log").read_text().strip().endswith("default")
    assert after == signal.SIG_IGN


@pytest.mark.slow  # a host process that imports the CLI: 10-30 s
def test_a_cell_host_started_with_sigint_ignored_still_stops_on_sigint(tmp_path):
    # Prepare: this process ignores SIGINT, as under nohup; a host has started and answered a job
    original = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        host = CellHost()
    finally:
        signal.signal(signal.SIGINT, original)
    try:
        host.submit(["run", "--task", "no-such-task"], tmp_path / "a.log")  # exit 2 before Ray starts
        while (code := host.result()) is None:
            time.sleep(0.05)
        assert code == 2 and host.alive
        # Execute: the SIGINT a bench forwards to its hosts
        host.proc.send_signal(signal.SIGINT)
        ended = host.proc.wait(timeout=60)
    finally:
        host.close(timeout=5)
    # Assert: the host ended on it (an ignored SIGINT would leave it waiting for its next job)
    assert ended in (-signal.SIGINT, 128 + signal.SIGINT, 1)
