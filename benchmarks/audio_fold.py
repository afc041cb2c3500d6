"""Parameters and CPU inference latency of the audio backbones, and the error of the Rep fold.

Measures, on random log-mel-shaped inputs (default batch 32 × 1 × 64 × 101: 64 mel bins,
1 s of 16 kHz audio at hop 160), in eval mode under ``torch.inference_mode``:

* ``audio_rep_inceptionnext`` with its three-way depthwise branches (training form),
* the same model after ``reparameterize()`` (each stage folded into one depthwise conv),
* ``audio_inceptionnext`` (the non-Rep AudioInceptionNeXt, nothing to fold),

each at one intra-op thread and at torch's default thread count, as the median of
``--repeats`` timed forward passes after ``--warmup`` untimed ones (the three models take
turns within each repeat). The fold is checked on the
same input: the maximum absolute difference between the branch and folded outputs. So that
the check means something, the models are built without the zero-initialised last BN (which
would make every block its shortcut) and their BN running statistics are moved away from the
init by a few train-mode passes on random inputs first. ::

    .venv/bin/python benchmarks/audio_fold.py
    .venv/bin/python benchmarks/audio_fold.py --batch 8 --repeats 30

Writes ``benchmarks/results/audio_fold.json``. Latencies are only comparable within one run
on a quiet machine (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

import torch
from torch import nn

from fedsim.models import build_backbone  # noqa: F401  (registers the backbones)
from fedsim.models.audio_inceptionnext import reparameterize
from fedsim.registry import MODELS

HERE = os.path.dirname(os.path.abspath(__file__))
REP, PLAIN = "audio_rep_inceptionnext", "audio_inceptionnext"


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def prepared(name: str, x: torch.Tensor, *, seed: int) -> nn.Module:
    """``name`` built under ``seed`` with non-trivial BN statistics, in eval mode."""
    torch.manual_seed(seed)
    model = MODELS.get(name)(in_channels=1, zero_init_last_bn=False)  # branches not muted
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for _ in range(3):  # train-mode passes move the running statistics
            model(torch.randn(x.shape, generator=gen))
    return model.eval()


def median_latencies_ms(models: dict[str, nn.Module], x: torch.Tensor, *, threads: int,
                        warmup: int, repeats: int) -> dict[str, float]:
    """Median forward time of each model; the models take turns within every repeat, so a
    change in machine load during the run affects them alike."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    times: dict[str, list[float]] = {label: [] for label in models}
    try:
        with torch.inference_mode():
            for model in models.values():
                for _ in range(warmup):
                    model(x)
            for _ in range(repeats):
                for label, model in models.items():
                    start = time.perf_counter()
                    model(x)
                    times[label].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return {label: 1000 * statistics.median(t) for label, t in times.items()}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    x = torch.randn(args.batch, 1, args.mels, args.frames, generator=torch.Generator().manual_seed(0))
    rep = prepared(REP, x, seed=args.seed)
    folded = reparameterize(rep)
    plain = prepared(PLAIN, x, seed=args.seed)
    with torch.inference_mode():
        diff = float((rep(x) - folded(x)).abs().max())
        scale = float(rep(x).abs().max())
    default_threads = torch.get_num_threads()
    models = {f"{REP} (branches)": rep, f"{REP} (folded)": folded, PLAIN: plain}
    rows = [{"model": label, "params": n_params(model)} for label, model in models.items()]
    for threads in sorted({1, default_threads}):
        medians = median_latencies_ms(models, x, threads=threads, warmup=args.warmup, repeats=args.repeats)
        for row in rows:
            row[f"latency_ms_{threads}_threads"] = medians[row["model"]]
    for row in rows:
        print(row, flush=True)
    return {
        "input_shape": list(x.shape),
        "threads": sorted({1, default_threads}),
        "warmup": args.warmup,
        "repeats": args.repeats,
        "statistic": "median forward latency, eval mode, torch.inference_mode",
        "fold_max_abs_diff": diff,
        "output_max_abs": scale,
        "rows": rows,
        "torch": torch.__version__,
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--mels", type=int, default=64)
    parser.add_argument("--frames", type=int, default=101, help="time frames (101 = 1 s at hop 160)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "audio_fold.json"))
    args = parser.parse_args()
    result = measure(args)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"fold max |diff| = {result['fold_max_abs_diff']:.2e} (outputs up to {result['output_max_abs']:.2f}); "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
