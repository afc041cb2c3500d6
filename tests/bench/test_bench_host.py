"""Cell hosts: a failing cell does not end its host, a host that dies fails only its cell."""

from __future__ import annotations

import sys

import pytest

from fedsim.bench.grid import Cell
from fedsim.bench.host import hostable
from fedsim.bench.plan import NEW, PlannedCell
from fedsim.bench.runner import Runner
from fedsim.config import load_config

BAD = [sys.executable, "-m", "fedsim", "run", "--task", "no-such-task"]  # exit 2 before Ray starts


def test_only_fedsim_run_commands_go_to_a_host():
    assert hostable([sys.executable, "-m", "fedsim", "run", "--quiet"]) == ["run", "--quiet"]
    assert hostable([sys.executable, "-c", "pass"]) is None


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_failing_cell_leaves_its_host_running_for_the_next(tmp_path):
    exp = load_config(None)
    cells = [PlannedCell(Cell(f"c{i}", {}), tmp_path / f"c{i}", exp, NEW) for i in range(2)]
    runner = Runner(cells, lambda cell: BAD, tmp_path, parallel=1, quiet=True)
    hosts = []
    real_host = runner._host
    runner._host = lambda: hosts.append(real_host()) or hosts[-1]

    outcomes = runner.run()

    assert [o.returncode for o in outcomes] == [2, 2]
    assert len({id(h) for h in hosts}) == 1  # one host ran both cells
    assert "no-such-task" in (tmp_path / "logs" / "c1.log").read_text()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_host_that_dies_fails_its_cell_and_is_replaced(tmp_path):
    runner = Runner([], lambda cell: BAD, tmp_path, parallel=1, quiet=True)
    host = runner._host()
    host.submit(["run", "--task", "no-such-task"], tmp_path / "a.log")
    while (code := host.result()) is None:
        pass
    assert code == 2
    host.busy = True  # as if a cell were running when it died
    host.proc.kill()
    host.proc.wait()

    assert host.result() == -9  # the cell fails with the host's end
    assert runner._host() is not host and runner.hosts[0].alive  # the next cell gets a new host
    runner._close_hosts(5)
