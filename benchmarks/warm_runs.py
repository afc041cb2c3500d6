"""Seconds per run of small in-process runs, each starting its own Ray (``cold``) or sharing
one kept cluster (``warm``, :mod:`fedsim.engines.warm`), as the test suite and a bench's cell
hosts run them::

    python benchmarks/warm_runs.py cold 3
    python benchmarks/warm_runs.py warm 3

Prints each run's seconds and the total (the warm total includes shutting the cluster down).
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time

from fedsim.config import load_config
from fedsim.engines.warm import warm_cluster
from fedsim.launcher import simulate

SMALL = {"federation.clients": 6, "federation.clients_per_round": 3, "federation.rounds": 3,
         "task.params": {"image_size": 12, "min_samples": 16, "max_samples": 24},
         "evaluation.every": 3, "engine.workers": 2}


def main(mode: str, runs: int) -> None:
    started = time.perf_counter()
    with warm_cluster() if mode == "warm" else contextlib.nullcontext():
        for i in range(runs):
            t = time.perf_counter()
            simulate(load_config(None, SMALL), tempfile.mkdtemp() + "/run", quiet=True)
            print(f"{mode} run {i}: {time.perf_counter() - t:.1f} s", flush=True)
    print(f"{mode} total: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3)
