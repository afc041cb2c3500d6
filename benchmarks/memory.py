"""Peak memory of fedsim's cohort engine as the registered population grows, clients per round fixed.

fedsim promises that registering clients costs nothing until they are sampled: a client's
data is a pure function of (seed, client id) generated on demand, sampling is O(clients per
round), and the server keeps one accumulator of the model's size (docs/concepts/task-contract.md
and docs/concepts/aggregation.md). This script checks it: for every population size
(default 1,000, 100,000 and 1,000,000 registered clients) it runs ``fedsim run`` — the real
command, each in its own process — with 1,000 clients per round on the synthetic MLP
workload of ``throughput.py`` (MLP 784-100-10, one SGD step on 32 samples per client),
measures the whole process tree's peak RSS and PSS (``proctree.py``: the driver with the
ServerApp plus every Ray daemon and worker), and prints the growth from the smallest to the
largest population against the target of at most +10 %:

    python benchmarks/memory.py
    python benchmarks/memory.py --rounds 2 --repeat 3

Writes ``benchmarks/results/memory.json`` and ``memory.png``. Peak RSS of a Ray process tree
varies by a few per cent from run to run (how many idle workers Ray prestarts, when the
sampler catches the peak); ``--repeat`` runs each size several times and keeps the median.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proctree import failure, run_measured, usable_cores  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
GROWTH_TARGET = 0.10  # peak RSS at the largest population at most 10 % above the smallest


def fedsim_command(population: int, per_round: int, rounds: int, workers: int, run_dir: str) -> list[str]:
    """``fedsim run`` on the synthetic MLP workload with the cohort engine."""
    sets = {"task.name": "synthetic", "model.name": "mlp", "engine.name": "cohort",
            "engine.workers": workers, "federation.clients": population,
            "federation.clients_per_round": per_round, "federation.rounds": rounds,
            "federation.local_epochs": 1, "federation.batch_size": 32, "federation.lr": 0.05,
            "evaluation.every": rounds, "evaluation.linear_probe": "false", "seed": 0}
    cmd = [sys.executable, "-m", "fedsim", "run", "--quiet", "--out", run_dir]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    return cmd


def run_population(population: int, args: argparse.Namespace, tmp: str, attempt: int) -> dict[str, Any]:
    run_dir = os.path.join(tmp, f"run-{population}-{attempt}")
    log = os.path.join(args.logs, f"memory-{population}-{attempt}.log")
    print(f"  {population:7d} registered, {args.per_round} per round, {args.rounds} rounds ...", end="", flush=True)
    measured = run_measured(fedsim_command(population, args.per_round, args.rounds, args.workers, run_dir),
                            timeout=args.timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"}, log_path=log)
    row: dict[str, Any] = {"population": population, "clients_per_round": args.per_round,
                           "rounds": args.rounds, "log": log, **measured}
    summary_path = os.path.join(run_dir, "summary.json")
    error = failure(measured, summary_path)
    if error is not None:
        row["error"] = error
        print(f" FAILED ({row['error']}; see {log})")
        return row
    with open(summary_path) as fh:
        summary = json.load(fh)
    with open(os.path.join(run_dir, "rounds.jsonl")) as fh:
        rounds = [json.loads(line) for line in fh if line.strip()][1:]  # line 0: initial evaluation
    steady = rounds[1:]
    seconds = sum(r["round_seconds"] - r.get("eval_seconds", 0.0) for r in steady)
    row.update({
        "steady_updates_per_s": sum(r["clients_ok"] for r in steady) / seconds if seconds > 0 else None,
        "round_seconds": [round(r["round_seconds"], 4) for r in rounds],
        "first_round_start_s": summary["first_round_start_seconds"],
        "run_wall_s": summary["wall_seconds"],
    })
    print(f" peak RSS {row['peak_rss_mb']:.0f} MB (driver {row['peak_root_rss_mb']:.0f} MB), "
          f"PSS {row['peak_pss_mb'] or 0:.0f} MB, wall {row['wall_s']:.1f} s")
    return row


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The attempt with the median peak RSS (the first one when there is one)."""
    ok = [r for r in rows if "error" not in r]
    if not ok:
        return rows[0]
    ranked = sorted(ok, key=lambda r: r["peak_rss_mb"])
    out = dict(ranked[(len(ranked) - 1) // 2])
    out["peak_rss_mb_attempts"] = [r["peak_rss_mb"] for r in ok]
    return out


def growth(results: list[dict[str, Any]], key: str) -> float | None:
    ok = [r for r in results if "error" not in r and r.get(key)]
    if len(ok) < 2:
        return None
    small, large = min(ok, key=lambda r: r["population"]), max(ok, key=lambda r: r["population"])
    return large[key] / small[key] - 1.0


def plot(results: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if "error" not in r]
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    x = range(len(ok))
    width = 0.27
    for i, (key, label) in enumerate((("peak_rss_mb", "tree RSS"), ("peak_pss_mb", "tree PSS"),
                                      ("peak_root_rss_mb", "driver RSS"))):
        values = [r.get(key) or 0 for r in ok]
        ax.bar([j + (i - 1) * width for j in x], values, width, label=label)
        for j, v in zip(x, values):
            ax.text(j + (i - 1) * width, v, f"{v:.0f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(x), [f"{r['population']:,}" for r in ok])
    ax.set_xlabel(f"registered clients ({ok[0]['clients_per_round'] if ok else '?'} per round)")
    ax.set_ylabel("peak memory (MB)")
    g = growth(ok, "peak_rss_mb")
    ax.set_title("fedsim cohort engine, MLP workload" + (f": RSS growth {g:+.1%}" if g is not None else ""))
    ax.legend(fontsize=8)
    ax.margins(y=0.15)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--populations", default="1000,100000,1000000", help="registered clients, comma-separated")
    ap.add_argument("--per-round", type=int, default=1000, help="clients sampled per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=usable_cores(), help="cohort workers (default: usable cores)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per population; the median peak RSS is kept")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--logs", default=None, help="folder for each run's output (default: a temp folder)")
    args = ap.parse_args()
    populations = sorted(int(p) for p in args.populations.split(",") if p)
    if populations and populations[0] < args.per_round:
        raise SystemExit(f"--per-round {args.per_round} is more than the smallest population {populations[0]}")
    if args.rounds < 2:
        raise SystemExit("--rounds must be at least 2 (steady state = rounds after the first)")
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="fedsim-memory-")
    args.logs = args.logs or tmp
    os.makedirs(args.logs, exist_ok=True)
    load_start = os.getloadavg()
    print(f"memory: {usable_cores()} cores, {args.workers} cohort workers, load average {load_start}, "
          f"logs in {args.logs}")
    started = time.time()
    results = [median_row([run_population(p, args, tmp, a) for a in range(args.repeat)]) for p in populations]

    head = (f"{'registered':>10s} {'per round':>9s} {'tree RSS MB':>11s} {'tree PSS MB':>11s} "
            f"{'driver RSS MB':>13s} {'procs':>5s} {'upd/s':>7s} {'wall s':>7s}")
    print("\n" + head + "\n" + "-" * len(head))
    for r in results:
        if "error" in r:
            print(f"{r['population']:10d} {r['clients_per_round']:9d}  FAILED: {r['error']}")
            continue
        print(f"{r['population']:10d} {r['clients_per_round']:9d} {r['peak_rss_mb']:11.0f} "
              f"{r['peak_pss_mb'] or 0:11.0f} {r['peak_root_rss_mb']:13.0f} {r['peak_processes']:5d} "
              f"{r['steady_updates_per_s'] or 0:7.0f} {r['wall_s']:7.1f}")
    growths = {key: growth(results, key) for key in ("peak_rss_mb", "peak_pss_mb", "peak_root_rss_mb")}
    g = growths["peak_rss_mb"]
    ok = [r for r in results if "error" not in r]
    if g is not None:
        verdict = "met" if g <= GROWTH_TARGET else "MISSED"
        print(f"peak RSS growth {ok[0]['population']:,} -> {ok[-1]['population']:,} registered clients: "
              f"{g:+.1%} (target ≤ +{GROWTH_TARGET:.0%}: {verdict}); PSS {growths['peak_pss_mb'] or 0:+.1%}, "
              f"driver RSS {growths['peak_root_rss_mb'] or 0:+.1%}")
    report = {"machine": {"cores": usable_cores(), "load_average_start": load_start, "load_average_end": os.getloadavg()},
              "settings": {k: v for k, v in vars(args).items() if k != "logs"},
              "growth_target": GROWTH_TARGET, "growth": growths,
              "growth_target_met": None if g is None else g <= GROWTH_TARGET,
              "wall_seconds": time.time() - started, "results": results}
    path = os.path.join(args.out, "memory.json")
    with open(path, "w") as fh:
        json.dump(report, fh, indent=2)
    if ok:
        plot(results, os.path.join(args.out, "memory.png"))
    print(f"wrote {path} and memory.png")
    if any("error" in r for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
