"""The folder recipes on folders made here: does federated SSL beat raw-input kNN on a folder?

Writes the two folders of :mod:`make_folders` (rendered digits in unseen fonts, synthesised
vowels by unseen speakers) into a temporary directory, runs ``simulations/folder_image.yaml``
on the first and ``simulations/folder_audio.yaml`` on the second for every seed — in this one
process, with the task, trainer and strategy code of ``fedsim run`` (:func:`calibrate.run_seed`,
no Flower/Ray) — and writes, per spec, ``benchmarks/results/folder/<name>.json`` (per seed:
kNN of the random-init encoder, the round-0 baselines, kNN after training, wall time) and a
Markdown table of mean ± std over the seeds::

    python benchmarks/folder_recipes.py --seeds 0,1,2
    python benchmarks/folder_recipes.py --only image --seeds 0 --set federation.rounds=2
    python benchmarks/folder_recipes.py --table      # the table of the committed results
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # run as a script: calibrate and make_folders sit beside it

from calibrate import run_seed  # noqa: E402
from make_folders import make_folders  # noqa: E402

from fedsim.config import parse_override  # noqa: E402

SPECS = {"image": ("folder_image", "glyphs"), "audio": ("folder_audio", "vowels")}
"""task -> (spec name under simulations/, folder written by make_folders)."""


def run_one(task: str, folder: str, seed: int, overrides: dict, threads: int) -> dict:
    """One seed of ``task``'s spec on ``folder``: init, baselines, final metrics, seconds."""
    torch.set_num_threads(threads)
    spec = os.path.join(HERE, "..", "simulations", f"{SPECS[task][0]}.yaml")
    start = time.perf_counter()
    r = run_seed(spec, {**overrides, "task.data_dir": folder}, seed)
    return {"seed": seed, "init": r["init"], "baselines": r["baselines"], "final": r["final"],
            "rounds": r["rounds"], "seconds": round(time.perf_counter() - start, 1)}


def run_all(jobs: list[tuple[str, str, int]], overrides: dict, workers: int) -> list[dict]:
    """``run_one`` for every ``(task, folder, seed)``, ``workers`` processes at a time (one
    torch thread each when more than one)."""
    if workers <= 1:
        return [run_one(t, f, s, overrides, torch.get_num_threads()) for t, f, s in jobs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(run_one, *zip(*jobs), [overrides] * len(jobs), [1] * len(jobs)))


def summarise(rows: list[dict]) -> dict[str, list[float]]:
    """``{column: [mean, std]}`` over the seeds (std 0 for one seed): kNN init / trained, baselines, seconds."""
    columns = {"knn_init": [r["init"]["knn_top1"] for r in rows],
               "knn_trained": [r["final"]["knn_top1"] for r in rows],
               "seconds": [r["seconds"] for r in rows]}
    for key in rows[0]["baselines"]:
        columns[key] = [r["baselines"][key] for r in rows]
    return {k: [statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0] for k, v in columns.items()}


def table(results: dict[str, dict]) -> str:
    """Markdown: one row per spec, kNN top-1 mean ± std over the seeds."""
    lines = ["| spec | seeds | rounds | raw input | pooled log-mel | random init | trained | wall time / seed |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for task, res in results.items():
        s = res["summary"]

        def cell(key: str) -> str:
            return f"{s[key][0]:.3f} ± {s[key][1]:.3f}" if key in s else "–"

        rounds = max(r["round"] for r in res["seeds"][0]["rounds"] if "knn_top1" in r)
        lines.append(f"| `{res['spec']}` ({task}) | {len(res['seeds'])} | {rounds} | {cell('knn_top1_raw_input')} | "
                     f"{cell('knn_top1_pooled_logmel')} | {cell('knn_init')} | **{cell('knn_trained')}** | "
                     f"{s['seconds'][0] / 60:.0f} min |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="run seeds (the folders use --folder-seed)")
    parser.add_argument("--folder-seed", type=int, default=0)
    parser.add_argument("--only", choices=sorted(SPECS), default=None)
    parser.add_argument("--set", action="append", default=[], help="key.path=value, as fedsim run --set")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, one process each")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "folder"))
    parser.add_argument("--table", action="store_true", help="only print the table of the JSON files in --out")
    args = parser.parse_args()
    if args.table:
        results = {}
        for task, (name, _) in SPECS.items():
            path = os.path.join(args.out, f"{name}.json")
            if os.path.exists(path):
                with open(path) as fh:
                    results[task] = json.load(fh)
        print(table(results))
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    overrides = dict(parse_override(kv) for kv in args.set)
    os.makedirs(args.out, exist_ok=True)
    results = {}
    tasks = [args.only] if args.only else list(SPECS)
    with tempfile.TemporaryDirectory(prefix="fedsim-folders-") as tmp:
        folders = make_folders(tmp, seed=args.folder_seed, names=tuple(SPECS[t][1] for t in tasks))
        jobs = [(t, str(folders[SPECS[t][1]]), s) for t in tasks for s in seeds]
        rows = run_all(jobs, overrides, args.jobs)
    for task in tasks:
        name, folder = SPECS[task]
        mine = [r for (t, _, _), r in zip(jobs, rows) if t == task]
        results[task] = {"spec": f"simulations/{name}.yaml", "overrides": overrides,
                         "folder": f"benchmarks/make_folders.py --seed {args.folder_seed}: {folder}",
                         "jobs": args.jobs, "seeds": mine, "summary": summarise(mine)}
        path = os.path.join(args.out, f"{name}.json")
        with open(path, "w") as fh:
            json.dump(results[task], fh, indent=1)
        print(f"wrote {path}", flush=True)
    print(table(results))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
