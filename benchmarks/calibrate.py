"""Calibrate a task's population: does federated SSL beat the random-init encoder and the
hand-made baselines, seed after seed?

Runs the experiment's rounds in this one process — the same task, trainer and strategy code
as ``fedsim run``, without Flower/Ray (so float summation order differs from the cohort
engine, see docs/reproductions/index.md) — and prints, per seed, the round-0 metrics and baselines and
the metrics after training::

    python benchmarks/calibrate.py --config simulations/audio.yaml --seeds 0,1,2
    python benchmarks/calibrate.py --set task.name=audio --set federation.rounds=10 --seeds 0

Writes ``benchmarks/results/calibrate-<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from fedsim.client.trainer import train_client
from fedsim.config import load_config, parse_override
from fedsim.records import RoundContext
from fedsim.seeding import sample_clients
from fedsim.server.loop import copy_arrays
from fedsim.factory import strategy_for, task_for

HERE = os.path.dirname(os.path.abspath(__file__))


def run_seed(config: str | None, overrides: dict, seed: int) -> dict:
    exp = load_config(config, {**overrides, "seed": seed})
    fed = exp.federation
    task, strategy = task_for(exp), strategy_for(exp)
    model = task.build_model()
    global_arrays = copy_arrays(model)
    trainee = task.build_model()
    out: dict = {"seed": seed, "init": task.evaluate(model), "baselines": task.baselines(), "rounds": []}
    start = time.perf_counter()
    for rnd in range(1, fed.rounds + 1):
        acc = strategy.new_accumulator(global_arrays, rnd)
        ctx = RoundContext.for_round(exp, strategy, rnd, aggregation=rnd, reply="weights")
        losses = []
        for cid in sample_clients(exp.seed, rnd, fed.clients, fed.cohort_size()):
            update = train_client(task, trainee, global_arrays, ctx, strategy.client_hooks(), client_id=cid)
            losses.append(update.metrics["loss"])
            acc.accumulate(update)
        global_arrays = acc.finalize()
        row = {"round": rnd, "loss": sum(losses) / len(losses)}
        if rnd % exp.evaluation.every == 0 or rnd == fed.rounds:
            model.load_state_dict(global_arrays)
            row.update(task.evaluate(model))
        out["rounds"].append(row)
        print(json.dumps({"seed": seed, **row, "t": round(time.perf_counter() - start)}), flush=True)
    out["final"] = {k: v for k, v in out["rounds"][-1].items() if k not in ("round", "loss")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--set", action="append", default=[], help="key.path=value, as fedsim run --set")
    parser.add_argument("--name", default=None, help="results file suffix (default: the task name)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (float sums differ in the last "
                                                                "bits between thread counts)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = dict(parse_override(kv) for kv in args.set)
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        r = run_seed(args.config, overrides, seed)
        results.append(r)
        primary = next(iter(r["init"]))
        print(f"seed {seed}: {primary} init {r['init'][primary]:.3f} -> {r['final'][primary]:.3f}; "
              f"baselines {json.dumps({k: round(v, 3) for k, v in r['baselines'].items()})}", flush=True)
    name = args.name or load_config(args.config, overrides).task.name
    path = os.path.join(HERE, "results", f"calibrate-{name}.json")
    with open(path, "w") as fh:
        json.dump({"config": args.config, "set": args.set, "results": results}, fh, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
