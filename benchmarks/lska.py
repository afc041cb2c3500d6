"""LSKA vs LKA in the VAN backbone: parameters and CPU latency per kernel size, and the kNN
of the image task's calibration runs.

Parameters and latency (one CPU thread, median of ``--repeats`` timed calls after two warm-up
calls, LSKA and LKA interleaved so that load from other processes hits both alike)::

    python benchmarks/lska.py                      # all kernel sizes of the LSKA table
    python benchmarks/lska.py --kernels 7,23 --repeats 5

- ``unit``: one gating unit alone (``LSKA``/``LKA``, C = 64) on a ``(4, 64, 56, 56)`` map —
  the first-stage map of VAN at 224 px, where the kernel's cost is visible;
- ``backbone``: the registered ``van_lska``/``van_lka`` (defaults but ``kernel_size``) on a
  batch of 64 images of 28 px — inference (``no_grad``, eval mode) and one training step
  (forward + backward, train mode), what a client does.

kNN on the image task comes from ``benchmarks/calibrate.py`` runs (one per model, 3 seeds),
e.g. ``python benchmarks/calibrate.py --config simulations/quickstart.yaml --seeds 0,1,2
--set model.name=van_lska --name quickstart-van_lska``; ``--knn NAME,...`` summarises
``benchmarks/results/calibrate-NAME.json`` files (or any such file given by its path) into the
same results file. At 32 px, where a k = 23 gate sees the whole first-stage map::

    python benchmarks/lska.py --kernels "" --knn benchmarks/results/lska32/van_lska-k23.json,\
        benchmarks/results/lska32/van_lka-k23.json --out benchmarks/results/lska32/summary.json

``--pairs A:B,...`` (entries of ``--knn``) adds the paired difference A − B of final kNN over
the seeds both hold, with its 95 % t-interval (the demo's full budget at 32 px, 6 seeds, is
``benchmarks/results/lska32_20rounds/``; its command is in docs/reproductions/lska.md).

Writes ``benchmarks/results/lska.json`` (or ``--out``) and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from fedsim.models import build_backbone
from fedsim.models.van import KERNELS, LKA, LSKA

HERE = os.path.dirname(os.path.abspath(__file__))
UNIT_SHAPE = (4, 64, 56, 56)
BATCH, SIZE = 64, 28


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def median_ms(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of every function in ms, calls interleaved round-robin."""
    for fn in fns.values():
        fn(), fn()  # warm-up: allocator, oneDNN primitive caches
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def measure_kernel(k: int, repeats: int) -> dict[str, object]:
    gen = torch.Generator().manual_seed(k)
    fmap = torch.randn(UNIT_SHAPE, generator=gen)
    images = torch.randn((BATCH, 1, SIZE, SIZE), generator=gen)
    units = {"lska": LSKA(UNIT_SHAPE[1], k).eval(), "lka": LKA(UNIT_SHAPE[1], k).eval()}
    models = {a: build_backbone(f"van_{a}", in_channels=1, image_size=SIZE, options={"kernel_size": k})
              for a in ("lska", "lka")}

    def infer(module: nn.Module, x: torch.Tensor) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():
                return module.eval()(x)
        return run

    def train_step(model: nn.Module) -> Callable[[], object]:
        def run() -> None:
            model.train().zero_grad(set_to_none=True)
            model(images).square().mean().backward()
        return run

    fns: dict[str, Callable[[], object]] = {}
    for a in ("lska", "lka"):
        fns[f"unit_{a}"] = infer(units[a], fmap)
        fns[f"infer_{a}"] = infer(models[a], images)
        fns[f"train_{a}"] = train_step(models[a])
    ms = median_ms(fns, repeats)
    k0, kd, d = KERNELS[k]
    return {"kernel_size": k, "k0": k0, "kd": kd, "dilation": d,
            **{f"{what}_params_{a}": n_params(m) for a in ("lska", "lka")
               for what, m in (("unit", units[a]), ("backbone", models[a]))},
            **{f"{name}_ms": round(v, 3) for name, v in ms.items()}}


def knn_summary(names: list[str]) -> dict[str, dict[str, object]]:
    """Per calibration file: kNN at init, after training and raw-pixel, per seed and mean ± std."""
    out: dict[str, dict[str, object]] = {}
    for name in names:
        path = name if name.endswith(".json") else os.path.join(HERE, "results", f"calibrate-{name}.json")
        if not os.path.isfile(path):
            raise SystemExit(f"--knn {name}: {path} does not exist (a calibrate.py results file)")
        with open(path) as fh:
            runs = json.load(fh)["results"]
        rows = {"init": [r["init"]["knn_top1"] for r in runs], "final": [r["final"]["knn_top1"] for r in runs],
                "raw": [r["baselines"]["knn_top1_raw_input"] for r in runs]}
        out[name] = {"seeds": [r["seed"] for r in runs], **rows,
                     **{f"{key}_mean": statistics.mean(v) for key, v in rows.items()},
                     **{f"{key}_std": statistics.stdev(v) if len(v) > 1 else 0.0 for key, v in rows.items()}}
    return out


def paired_rows(knn: dict[str, dict[str, object]], pairs: list[tuple[str, str]]) -> list[dict[str, object]]:
    """``A − B`` of final kNN per seed both runs hold, with the paired 95 % t-interval."""
    from fedsim.bench.stats import paired

    out = []
    for a, b in pairs:
        if a not in knn or b not in knn:
            raise SystemExit(f"--pairs {a}:{b}: both must be entries of --knn")
        final_b = dict(zip(knn[b]["seeds"], knn[b]["final"]))
        both = [(x, final_b[seed]) for seed, x in zip(knn[a]["seeds"], knn[a]["final"]) if seed in final_b]
        p = paired(both)
        out.append({"a": a, "b": b, "n": p.n, "diffs": list(p.diffs), "mean": p.mean, "low": p.low, "high": p.high,
                    "p": p.p})
    return out


def markdown(rows: list[dict[str, object]], knn: dict[str, dict[str, object]],
             pairs: list[dict[str, object]] = ()) -> str:
    lines = ["| k | (k0, kd, d) | unit params LSKA / LKA | backbone params LSKA / LKA | unit ms LSKA / LKA "
             "| backbone infer ms LSKA / LKA | train step ms LSKA / LKA |", "|" + " --- |" * 7] if rows else []
    for r in rows:
        lines.append(f"| {r['kernel_size']} | ({r['k0']}, {r['kd']}, {r['dilation']}) "
                     f"| {r['unit_params_lska']:,} / {r['unit_params_lka']:,} "
                     f"| {r['backbone_params_lska']:,} / {r['backbone_params_lka']:,} "
                     f"| {r['unit_lska_ms']:.1f} / {r['unit_lka_ms']:.1f} "
                     f"| {r['infer_lska_ms']:.1f} / {r['infer_lka_ms']:.1f} "
                     f"| {r['train_lska_ms']:.1f} / {r['train_lka_ms']:.1f} |")
    if knn:
        lines += ["", "| run | raw pixels | encoder at init | after training |", "| --- | --- | --- | --- |"]
        for name, s in knn.items():
            lines.append(f"| {name} | " + " | ".join(f"{s[f'{key}_mean']:.3f} ± {s[f'{key}_std']:.3f}"
                                                    for key in ("raw", "init", "final")) + " |")
    if pairs:
        lines += ["", "| paired, after training | seeds | mean difference [95 % CI] | p |", "| --- | --- | --- | --- |"]
        for p in pairs:
            ci = f" [{p['low']:+.3f}, {p['high']:+.3f}]" if p["low"] is not None else ""
            lines.append(f"| {p['a']} − {p['b']} | {p['n']} | {p['mean']:+.3f}{ci} "
                         f"| {'–' if p['p'] is None else format(p['p'], '.2f')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", default=",".join(map(str, KERNELS)))
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--knn", default="", help="calibration names or .json paths, e.g. quickstart-van_lska,quickstart-van_lka")
    parser.add_argument("--pairs", default="", help="A:B,... of --knn entries: paired differences A − B by seed")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "lska.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    for k in (int(s) for s in args.kernels.split(",") if s):
        rows.append(measure_kernel(k, args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    knn = knn_summary([n for n in args.knn.split(",") if n])
    pairs = paired_rows(knn, [tuple(p.split(":")) for p in args.pairs.split(",") if p])
    machine = {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__,
               "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "loadavg_after": os.getloadavg()}
    path = args.out
    with open(path, "w") as fh:
        json.dump({"machine": machine, "repeats": args.repeats, "unit_shape": UNIT_SHAPE,
                   "backbone_batch": [BATCH, 1, SIZE, SIZE], "kernels": rows, "knn": knn, "pairs": pairs}, fh, indent=1)
    print(markdown(rows, knn, pairs))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
