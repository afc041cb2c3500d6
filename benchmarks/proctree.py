"""Run one benchmark system in its own process and measure the whole process tree.

``run_measured(cmd)`` starts ``cmd`` and, every ``interval`` seconds until it exits, sums the
memory of the process and of all its descendants — for fedsim and vanilla Flower that is
the driver (ServerApp + simulation engine threads) plus everything Ray starts under it:
``gcs_server``, ``raylet``, the log monitor, the runtime-env / dashboard agents and every
``ray::`` worker (idle ones and the ``ClientAppActor`` s); for pfl-research it is
``torchrun`` and its worker processes. Two sums are kept per sample:

* **RSS** (resident set size, what the issue's targets are stated in): every process's
  resident pages, so pages shared between processes — the torch/flwr shared libraries
  every Ray worker maps, Ray's shared-memory object store — count once per process.
* **PSS** (proportional set size, ``/proc/<pid>/smaps_rollup``): shared pages divided among
  the processes that map them, so the sum is the tree's real share of the machine's memory.

The peak of each sum is reported. Processes of the tree still alive when the top process
has exited (Ray daemons that outlived a crash) are terminated by pid, so the next system
starts on a quiet machine.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MB = 1024 * 1024


def usable_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _pss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _tree(root: Any) -> list[Any]:
    import psutil

    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


@dataclass
class TreeSample:
    """Peak memory of a process tree over its life."""

    peak_rss_mb: float = 0.0
    peak_pss_mb: float | None = None
    peak_root_rss_mb: float = 0.0  # the top process alone (fedsim/Flower: the driver and ServerApp)
    peak_processes: int = 0
    names_at_peak: dict[str, int] = field(default_factory=dict)
    rss_mb_at_peak: dict[str, float] = field(default_factory=dict)  # process name -> RSS summed over its copies
    seen: dict[int, float] = field(default_factory=dict)  # pid -> create time

    def sample(self, root: Any) -> None:
        import psutil

        rss, pss, names, by_name = 0, 0, Counter(), Counter()
        have_pss = True
        procs = _tree(root)
        for proc in procs:
            try:
                proc_rss = proc.memory_info().rss
                rss += proc_rss
                names[_short_name(proc)] += 1
                by_name[_short_name(proc)] += proc_rss
                if proc is root:
                    self.peak_root_rss_mb = max(self.peak_root_rss_mb, proc_rss / MB)
            except psutil.Error:
                continue
            self.seen.setdefault(proc.pid, proc.create_time())
            p = _pss_bytes(proc.pid)
            if p is None:
                have_pss = False
            else:
                pss += p
        if rss / MB > self.peak_rss_mb:
            self.peak_rss_mb = rss / MB
            self.names_at_peak = dict(names)
            self.rss_mb_at_peak = {k: round(v / MB, 1) for k, v in by_name.most_common()}
        if have_pss:
            self.peak_pss_mb = max(self.peak_pss_mb or 0.0, pss / MB)
        self.peak_processes = max(self.peak_processes, len(procs))


def _short_name(proc: Any) -> str:
    try:
        cmd = proc.cmdline()
    except Exception:  # noqa: BLE001 - a process may vanish between calls
        return proc.name()
    for part in cmd[:3]:
        if part.startswith("ray::"):
            return part.split()[0]
    return os.path.basename(cmd[0]) if cmd else proc.name()


def run_measured(cmd: list[str], *, interval: float = 0.2, timeout: float | None = None,
                 env: dict[str, str] | None = None, log_path: str | None = None) -> dict[str, Any]:
    """Run ``cmd``; returns its exit code, wall time and the tree's peak RSS / PSS."""
    import psutil

    out = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115
    launched = time.time()
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    root = psutil.Process(proc.pid)
    mem = TreeSample()
    timed_out = False
    try:
        while proc.poll() is None:
            mem.sample(root)
            if timeout is not None and time.time() - launched > timeout:
                timed_out = True
                _terminate([p for p in _tree(root)])
                break
            time.sleep(interval)
        rc = proc.wait()
    finally:
        if log_path:
            out.close()  # type: ignore[union-attr]
    wall = time.time() - launched
    leftovers = []
    for pid, created in mem.seen.items():
        try:
            p = psutil.Process(pid)
            if pid != proc.pid and p.create_time() == created:  # not a reused pid
                leftovers.append(p)
        except psutil.Error:
            pass
    _terminate(leftovers)
    return {"returncode": rc, "timed_out": timed_out, "launched_at": launched, "wall_s": wall,
            "peak_rss_mb": round(mem.peak_rss_mb, 1),
            "peak_pss_mb": None if mem.peak_pss_mb is None else round(mem.peak_pss_mb, 1),
            "peak_root_rss_mb": round(mem.peak_root_rss_mb, 1),
            "peak_processes": mem.peak_processes, "processes_at_peak_rss": mem.names_at_peak,
            "rss_mb_at_peak_by_process": mem.rss_mb_at_peak}


def failure(measured: dict[str, Any], output: str) -> str | None:
    """Why a :func:`run_measured` run gave no result (``None`` when ``output`` exists and it exited 0)."""
    if measured["returncode"] == 0 and os.path.exists(output):
        return None
    return f"exit code {measured['returncode']}" + (" (timed out)" if measured["timed_out"] else "")


def _terminate(procs: list[Any]) -> None:
    import psutil

    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=5)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
