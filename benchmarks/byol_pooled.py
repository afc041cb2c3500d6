"""Does BYOL learn on the image demo's data at all? Centralised (pooled) training vs the federated run.

Pools the images of the clients a federated run of the spec samples (``--rounds`` rounds of
``clients_per_round``; the demo: 20 × 10 = up to 200 clients), shuffles them into i.i.d.
batches of the spec's batch size and trains the task's objective (same encoder, heads,
augmentations, loss, optimiser) for ``--steps`` SGD steps, evaluating the task's kNN / linear
probe every ``--eval-every`` steps. The BYOL target is built once at the start and follows
the online network by EMA for the whole run (the paper's setting), so the only differences
from the federated run are the data order (i.i.d. vs one label-skewed client at a time) and
the averaging::

    python benchmarks/byol_pooled.py --steps 1800 --eval-every 600       # the demo's step count
    python benchmarks/byol_pooled.py --steps 9000 --set task.params.objective=simclr

``--lr-schedule cosine`` (linear warm-up over ``--warmup`` steps, then cosine to 0) and
``--tau-schedule cosine`` (τ from ``byol_momentum`` to 1, BYOL's §3.2) are the paper's
schedules. Prints one JSON line per evaluation; ``--out`` writes them all.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch

from fedsim.config import load_config, parse_override
from fedsim.factory import task_for
from fedsim.optim import client_optimizer
from fedsim.seeding import sample_clients
from fedsim.tasks.base import TensorDataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pooled_dataset(task, exp, rounds: int) -> TensorDataset:
    """The images of every client the first ``rounds`` rounds of ``exp`` sample, in one dataset."""
    fed = exp.federation
    ids = sorted({c for r in range(1, rounds + 1) for c in sample_clients(exp.seed, r, fed.clients, fed.cohort_size())})
    parts = [task.client_dataset(c) for c in ids]
    return TensorDataset({k: torch.cat([p[k] for p in parts]) for k in parts[0].tensors})


def lr_at(step: int, total: int, base: float, schedule: str, warmup: int) -> float:
    """Constant ``base``, or linear warm-up then cosine decay to 0 (BYOL §3.2)."""
    if schedule == "constant":
        return base
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.path.join(ROOT, "simulations", "quickstart.yaml"))
    parser.add_argument("--set", action="append", default=["task.params.objective=byol"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=None, help="pool the clients of this many rounds (default: the spec's)")
    parser.add_argument("--steps", type=int, default=1800)
    parser.add_argument("--eval-every", type=int, default=600)
    parser.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant")
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--tau-schedule", choices=["constant", "cosine"], default="constant")
    parser.add_argument("--predictor-lr", type=float, default=1.0, help="the predictor's lr as a multiple of the rest's")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd",
                        help="adam: torch.optim.Adam at federation.lr (momentum ignored)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    exp = load_config(args.config, {**dict(parse_override(kv) for kv in args.set), "seed": args.seed})
    fed = exp.federation
    task = task_for(exp)
    model = task.build_model()
    data = pooled_dataset(task, exp, args.rounds or fed.rounds)
    rows = [{"step": 0, **task.evaluate(model), **task.baselines(), "images": len(data)}]
    print(json.dumps(rows[0]), flush=True)
    if args.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=fed.lr, weight_decay=fed.weight_decay)
    elif args.predictor_lr != 1.0:  # a second parameter group at its own lr
        pred = {id(p) for p in model.predictor.parameters()}
        opt = torch.optim.SGD([{"params": [p for p in model.parameters() if id(p) not in pred], "scale": 1.0},
                               {"params": list(model.predictor.parameters()), "scale": args.predictor_lr}],
                              lr=fed.lr, momentum=fed.momentum, weight_decay=fed.weight_decay)
    else:
        opt = client_optimizer(exp.federation.optimizer, model, lr=fed.lr, momentum=fed.momentum,
                               weight_decay=fed.weight_decay)
    target = getattr(task.objective, "target", None)
    task.start_local_training(model)
    tau0 = target.tau if target is not None else None
    gen = torch.Generator().manual_seed(args.seed)
    step, start, losses = 0, time.perf_counter(), []
    while step < args.steps:
        for batch in data.batches(gen, fed.batch_size):
            for group in opt.param_groups:
                group["lr"] = group.get("scale", 1.0) * lr_at(step, args.steps, fed.lr, args.lr_schedule, args.warmup)
            if target is not None and args.tau_schedule == "cosine":
                target.tau = 1 - (1 - tau0) * (math.cos(math.pi * step / args.steps) + 1) / 2
            model.train()
            loss = task.loss(model, batch, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
            if step % args.eval_every == 0 or step == args.steps:
                row = {"step": step, "loss": sum(losses) / len(losses), **task.evaluate(model),
                       "t": round(time.perf_counter() - start)}
                losses = []
                rows.append(row)
                print(json.dumps(row), flush=True)
            if step >= args.steps:
                break
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"argv": sys.argv[1:], "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
