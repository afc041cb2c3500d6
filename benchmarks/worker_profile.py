"""Where a cohort worker's time per client goes, against the raw loop, in one process.

A cohort worker trains its share of a round's clients one after another and folds each
update into the strategy's partial sums (``fedsim.client.app.train_cohort``). This script
runs that function in this process, with the throughput benchmark's MLP workload (synthetic
task, one step of 32 samples per client, FedAvg), next to the raw loop of
``benchmarks/systems.py`` (load the global, one step, add n·w to the sums), interleaved, one
thread each, and reports the median microseconds per client of each, then a cProfile of the
cohort path with the functions that take the most time per client::

    python benchmarks/worker_profile.py --clients 1000 --repetitions 3

No Ray and no messages: this is the per-client path alone (what is left of the gap between a
cohort engine round and two raw loops once dispatch is excluded). CPU time per client is
reported beside wall time, so a loaded machine still gives comparable numbers.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from systems import BATCH, LR, MLPWorkload  # noqa: E402


def cohort_setup(clients: int) -> tuple[Any, Any, Any]:
    """A worker's resident task/model/strategy for the MLP workload and the round context."""
    from fedsim.client.app import Resident
    from fedsim.config import load_config
    from fedsim.records import RoundContext, RunSpec

    exp = load_config(None, {**MLPWorkload().fedsim_overrides(), "seed": 0, "federation.clients": clients,
                             "federation.clients_per_round": clients, "federation.local_epochs": 1,
                             "federation.batch_size": BATCH, "federation.lr": LR})
    resident = Resident(RunSpec.from_experiment(exp))
    ctx = RoundContext.for_round(exp, resident.strategy, 1, aggregation=1, reply="sums",
                                 client_ids=tuple(range(clients)))
    global_arrays = {k: v.detach().clone() for k, v in resident.model.state_dict().items()}
    return resident, ctx, global_arrays


def time_cohort(resident: Any, ctx: Any, global_arrays: Any, clients: int) -> tuple[float, float]:
    """Wall and CPU seconds of ``train_cohort`` over ``clients`` clients."""
    from fedsim.client.app import train_cohort

    wall, cpu = time.perf_counter(), time.process_time()
    train_cohort(resident, global_arrays, list(range(clients)), ctx, None)
    return time.perf_counter() - wall, time.process_time() - cpu


def time_raw(clients: int) -> tuple[float, float]:
    """Wall and CPU seconds of the raw loop's round (systems.run_raw's inner loop)."""
    w = MLPWorkload()
    glob, work = w.make_model(), w.make_model()
    gsd = glob.state_dict()
    acc = [torch.zeros_like(p, dtype=torch.float32) for p in gsd.values()]
    wall, cpu = time.perf_counter(), time.process_time()
    for cid in range(clients):
        work.load_state_dict(gsd)
        n = w.local_step(work, cid, 1)
        for a, p in zip(acc, work.state_dict().values()):
            a.add_(p, alpha=n)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--top", type=int, default=18, help="functions listed from the profile")
    a = ap.parse_args()
    torch.set_num_threads(1)  # as each Ray worker and the raw loop run
    resident, ctx, global_arrays = cohort_setup(a.clients)
    time_cohort(resident, ctx, global_arrays, 50)  # warm-up: data cache, allocator
    time_raw(50)
    runs: dict[str, list[tuple[float, float]]] = {"raw": [], "cohort": []}
    for _ in range(a.repetitions):  # interleaved
        runs["raw"].append(time_raw(a.clients))
        runs["cohort"].append(time_cohort(resident, ctx, global_arrays, a.clients))
    us = {k: (statistics.median(w for w, _ in v) / a.clients * 1e6, statistics.median(c for _, c in v) / a.clients * 1e6)
          for k, v in runs.items()}
    for name, (wall, cpu) in us.items():
        print(f"{name:7s} {wall:8.1f} µs/client wall, {cpu:8.1f} µs/client CPU (median of {a.repetitions})")
    print(f"cohort ÷ raw: {us['cohort'][1] / us['raw'][1]:.2f} (CPU), {us['cohort'][0] / us['raw'][0]:.2f} (wall)")
    prof = cProfile.Profile()
    prof.enable()
    time_cohort(resident, ctx, global_arrays, a.clients)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(a.top)
    print(f"\ncProfile of train_cohort over {a.clients} clients (profiling slows it; compare the shares):")
    print(out.getvalue())


if __name__ == "__main__":
    main()
