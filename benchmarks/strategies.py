"""Final kNN accuracy of several strategies over seeds, side by side (mean ± std).

Each (strategy, seed) is one ``fedsim run --quiet`` in its own process; the table reads
``summary.json`` of every run. The default is issue 13's comparison: FedAvg, L-DAWA and
FedVSSL on the image task with Dirichlet α=0.1, 3 seeds, small settings::

    python benchmarks/strategies.py
    python benchmarks/strategies.py --strategies fedavg,median --seeds 0,1 --set federation.rounds=5

Writes ``benchmarks/results/strategies.json``; the run directories go under
``runs/strategies/`` (git ignores ``runs/``). No tuning per strategy: every run gets the
same settings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# All as --set so a user's --set (given after these) overrides them; a CLI flag would win over any --set.
SMALL = ["--set", "federation.clients=100", "--set", "federation.clients_per_round=10",
         "--set", "federation.rounds=10", "--set", "federation.local_epochs=3",
         "--set", "partitioning.kind=dirichlet", "--set", "partitioning.alpha=0.1",
         "--set", "federation.lr=0.05", "--set", "federation.momentum=0.9",
         "--set", "task.params.image_size=16", "--set", "evaluation.every=10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategies", default="fedavg,ldawa,fedvssl")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--set", action="append", default=[], help="extra --set key=value for every run")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "strategies.json"),
                        help="the table's JSON")
    parser.add_argument("--runs", default="runs/strategies",
                        help="parent of the run directories (checkpoints, client state; not kept in git)")
    args = parser.parse_args()
    extra = [a for kv in args.set for a in ("--set", kv)]
    rows = []
    for strategy in args.strategies.split(","):
        for seed in args.seeds.split(","):
            run_dir = os.path.join(args.runs, f"{strategy}-seed{seed}-{time.strftime('%H%M%S')}")
            cmd = [sys.executable, "-m", "fedsim", "run", "--quiet", "--strategy", strategy,
                   "--seed", seed, "--out", run_dir, *SMALL, *extra]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if proc.returncode != 0:
                print(f"{strategy} seed {seed}: FAILED ({proc.returncode}) {proc.stderr.strip()}")
                continue
            with open(os.path.join(run_dir, "summary.json")) as fh:
                summary = json.load(fh)
            rows.append({"strategy": strategy, "seed": int(seed), "wall_s": wall, **summary})
            print(f"{strategy:10s} seed {seed}: kNN {summary['knn_top1']:.3f} (init {summary['knn_top1_init']:.3f}, "
                  f"raw {summary['knn_top1_raw_input']:.3f}), {wall:.0f} s", flush=True)
    print("\n| strategy | final kNN top-1 (mean ± std) | init kNN | raw-input kNN | seeds |\n|---|---|---|---|---|")
    table = {}
    for strategy in args.strategies.split(","):
        got = [r for r in rows if r["strategy"] == strategy]
        if not got:
            continue
        knn = [r["knn_top1"] for r in got]
        std = statistics.stdev(knn) if len(knn) > 1 else 0.0
        table[strategy] = {"mean": statistics.mean(knn), "std": std, "n": len(knn)}
        print(f"| {strategy} | {statistics.mean(knn):.3f} ± {std:.3f} | "
              f"{statistics.mean(r['knn_top1_init'] for r in got):.3f} | "
              f"{statistics.mean(r['knn_top1_raw_input'] for r in got):.3f} | {len(knn)} |")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"settings": SMALL + extra, "runs": rows, "table": table}, fh, indent=1)


if __name__ == "__main__":
    main()
