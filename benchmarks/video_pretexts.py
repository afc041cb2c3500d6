"""Why do the video clip-order and playback-speed pretexts not lift kNN? Two measurements.

``central``: the clips of 8 clients pooled, plain SGD (momentum 0.9, weight decay 5e-4,
batches of 32) on one pretext; every ``every`` steps the pretext's own training accuracy
(over the steps since the last report; chance is 1/6 for three sub-clips, 1/3 for three
speeds) and the kNN / linear probe of the encoder on the held-out clips. It answers "does
the pretext learn its own task?" separately from "do its features carry the label?".

``federated``: :func:`calibrate.run_seed` of a ``benchmarks/objectives.py`` cell with extra
overrides, one seed (the rounds' losses and the final kNN).

``motion``: how far the main digit moves in the pooled clips (centroid of the grey mass above
each frame's median, in px) and how many clips bounce off an edge.

Each run is appended to ``benchmarks/results/objectives/sweeps/video-<pretext>.json``::

    python benchmarks/video_pretexts.py central order --steps 900 --every 150 --lr 0.01
    python benchmarks/video_pretexts.py central speed --steps 400 --every 100 --lr 0.01 --set speeds=[1,3]
    python benchmarks/video_pretexts.py federated order --set federation.lr=0.01
    python benchmarks/video_pretexts.py motion order
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
SWEEPS = os.path.join(HERE, "results", "objectives", "sweeps")


def pretext_logits(task, model, batch: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The pretext head's logits and labels on one batch (the same draws as the objective's loss)."""
    from fedsim.data.augmentations import grey
    from fedsim.losses.clip_order import shuffled_subclips
    from fedsim.losses.playback_speed import speed_views

    (name, objective), = task.objectives.items()
    p = task.params
    if name == "order":
        sub, label = shuffled_subclips(batch, k=p.order_subclips, frames=p.order_frames, gap=p.order_gap,
                                       generator=generator)
        n, k = sub.shape[:2]
        return objective.head_of(model)(model.backbone(grey(sub.flatten(0, 1))).reshape(n, k, -1)), label
    views, label = speed_views(batch, speeds=p.speeds, frames=p.speed_frames, generator=generator)
    return objective.head_of(model)(model.backbone(grey(views))), label


def pooled_clips(seed: int = 0, params: dict | None = None, clients: int = 8) -> tuple[Any, torch.Tensor]:
    """The video task (the spec's population, task ``params`` on top) and its first ``clients`` clients' clips."""
    from fedsim.config import load_config
    from fedsim.factory import task_for

    task = task_for(load_config(None, {"task.name": "video", "seed": seed, "federation.clients": 100,
                                       "evaluation.knn_k": 20, "task.params": {"eval_samples": 100, **(params or {})}}))
    return task, torch.cat([task.client_dataset(c)["video"] for c in range(clients)])


def central(pretext: str, params: dict, *, steps: int, every: int, lr: float, seed: int = 0) -> dict:
    """Pooled-clip SGD on ``pretext``: its training accuracy and the encoder's kNN every ``every`` steps."""
    task, clips = pooled_clips(seed, {"pretext": pretext, **params})
    model = task.build_model()
    init = task.evaluate(model)
    out = {"kind": "central", "pretext": pretext, "params": params, "lr": lr, "seed": seed, "clips": len(clips),
           "init": init, "baselines": task.baselines(), "log": []}
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(seed)
    correct = total = 0
    start = time.perf_counter()
    for step in range(1, steps + 1):
        logits, label = pretext_logits(task, model, clips[torch.randint(0, len(clips), (32,), generator=g)], g)
        loss = F.cross_entropy(logits, label)
        opt.zero_grad()
        loss.backward()
        opt.step()
        correct, total = correct + int((logits.argmax(1) == label).sum()), total + len(label)
        if step % every == 0:
            row = {"step": step, "pretext_acc": round(correct / total, 3), **task.evaluate(model),
                   "t": round(time.perf_counter() - start)}
            model.train()
            out["log"].append(row)
            print(json.dumps(row), flush=True)
            correct = total = 0
    return out


def motion(seed: int = 0) -> dict:
    """Quantiles of the main digit's centroid displacement (px) per frame and over the clip."""
    from fedsim.data.augmentations import grey

    _, clips = pooled_clips(seed)
    g = grey(clips)[:, 0]  # (n, t, h, w)
    mass = (g - g.flatten(2).median(dim=2).values[:, :, None, None]).clamp(min=0)
    total = mass.sum((2, 3))
    cy = (mass * torch.arange(g.shape[2]).float()[:, None]).sum((2, 3)) / total
    cx = (mass * torch.arange(g.shape[3]).float()).sum((2, 3)) / total
    step = torch.hypot(cy.diff(dim=1), cx.diff(dim=1))
    span = torch.hypot(cy[:, -1] - cy[:, 0], cx[:, -1] - cx[:, 0])
    q = torch.tensor([0.1, 0.5, 0.9])
    vx, vy = cx.diff(dim=1), cy.diff(dim=1)
    bounce = (((vx[:, 1:] * vx[:, :-1]) < -0.01) | ((vy[:, 1:] * vy[:, :-1]) < -0.01)).any(1)
    return {"kind": "motion", "seed": seed, "clips": len(clips), "frames": g.shape[1], "size": g.shape[2],
            "step_px_q10_50_90": torch.quantile(step.flatten(), q).tolist(),
            "clip_span_px_q10_50_90": torch.quantile(span, q).tolist(), "share_bouncing": float(bounce.float().mean())}


def federated(pretext: str, sets: dict, seed: int = 0) -> dict:
    """One seed of the ``video-<pretext>`` cell of ``benchmarks/objectives.py`` with ``sets`` on top."""
    from calibrate import run_seed
    from objectives import CELLS, ROOT

    spec, overrides, _ = CELLS[f"video-{pretext}"]
    result = run_seed(os.path.join(ROOT, spec), {**overrides, **sets}, seed)
    return {"kind": "federated", "pretext": pretext, "set": sets, "seed": seed, "init": result["init"],
            "baselines": result["baselines"], "final": result["final"],
            "losses": [round(r["loss"], 4) for r in result["rounds"]]}


def main() -> None:
    from fedsim.config import parse_override

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("central", "federated", "motion"))
    parser.add_argument("pretext", choices=("order", "speed"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[],
                        help="central: a task parameter (order_frames=4); federated: key.path=value")
    args = parser.parse_args()
    sets = dict(parse_override(kv) for kv in args.set)
    if args.kind == "central":
        record = central(args.pretext, sets, steps=args.steps, every=args.every, lr=args.lr, seed=args.seed)
    elif args.kind == "federated":
        record = federated(args.pretext, sets, seed=args.seed)
    else:
        record = motion(args.seed)
    path = os.path.join(SWEEPS, f"video-{args.pretext}.json")
    runs = json.load(open(path)) if os.path.exists(path) else []
    with open(path, "w") as fh:
        json.dump([*runs, record], fh, indent=1)
    print(json.dumps(record))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
