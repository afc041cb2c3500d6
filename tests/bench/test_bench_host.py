"""Cell hosts: a failing cell does not end its host, a host that dies fails only its cell."""

from __future__ import annotations

import sys

import pytest

from fedsim.bench.grid import Cell
from fedsim.bench import runner as runner_module
from fedsim.bench.host import CellHost, hostable
from fedsim.bench.plan import DONE, NEW, PlannedCell
from fedsim.bench.runner import Runner, start_hosts
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
    runner.close()

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


def _cells(tmp_path, states, ray_address=None):
    exp = load_config(None)
    if ray_address:
        exp = exp.model_copy(update={"engine": exp.engine.model_copy(update={"ray_address": ray_address})})
    return [PlannedCell(Cell(f"c{i}", {}), tmp_path / f"c{i}", exp, state) for i, state in enumerate(states)]


@pytest.mark.parametrize("states, parallel, env, address, started", [
    ([NEW, NEW, NEW], 2, None, None, 2),        # as many as run at once
    ([DONE, NEW], 2, None, None, 1),           # no more than the cells left to run
    ([DONE, DONE], 1, None, None, 0),
    ([NEW, NEW], 1, "0", None, 0),             # cells as processes of their own
    ([NEW, NEW], 1, None, "10.0.0.1:6379", 0),  # cells attach elsewhere: no local Ray to start
])
def test_hosts_are_started_early_only_where_cells_will_use_them(tmp_path, monkeypatch, states, parallel, env,
                                                                  address, started):
    made = []
    monkeypatch.setattr(runner_module, "CellHost", lambda prestart: made.append(prestart) or object())
    if env is None:
        monkeypatch.delenv(runner_module.HOSTS_ENV, raising=False)
    else:
        monkeypatch.setenv(runner_module.HOSTS_ENV, env)

    hosts = start_hosts(_cells(tmp_path, states, address), parallel)

    assert len(hosts) == started and made == [True] * started


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_prestarted_host_has_its_ray_up_before_its_first_cell(tmp_path):
    import subprocess
    import time

    def descendants(pid: int) -> set[str]:
        rows = [ln.split(None, 2) for ln in subprocess.run(["ps", "-eo", "pid=,ppid=,comm="], capture_output=True,
                                                           text=True).stdout.splitlines()]
        children: dict[int, list[tuple[int, str]]] = {}
        for row in rows:
            if len(row) == 3:
                children.setdefault(int(row[1]), []).append((int(row[0]), row[2]))
        names, todo = set(), [pid]
        while todo:
            for child, name in children.get(todo.pop(), []):
                names.add(name)
                todo.append(child)
        return names

    host = CellHost(prestart=True)
    try:
        deadline = time.monotonic() + 240
        names: set[str] = set()
        while time.monotonic() < deadline and not {"gcs_server", "raylet"} <= names:
            names = descendants(host.proc.pid)
            time.sleep(0.5)
        assert {"gcs_server", "raylet"} <= names, names  # no cell submitted yet
        host.submit(["run", "--task", "no-such-task"], tmp_path / "a.log")
        while (code := host.result()) is None:
            time.sleep(0.1)
        assert code == 2 and host.alive
    finally:
        host.close(60)
    assert host.proc.returncode == 0
