"""Digest of the global models and metrics of a matrix of tiny runs: a refactor's "changes no result".

Runs every strategy on the ``image`` task and each task/objective on FedAvg (both engines for a
few), all tiny and seeded, on one warm Ray cluster, and prints one JSON object: case name ->
sha256 of the final model's tensors and of the rounds' non-timing metrics. Run it before and
after a change and compare (``--compare before.json``); any difference names the cases.

    python benchmarks/same_result.py --out /tmp/before.json
    python benchmarks/same_result.py --compare /tmp/before.json
    python benchmarks/same_result.py --only fedprox,audio-barlow   # a subset
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

IMAGE = {"image_size": 12, "min_samples": 16, "max_samples": 24}
AUDIO = {"clip_seconds": 0.3, "n_mels": 16, "min_clips": 4, "max_clips": 6, "eval_per_class": 3}
VIDEO = {"frames": 8, "frame_size": 16, "order_frames": 2, "order_gap": 1, "speed_frames": 3,
         "colorize_frames": 4, "eval_frames": 4, "min_clips": 4, "max_clips": 6, "eval_samples": 20}
SMALL = {"federation.clients": 6, "federation.clients_per_round": 3, "federation.rounds": 2,
         "evaluation.every": 2}
STRATEGIES = ["fedavg", "fedavgm", "fedadam", "fedadagrad", "fedyogi", "fedprox", "ldawa", "krum",
              "median", "trimmed-mean", "fedvssl"]


def cases() -> dict[str, dict]:
    out: dict[str, dict] = {}
    for name in STRATEGIES:
        out[f"image-{name}"] = {"strategy.name": name, "task.params": IMAGE}
    out["image-fedprox-mu"] = {"strategy.name": "fedprox", "strategy.params": {"mu": 0.1},
                               "task.params": IMAGE}
    several_steps = {"federation.local_epochs": 2, "federation.batch_size": 8}  # mu acts from step 2
    out["image-fedprox-steps"] = {"strategy.name": "fedprox", "strategy.params": {"mu": 0.1},
                                  "task.params": IMAGE, **several_steps}
    out["image-fedavg-steps"] = {"task.params": IMAGE, **several_steps}
    out["image-ldawa-nowarmup"] = {"strategy.name": "ldawa", "strategy.params": {"warmup_rounds": 0},
                                   "task.params": IMAGE}  # else L-DAWA is FedAvg in a 2-round run
    out["image-dp"] = {"strategy.name": "fedavg", "strategy.dp_clip": 1.0, "strategy.dp_noise": 0.5,
                       "task.params": IMAGE}
    out["image-fedrepopt"] = {"strategy.name": "fedrepopt", "model.name": "repopt_vgg",
                              "task.params": IMAGE}
    out["image-byol"] = {"task.params": {**IMAGE, "objective": "byol"}}
    out["image-supervised-momentum"] = {"task.params": {**IMAGE, "objective": "supervised"},
                                        "federation.momentum": 0.9, "federation.lr_schedule": "cosine"}
    out["image-dirichlet-hetero"] = {"task.params": IMAGE, "partitioning.kind": "dirichlet",
                                     "heterogeneity.dropout": 0.3}
    out["image-flower-engine"] = {"engine.name": "flower", "task.params": IMAGE}
    out["image-cohort-engine"] = {"engine.name": "cohort", "task.params": IMAGE}
    for objective in ["simclr", "barlow", "order"]:
        out[f"audio-{objective}"] = {"task.name": "audio", "task.params": {**AUDIO, "objective": objective}}
    for pretext in ["order", "speed", "colorize", "contrastive"]:
        out[f"video-{pretext}"] = {"task.name": "video", "task.params": {**VIDEO, "pretext": pretext}}
    out["video-fedvssl"] = {"task.name": "video", "strategy.name": "fedvssl",
                            "task.params": {**VIDEO, "pretext": ["order", "colorize"]}}
    for encoders in ["single", "separate"]:
        out[f"audio_image-{encoders}"] = {"task.name": "audio_image", "task.params": {
            "encoders": encoders, "min_samples": 6, "max_samples": 8, "eval_per_class": 3,
            "image_size": 12, "clip_seconds": 0.3}}
    out["cardio"] = {"task.name": "cardio", "task.params": {"record_s": 12.0, "eval_subjects": 4}}
    out["synthetic-cohort"] = {"task.name": "synthetic", "model.name": "mlp", "engine.name": "cohort"}
    return out


def digest(run_dir: Path) -> dict[str, str]:
    import torch

    model = torch.load(run_dir / "model.pt", weights_only=True)
    h = hashlib.sha256()
    for key in sorted(model):
        h.update(key.encode())
        h.update(model[key].detach().cpu().contiguous().numpy().tobytes())
    rows = [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines()]
    rows = [{k: v for k, v in r.items() if not (k.endswith("_seconds") or k == "updates_per_s")}
            for r in rows]
    return {"model": h.hexdigest()[:16],
            "metrics": hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the digests here (JSON)")
    ap.add_argument("--compare", help="a JSON written by --out: exit 1 if any case differs")
    ap.add_argument("--only", help="comma-separated case names")
    args = ap.parse_args()

    from fedsim.config import load_config
    from fedsim.engines.warm import warm_cluster
    from fedsim.launcher import simulate

    todo = cases()
    if args.only:
        todo = {k: todo[k] for k in args.only.split(",")}
    result: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory() as tmp, warm_cluster():
        for name, overrides in todo.items():
            run_dir = Path(tmp) / name
            try:
                simulate(load_config(None, {**SMALL, "seed": 3, **overrides}), str(run_dir), quiet=True)
                result[name] = digest(run_dir)
            except Exception as exc:  # a case that fails is reported, the others still run
                result[name] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
            print(name, result[name], file=sys.stderr, flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1, sort_keys=True))
    if args.compare:
        before = json.loads(Path(args.compare).read_text())
        differ = [k for k in result if before.get(k) != result[k]]
        for k in differ:
            print(f"DIFFERS {k}: before {before.get(k)} after {result[k]}")
        print(f"{len(result) - len(differ)}/{len(result)} cases identical")
        return 1 if differ else 0
    print(json.dumps(result, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
