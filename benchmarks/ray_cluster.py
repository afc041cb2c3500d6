"""Client-updates/s of the cohort engine attached to a Ray cluster of 1, then 2 nodes on this
host (the throughput benchmark's ``mlp`` workload, every client sampled each round).

    python benchmarks/ray_cluster.py --clients 1000 --rounds 3 --cpus-per-node 1

Starts a head node, runs ``fedsim run --ray-address`` with the driver pinned to one core
(``taskset -c 0``, when present), adds a worker node, runs again. Steady client-updates/s
are the client updates of rounds ≥ 2 over their seconds (round time less the server's
evaluation), as in ``throughput.py``. Writes ``benchmarks/results/ray_cluster.json``.
Nodes on one host share its cores: compare the two runs of one invocation on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from fedsim.config import load_config
from fedsim.engines.ray_nodes import RayNodes

HERE = Path(__file__).resolve().parent
MLP = {"task.name": "synthetic", "model.name": "mlp", "seed": 0, "engine.name": "cohort",
       "federation.local_epochs": 1, "federation.batch_size": 32, "federation.lr": 0.05,
       "evaluation.linear_probe": False}


def attached_run(address: str, clients: int, rounds: int, tmp: Path, tag: str) -> dict:
    exp = load_config(None, {**MLP, "federation.clients": clients, "federation.clients_per_round": clients,
                             "federation.rounds": rounds, "evaluation.every": rounds})
    config = tmp / f"{tag}.yaml"
    config.write_text(exp.to_yaml())
    cmd = [sys.executable, "-m", "fedsim", "run", "--config", str(config), "--out", str(tmp / tag),
           "--ray-address", address]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"{tag}: fedsim run failed:\n{out.stderr[-2000:]}")
    rows = [json.loads(line) for line in (tmp / tag / "rounds.jsonl").read_text().splitlines()][1:]
    steady = rows[1:] or rows
    seconds = sum(r["round_seconds"] - r.get("eval_seconds", 0.0) for r in steady)
    summary = json.loads((tmp / tag / "summary.json").read_text())
    return {"workers": summary["workers"], "attached": next(ln for ln in out.stderr.splitlines() if "attached" in ln),
            "steady_updates_per_s": sum(r["clients_ok"] for r in steady) / seconds,
            "round_seconds": [round(r["round_seconds"] - r.get("eval_seconds", 0.0), 3) for r in rows]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cpus-per-node", type=int, default=1)
    ap.add_argument("--result", default=str(HERE / "results" / "ray_cluster.json"))
    args = ap.parse_args()
    results = {"clients_per_round": args.clients, "rounds": args.rounds, "cpus_per_node": args.cpus_per_node,
               "host_cores": os.cpu_count(), "load_average": os.getloadavg()}
    with RayNodes() as nodes, tempfile.TemporaryDirectory(prefix="fedsim-cluster-") as tmp:
        address = nodes.start_head(num_cpus=args.cpus_per_node)
        if not nodes.wait_for(1):
            raise SystemExit("the Ray head did not start")
        results["1 node"] = attached_run(address, args.clients, args.rounds, Path(tmp), "one")
        print("1 node:", results["1 node"], flush=True)
        nodes.add_worker(num_cpus=args.cpus_per_node)
        if not nodes.wait_for(2):
            raise SystemExit("the second Ray node did not start")
        results["2 nodes"] = attached_run(address, args.clients, args.rounds, Path(tmp), "two")
        print("2 nodes:", results["2 nodes"], flush=True)
    results["load_average_after"] = os.getloadavg()
    Path(args.result).parent.mkdir(parents=True, exist_ok=True)
    Path(args.result).write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
