"""The runner passes SIGTERM on to the cells it started and stops with BenchInterrupted."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

import pytest

from fedsim.bench.plan import NEW, PlannedCell
from fedsim.bench.grid import Cell
from fedsim.bench.runner import BenchInterrupted, Runner
from fedsim.config import load_config


def test_sigterm_stops_the_running_cells_and_raises(tmp_path):
    exp = load_config(None)
    cells = [PlannedCell(Cell(f"c{i}", {}), tmp_path / f"c{i}", exp, NEW) for i in range(3)]
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    runner = Runner(cells, lambda cell: sleeper, tmp_path, parallel=2, quiet=True)
    threading.Timer(1.0, os.kill, args=(os.getpid(), signal.SIGTERM)).start()
    started = time.monotonic()

    with pytest.raises(BenchInterrupted) as caught:
        runner.run()

    assert caught.value.signum == signal.SIGTERM
    assert time.monotonic() - started < 20
    assert runner.running == []
    assert signal.getsignal(signal.SIGTERM) is not runner._on_sigterm  # the handler is given back
