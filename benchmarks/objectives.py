"""Does each SSL objective / pretext learn? Task × objective over seeds (0-4 committed), vs random init and raw input.

Each cell is an experiment spec (a ``simulations/*.yaml`` plus overrides) run in this one
process by :func:`calibrate.run_seed` — the same task, trainer and strategy code as
``fedsim run``, without Flower/Ray — once per seed. Each cell writes
``benchmarks/results/objectives/<cell>.json`` (the calibrate layout: per seed the round-0
metrics, the baselines and the final metrics); ``--table`` rebuilds the Markdown table of
``docs/reproductions/objectives.md`` from every JSON there::

    python benchmarks/objectives.py --cells image-byol --seeds 0,1,2 --jobs 3
    python benchmarks/objectives.py --cells audio-barlow --seeds 0 --set federation.rounds=6
    python benchmarks/objectives.py --cells image-simclr --seeds 3,4 --jobs 2 --add
    python benchmarks/objectives.py --table

A row reads "learns" when the primary metric's mean beats both the random init's and the
raw-input baseline's means and the paired 95 % interval of trained − raw over the seeds lies
above 0, "learns, within noise of raw" when only the means say so, and otherwise
"experimental": ``fedsim list`` marks those objectives (``Task.experimental``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
OUT = os.path.join(HERE, "results", "objectives")
ROOT = os.path.dirname(HERE)

# cell -> (spec, overrides, raw baseline key of the primary metric)
CELLS: dict[str, tuple[str, dict, str]] = {
    "image-simclr": ("simulations/quickstart.yaml", {}, "knn_top1_raw_input"),
    "image-byol": ("simulations/byol.yaml", {}, "knn_top1_raw_input"),
    # the same recipe over twice the demo's rounds (its cosine schedule stretched to 40)
    "image-byol-40rounds": ("simulations/byol.yaml", {"federation.rounds": 40}, "knn_top1_raw_input"),
    "audio-simclr": ("simulations/audio.yaml", {"task.params.objective": "simclr"}, "knn_top1_pooled_logmel"),
    "audio-barlow": ("simulations/audio.yaml", {"task.params.objective": "barlow"}, "knn_top1_pooled_logmel"),
    # temporal order needs twice the spec's rounds (12 rounds: 0.432 +- 0.028, below pooled log-mel)
    "audio-order": ("simulations/audio.yaml", {"task.params.objective": "order", "federation.rounds": 24},
                    "knn_top1_pooled_logmel"),
    "video-contrastive": ("simulations/fedvssl_video.yaml", {}, "knn_top1_raw_input"),
    "video-order": ("simulations/fedvssl_video.yaml", {"task.params.pretext": ["order"]}, "knn_top1_raw_input"),
    "video-speed": ("simulations/fedvssl_video.yaml", {"task.params.pretext": ["speed"]}, "knn_top1_raw_input"),
    # 300 held-out clips per set, not the spec's 100: the colour probe is fitted on 3/4 of the
    # bank, and on 75 clips it overfits (docs/reproductions/objectives.md#colourisation-video)
    "video-colorize": ("simulations/fedvssl_video.yaml", {"task.params.pretext": ["colorize"],
                                                          "task.params.eval_samples": 300}, "psnr_grey_input"),
    "video-colorize-fedavg": ("simulations/fedvssl_video.yaml", {"task.params.pretext": ["colorize"], "strategy.name": "fedavg",
                                                                 "strategy.params": {}, "task.params.eval_samples": 300},
                              "psnr_grey_input"),
}


def seed_run(spec: str, sets: dict, seed: int, threads: int) -> dict:
    """One seed of ``spec`` with ``sets`` on ``threads`` torch threads (a process pool's job)."""
    from calibrate import run_seed

    torch.set_num_threads(threads)
    return run_seed(os.path.join(ROOT, spec), sets, seed)


def run_with(data: dict, spec: str, sets: dict) -> bool:
    """Whether a cell JSON was run with ``spec`` and overrides ``sets`` (compared as stored:
    a tuple in ``sets`` is a list in the JSON)."""
    return (data["config"], data["set"]) == (spec, json.loads(json.dumps(sets)))


def run_cell(cell: str, seeds: list[int], extra: dict, jobs: int = 1, add: bool = False) -> dict:
    """Run ``cell`` for ``seeds`` (``extra`` overrides on top of the cell's), ``jobs`` seeds at a
    time (one process and one torch thread each when more than one), and write its JSON; with
    ``add``, the seeds join those already in the JSON, which must have been run with the same
    spec and overrides."""
    spec, overrides, raw = CELLS[cell]
    sets = {**overrides, **extra}
    kept: list[dict] = []
    path = os.path.join(OUT, f"{cell}.json")
    if add and os.path.exists(path):
        with open(path) as fh:
            old = json.load(fh)
        if not run_with(old, spec, sets):
            raise SystemExit(f"error: {path} was run with {old['config']} {old['set']}, not {spec} {sets}; "
                             "run without --add to replace it")
        kept = [r for r in old["results"] if r["seed"] not in seeds]
    if jobs <= 1:
        results = [seed_run(spec, sets, seed, torch.get_num_threads()) for seed in seeds]
    else:
        with ProcessPoolExecutor(jobs) as pool:
            results = list(pool.map(seed_run, [spec] * len(seeds), [sets] * len(seeds), seeds, [1] * len(seeds)))
    results = sorted(kept + results, key=lambda r: r["seed"])
    out = {"cell": cell, "config": spec, "set": sets, "raw_baseline": raw, "results": results}
    os.makedirs(OUT, exist_ok=True)
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)
    return out


def mean_std(values: list[float]) -> str:
    """``mean ± std`` (sample std; ``± –`` for one seed)."""
    if len(values) == 1:
        return f"{values[0]:.3f} ± –"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def paired_text(final: list[float], base: list[float]) -> str:
    """``+mean [low, high]``: the per-seed differences trained − raw baseline, with their 95 %
    t-interval (``–`` for one seed)."""
    from fedsim.bench.stats import paired

    d = paired(zip(final, base))
    if d is None or d.low is None:
        return "–" if d is None else f"{d.mean:+.3f}"
    return f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"


def cell_scores(data: dict) -> tuple[str, list[float], list[float], list[float]]:
    """A cell JSON's primary metric and its per-seed values: trained, random init, raw baseline."""
    results, raw = data["results"], data["raw_baseline"]
    metric = raw.rsplit("_", 2)[0] if raw.startswith("psnr") else "knn_top1"
    return (metric, [r["final"][metric] for r in results], [r["init"][metric] for r in results],
            [r["baselines"][raw] for r in results])


def table_row(data: dict) -> str:
    """One Markdown row: cell, metric, trained, init, raw baseline, trained − raw paired over
    the seeds, seeds, rounds, verdict."""
    metric, final, init, base = cell_scores(data)
    rounds = data.get("num_rounds") or len(data["results"][0]["rounds"])  # num_rounds: runs kept without their log
    task, objective = data["cell"].split("-", 1)
    return (f"| {task} | {objective} | {metric} | {mean_std(final)} | {mean_std(init)} | {mean_std(base)} "
            f"({data['raw_baseline']}) | {paired_text(final, base)} | {len(final)} | {rounds} "
            f"| {verdict(final, init, base)} |")


def verdict(final: list[float], init: list[float], base: list[float]) -> str:
    """"learns" when the trained mean beats both the random init's and the raw baseline's means
    and the paired interval against the raw baseline lies above 0; "learns, within noise of
    raw" when the means say so but that interval contains 0; otherwise experimental."""
    from fedsim.bench.stats import paired

    if statistics.mean(final) <= max(statistics.mean(init), statistics.mean(base)):
        return "**experimental**"
    d = paired(zip(final, base))
    return "learns" if d is not None and d.low is not None and d.low > 0 else "learns, within noise of raw"


def table() -> str:
    """The Markdown table of every cell's JSON under ``results/objectives/``."""
    lines = ["| task | objective | metric | trained | random init | raw-input baseline | trained − raw, paired "
             "(95 % CI) | seeds | rounds | verdict |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in sorted(os.listdir(OUT)):
        if name.endswith(".json"):
            with open(os.path.join(OUT, name)) as fh:
                lines.append(table_row(json.load(fh)))
    return "\n".join(lines)


def main() -> None:
    from fedsim.config import parse_override

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="", help=f"comma-separated, of: {', '.join(CELLS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--set", action="append", default=[], help="key.path=value on top of every cell")
    parser.add_argument("--jobs", type=int, default=1, help="seeds at a time, one process (and torch thread) each")
    parser.add_argument("--add", action="store_true",
                        help="add the seeds to the cell's committed JSON instead of replacing it")
    parser.add_argument("--table", action="store_true", help="print the Markdown table of the committed results")
    args = parser.parse_args()
    if args.table:
        print(table())
        return
    extra = dict(parse_override(kv) for kv in args.set)
    for cell in filter(None, args.cells.split(",")):
        if cell not in CELLS:
            parser.error(f"unknown cell {cell!r}; choose from {', '.join(CELLS)}")
        run_cell(cell, [int(s) for s in args.seeds.split(",")], extra, args.jobs, args.add)
    print(table())


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
