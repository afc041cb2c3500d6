"""Throughput of fedsim's engines against vanilla Flower, pfl-research and a raw PyTorch loop.

One run measures every selected system on the same work (see ``systems.py`` for what each
system and workload is, and where it was copied from), each in its own process so the
whole process tree's peak memory is measured (``proctree.py`` says what is counted):

    python benchmarks/throughput.py                                  # everything
    python benchmarks/throughput.py --workloads mlp --cohorts 1000 --systems raw,pfl,fedsim-cohort

For every workload and number of clients per round it reports, per system:

* steady-state client-updates/s: client updates of the rounds after the first divided by
  their seconds, a round's seconds being the time from the end of the previous round to
  the end of this one (fedsim: ``round_seconds − eval_seconds`` of rounds ≥ 2 in
  ``rounds.jsonl``, i.e. training, aggregation, the round's line and checkpoint but not the
  server-side evaluation the other systems do not do; ``train_seconds`` alone is kept as
  ``steady_train_updates_per_s``);
* ratios to vanilla Flower, to pfl-research and to the machine's limit, defined as the raw
  one-thread loop × usable cores;
* peak RSS and PSS of the process tree; the latency from the command to the start of the
  first round (the server sends it) and to its end (which includes the cold start of Ray's
  worker processes, since they are started lazily on the first round's messages); and the
  end-to-end wall time of a 5-round run including start-up and shut-down (estimated as
  measured wall + (5 − R) × mean steady round when a system ran R < 5 rounds).

Writes ``benchmarks/results/throughput.json`` and ``throughput.png``. Numbers are only
comparable within one run on a quiet machine: run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proctree import failure, run_measured, usable_cores  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SYSTEMS = ["raw", "pfl", "fedsim-cohort", "fedsim-flower", "flower"]
SLOW = {"flower", "fedsim-flower"}  # one message (and Ray task) per client: ~25 s per 1000 clients
E2E_ROUNDS = 5
TARGETS = {"vs_pfl": 1.15, "vs_limit": 0.8, "vs_flower": 30.0}  # fedsim-cohort, from the issue


def child_command(system: str, workload: str, clients: int, rounds: int, args: argparse.Namespace,
                  result: str) -> list[str]:
    cmd = [os.path.join(HERE, "systems.py"), system, "--workload", workload, "--clients", str(clients),
           "--rounds", str(rounds), "--image-size", str(args.image_size),
           "--workers", str(args.cores), "--result", result]
    if system == "pfl":  # one worker process per core, as pfl-research runs on one machine
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", str(args.cores), *cmd]
    return [sys.executable, *cmd]


def run_one(system: str, workload: str, clients: int, args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    rounds = args.slow_rounds if system in SLOW and clients >= 1000 else args.rounds
    result = os.path.join(tmp, f"{workload}-{clients}-{system}.json")
    log = os.path.join(args.logs, f"{workload}-{clients}-{system}.log")
    print(f"  {system:14s} {workload} {clients:5d} clients/round, {rounds} rounds ...", end="", flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    measured = run_measured(child_command(system, workload, clients, rounds, args, result),
                            timeout=args.timeout, env=env, log_path=log)
    row: dict[str, Any] = {"system": system, "workload": workload, "clients": clients,
                           "rounds": rounds, "log": log, **measured}
    error = failure(measured, result)
    if error is not None:
        row["error"] = error
        print(f" FAILED ({row['error']}; see {log})")
        return row
    with open(result) as fh:
        child = json.load(fh)
    row.update(derive(child, measured))
    print(f" {row['steady_updates_per_s']:9.1f} updates/s, first round {row['first_round_start_s']:.1f}"
          f"–{row['first_round_end_s']:.1f} s, wall {row['e2e_wall_s']:.1f} s, peak RSS {row['peak_rss_mb']:.0f} MB")
    return row


def derive(child: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
    """Steady-state rate (rounds after the first), start latency and 5-round wall time."""
    secs, done = child["round_seconds"], child["round_clients"]
    steady_s, steady_n = sum(secs[1:]), sum(done[1:])
    out: dict[str, Any] = {
        "round_seconds": [round(s, 4) for s in secs],
        "steady_updates_per_s": steady_n / steady_s if steady_s > 0 else None,
        "first_round_updates_per_s": done[0] / secs[0] if secs and secs[0] > 0 else None,
        "first_round_start_s": child["first_round_start_at"] - measured["launched_at"],
        "first_round_end_s": child["first_round_start_at"] - measured["launched_at"] + secs[0],
        "e2e_wall_s": measured["wall_s"],
    }
    if "round_train_seconds" in child:  # fedsim: training alone, as its own summary reports it
        train_s = sum(child["round_train_seconds"][1:])
        out["steady_train_updates_per_s"] = steady_n / train_s if train_s > 0 else None
    rounds = len(secs)
    if rounds == E2E_ROUNDS:
        out["e2e_5_rounds_s"], out["e2e_5_rounds_estimated"] = measured["wall_s"], False
    elif rounds > 1:
        mean_round = steady_s / (rounds - 1)
        out["e2e_5_rounds_s"] = measured["wall_s"] + (E2E_ROUNDS - rounds) * mean_round
        out["e2e_5_rounds_estimated"] = True
    for key in ("summary_first_round_start_seconds", "summary_updates_per_s", "workers",
                "round_wall_seconds", "round_train_seconds", "round_eval_seconds"):
        if key in child:
            out[key] = child[key]
    return out


def ratios(rows: list[dict[str, Any]], cores: int) -> dict[str, dict[str, float | None]]:
    """Each system's steady rate over vanilla Flower's, pfl's, raw's and the limit (raw × cores)."""
    rate = {r["system"]: r.get("steady_updates_per_s") for r in rows}
    refs = {"vs_flower": rate.get("flower"), "vs_pfl": rate.get("pfl"), "vs_raw": rate.get("raw"),
            "vs_limit": rate["raw"] * cores if rate.get("raw") else None}  # type: ignore[operator]
    return {s: {k: (v / ref if v and ref else None) for k, ref in refs.items()} for s, v in rate.items()}


def machine_info(cores: int) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"cores": cores, "python": platform.python_version(), "torch": torch.__version__,
                            "platform": platform.platform(), "load_average": os.getloadavg()}
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), None)
    except OSError:
        pass
    for mod in ("flwr", "ray", "pfl"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - optional
            info[mod] = None
    return info


def print_table(groups: list[dict[str, Any]]) -> None:
    head = (f"{'workload':8s} {'clients':>7s} {'system':14s} {'upd/s':>9s} {'×flower':>8s} {'×pfl':>6s} "
            f"{'×raw':>6s} {'÷limit':>7s} {'RSS MB':>7s} {'PSS MB':>7s} {'1st start':>9s} {'1st end':>8s} "
            f"{'5-rnd s':>8s}")
    print("\n" + head + "\n" + "-" * len(head))

    def f(v: Any, fmt: str) -> str:
        return format(v, fmt) if isinstance(v, (int, float)) else format("-", ">" + fmt.split(".")[0])

    for g in groups:
        for r in g["runs"]:
            q = g["ratios"].get(r["system"], {})
            est = "*" if r.get("e2e_5_rounds_estimated") else " "
            print(f"{r['workload']:8s} {r['clients']:7d} {r['system']:14s} {f(r.get('steady_updates_per_s'), '9.1f')} "
                  f"{f(q.get('vs_flower'), '8.1f')} {f(q.get('vs_pfl'), '6.2f')} {f(q.get('vs_raw'), '6.2f')} "
                  f"{f(q.get('vs_limit'), '7.2f')} {f(r.get('peak_rss_mb'), '7.0f')} {f(r.get('peak_pss_mb'), '7.0f')} "
                  f"{f(r.get('first_round_start_s'), '9.1f')} {f(r.get('first_round_end_s'), '8.1f')} "
                  f"{f(r.get('e2e_5_rounds_s'), '7.1f')}{est}")
    print("(upd/s: steady state, rounds after the first; ÷limit: over raw × cores; 1st start/end: seconds from\n"
          " the command to the first round's start and end; * = 5-round wall time estimated from fewer rounds)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="mlp,image")
    ap.add_argument("--cohorts", default="100,1000", help="clients per round (all registered clients train)")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--rounds", type=int, default=E2E_ROUNDS)
    ap.add_argument("--slow-rounds", type=int, default=3, help="rounds of flower/fedsim-flower at ≥1000 clients")
    ap.add_argument("--image-size", type=int, default=16)
    ap.add_argument("--cores", type=int, default=usable_cores())
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per system run")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--logs", default=None, help="folder for each run's output (default: a temp folder)")
    args = ap.parse_args()
    systems = [s for s in args.systems.split(",") if s]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise SystemExit(f"unknown system(s) {sorted(unknown)}; choose from {SYSTEMS}")
    if "pfl" in systems and importlib.util.find_spec("pfl") is None:
        print("pfl-research is not installed (pip install -c constraints.txt -e '.[bench]'): skipping it")
        systems.remove("pfl")
    if args.rounds < 2 or args.slow_rounds < 2:
        raise SystemExit("--rounds and --slow-rounds must be at least 2 (steady state = rounds after the first)")
    os.makedirs(args.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="fedsim-throughput-")
    args.logs = args.logs or tmp
    os.makedirs(args.logs, exist_ok=True)
    info = machine_info(args.cores)
    print(f"throughput: {args.cores} cores, load average {info['load_average']}, logs in {args.logs}")
    groups = []
    started = time.time()
    for workload in args.workloads.split(","):
        for clients in (int(c) for c in args.cohorts.split(",")):
            runs = [run_one(s, workload, clients, args, tmp) for s in systems]
            ok = [r for r in runs if "error" not in r]
            groups.append({"workload": workload, "clients": clients, "runs": runs,
                           "ratios": ratios(ok, args.cores)})
    info["load_average_end"] = os.getloadavg()
    report = {"machine": info, "settings": {k: v for k, v in vars(args).items() if k != "logs"},
              "targets_fedsim_cohort": TARGETS, "wall_seconds": time.time() - started, "groups": groups}
    print_table(groups)
    check_targets(groups)
    path = os.path.join(args.out, "throughput.json")
    with open(path, "w") as fh:
        json.dump(report, fh, indent=2)
    plot(groups, os.path.join(args.out, "throughput.png"), args.cores)
    print(f"wrote {path} and throughput.png")


def check_targets(groups: list[dict[str, Any]]) -> None:
    for g in groups:
        q = g["ratios"].get("fedsim-cohort")
        if not q:
            continue
        parts = [f"{k} {q[k]:.2f} (target ≥ {t})" + ("" if q[k] >= t else " MISSED")
                 for k, t in TARGETS.items() if q.get(k) is not None]
        print(f"fedsim-cohort {g['workload']} {g['clients']}: " + "; ".join(parts))


def plot(groups: list[dict[str, Any]], path: str, cores: int) -> None:
    """One panel per workload × clients: steady updates/s per system (log scale), with ratios."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(groups), figsize=(4.6 * len(groups), 4.6), squeeze=False)
    for ax, g in zip(axes[0], groups):
        runs = [r for r in g["runs"] if r.get("steady_updates_per_s")]
        names = [r["system"] for r in runs]
        values = [r["steady_updates_per_s"] for r in runs]
        colors = ["#d62728" if n.startswith("fedsim") else "#7f7f7f" for n in names]
        ax.bar(range(len(runs)), values, color=colors)
        ax.set_yscale("log")
        ax.set_xticks(range(len(runs)), names, rotation=30, ha="right")
        raw = next((r["steady_updates_per_s"] for r in runs if r["system"] == "raw"), None)
        if raw:
            ax.axhline(raw * cores, ls="--", color="k", lw=1)
            ax.text(len(runs) - 0.5, raw * cores, f"limit = raw × {cores}", ha="right", va="bottom", fontsize=8)
        for i, (name, v) in enumerate(zip(names, values)):
            q = g["ratios"].get(name, {})
            label = f"{v:.0f}/s"
            if q.get("vs_flower") and name != "flower":
                label += f"\n×{q['vs_flower']:.0f} flower"
            if q.get("vs_pfl") and name != "pfl":
                label += f"\n×{q['vs_pfl']:.2f} pfl"
            if q.get("vs_limit"):
                label += f"\n{q['vs_limit']:.0%} limit"
            ax.text(i, v, label, ha="center", va="bottom", fontsize=7)
        ax.set_title(f"{g['workload']}, {g['clients']} clients/round")
        ax.set_ylabel("client updates / s (steady state)")
        ax.margins(y=0.35)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
