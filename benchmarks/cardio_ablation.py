"""CardioLive ablations: MAE of AV vs video-only vs audio-only, under FPS change and desync.

For each seed and ``task.params.modalities`` (av, video, audio) this trains the experiment's
rounds in-process (the loop of ``benchmarks/calibrate.py``, which keeps the final model: the
task, trainer and strategy code of ``fedsim run`` without Flower/Ray), then evaluates the final global model on the same
held-out subjects re-recorded under fixed conditions: every held-out device at 15 FPS, at
60 FPS, with the audio 0.5 s late / early (unrecorded), and in sync::

    python benchmarks/cardio_ablation.py --config simulations/cardio.yaml --seeds 0,1,2
    python benchmarks/cardio_ablation.py --set federation.rounds=3 --name cardio_ablation_3rounds

Writes ``benchmarks/results/<name>.json`` (default ``cardio_ablation``) and prints a Markdown table (mean ± std over
seeds, BPM).
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
import torch

from fedsim.client.trainer import train_client
from fedsim.config import load_config, parse_override
from fedsim.records import RoundContext
from fedsim.seeding import sample_clients
from fedsim.server.loop import copy_arrays
from fedsim.factory import strategy_for, task_for

HERE = os.path.dirname(os.path.abspath(__file__))
MODALITIES = ("av", "video", "audio")
CONDITIONS = {"drawn": {}, "15 FPS": {"eval_fps": 15.0}, "60 FPS": {"eval_fps": 60.0},
              "in sync": {"eval_offset_s": 0.0}, "audio +0.5 s": {"eval_offset_s": 0.5},
              "audio -0.5 s": {"eval_offset_s": -0.5}}


def train(config: str, overrides: dict, seed: int) -> tuple[torch.nn.Module, dict, dict]:
    """The experiment's rounds in-process: ``(final global model, init metrics, baselines)``."""
    exp = load_config(config, {**overrides, "seed": seed})
    fed = exp.federation
    task, strategy = task_for(exp), strategy_for(exp)
    model = task.build_model()
    init, baselines = task.evaluate(model), task.baselines()
    global_arrays = copy_arrays(model)
    trainee = task.build_model()
    for rnd in range(1, fed.rounds + 1):
        acc = strategy.new_accumulator(global_arrays, rnd)
        ctx = RoundContext.for_round(exp, strategy, rnd, aggregation=rnd, reply="weights")
        for cid in sample_clients(exp.seed, rnd, fed.clients, fed.cohort_size()):
            acc.accumulate(train_client(task, trainee, global_arrays, ctx, strategy.client_hooks(), client_id=cid))
        global_arrays = acc.finalize()
    model.load_state_dict(global_arrays)
    return model, init, baselines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="simulations/cardio.yaml")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--set", action="append", default=[], help="key.path=value, as fedsim run --set")
    parser.add_argument("--name", default="cardio_ablation", help="results file name (without .json)")
    args = parser.parse_args()
    overrides = dict(parse_override(kv) for kv in args.set)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        base = load_config(args.config, {**overrides, "seed": seed})
        eval_tasks = {name: task_for(load_config(args.config, {**overrides, "seed": seed,
                                                               "task.params": {**base.task.params, **extra}}))
                      for name, extra in CONDITIONS.items()}
        for modality in MODALITIES:
            model, init, baselines = train(args.config, {**overrides, "task.params.modalities": modality}, seed)
            row = {"seed": seed, "modalities": modality, "init_mae": init["mae"], "baselines": baselines,
                   **{name: t.evaluate(model)["mae"] for name, t in eval_tasks.items()}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    path = os.path.join(HERE, "results", f"{args.name}.json")
    with open(path, "w") as fh:
        json.dump({"config": args.config, "set": args.set, "seeds": args.seeds, "rows": rows}, fh, indent=1)
    print("| modalities | " + " | ".join(CONDITIONS) + " |\n|---|" + "---|" * len(CONDITIONS))
    for modality in MODALITIES:
        cells = [np.array([r[c] for r in rows if r["modalities"] == modality]) for c in CONDITIONS]
        print(f"| {modality} | " + " | ".join(f"{c.mean():.2f} ± {c.std(ddof=1) if len(c) > 1 else 0:.2f}"
                                               for c in cells) + " |")
    const = np.array([r["baselines"]["mae_constant_mean"] for r in rows if r["modalities"] == "av"])
    green = np.array([r["baselines"]["mae_green_spectral"] for r in rows if r["modalities"] == "av"])
    print(f"constant mean {const.mean():.2f} ± {const.std():.2f}; green spectral {green.mean():.2f} ± {green.std():.2f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
