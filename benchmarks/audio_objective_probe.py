"""Centralised probe of an audio objective: does its pretext learn, and does kNN follow?

Pools the clips of the first ``--clients`` clients of ``simulations/audio.yaml`` (seed 0),
trains the task's model with the objective's own loss (SGD, momentum 0.9, batches of 32) for
``--steps`` steps, and every ``--every`` steps prints: the loss, for ``order`` the pretext's
accuracy on the held-out query clips (one fixed draw of views and permutations; chance 1/6),
kNN, linear probe and retrieval mAP, kNN on features centred by the bank mean, the share of
the features' energy in their mean direction and their effective rank (exp of the entropy of
the normalised singular values of the centred bank features)::

    python benchmarks/audio_objective_probe.py --objective order --steps 100 --every 50
    python benchmarks/audio_objective_probe.py --objective simclr --set task.params.clip_seconds=0.5

Output: one JSON line per evaluation (recorded in ``results/objectives/sweeps/``).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from fedsim.config import load_config, parse_override
from fedsim.factory import task_for
from fedsim.objectives.spectrogram_order import PERMUTATIONS
from fedsim.tasks.classification import knn_top1

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@torch.no_grad()
def order_accuracy(task, model, wave: torch.Tensor) -> float:
    """Accuracy of the order head on ``wave``'s views (a fixed draw), as the objective's loss cuts them."""
    gen = torch.Generator().manual_seed(1)
    spec = task.view(wave, gen)  # (n, 1, F, T)
    n, frames = spec.shape[0], spec.shape[-1] // 3
    segments = spec[..., : 3 * frames].reshape(n, 1, spec.shape[2], 3, frames)
    label = torch.randint(0, len(PERMUTATIONS), (n,), generator=gen)
    shuffled = segments[torch.arange(n)[:, None], :, :, PERMUTATIONS[label]]
    feats = model.backbone(shuffled.reshape(n * 3, 1, spec.shape[2], frames))
    logits = task.objective.head_of(model)(feats.reshape(n, -1))
    return float((logits.argmax(1) == label).float().mean())


@torch.no_grad()
def geometry(task, model) -> dict[str, float]:
    """kNN on bank-centred features, the mean direction's energy share, the effective rank."""
    data = task.eval_data()
    bank, query = model.backbone(data.bank_x), model.backbone(data.query_x)
    mean = bank.mean(0)
    s = torch.linalg.svdvals(bank - mean)
    p = s / s.sum()
    return {"knn_centred": knn_top1(bank - mean, data.bank_y, query - mean, data.query_y, k=task.context.evaluation.knn_k),
            "mean_share": round(float(mean.pow(2).sum() / bank.pow(2).sum(1).mean()), 3),
            "erank": round(float(torch.exp(-(p * p.clamp_min(1e-12).log()).sum())), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objective", default="order")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--set", action="append", default=[], help="key.path=value, as fedsim run --set")
    args = parser.parse_args()
    overrides = {"task.params.objective": args.objective, **dict(parse_override(kv) for kv in args.set)}
    task = task_for(load_config(os.path.join(ROOT, "simulations/audio.yaml"), overrides))
    model = task.build_model()
    wave = torch.cat([task.samples(c)[0] for c in range(args.clients)])
    query = task.held_out()[2]
    print(json.dumps({"step": 0, **task.evaluate(model), **geometry(task, model), **task.baselines()}), flush=True)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        model.train()
        loss = task.loss(model, {task.sample_key: wave[torch.randint(0, len(wave), (32,), generator=gen)]}, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.every == 0:
            model.eval()
            row = {"step": step, "loss": round(float(loss.detach()), 4)}
            if args.objective == "order":
                row["pretext_acc"] = round(order_accuracy(task, model, query), 3)
            row.update({**task.evaluate(model), **geometry(task, model), "t": round(time.perf_counter() - start)})
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
