"""Where a deployed round's time goes, on 127.0.0.1: fedsim's MLP run with the warm ClientApp,
the same with ``--cold-clientapp`` (Flower's fresh process per message running fedsim's
ClientApp), and a vanilla Flower app (PyTorch MLP, Flower's quickstart shape) on the same
SuperLink and two stock ``flower-supernode`` processes.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/deploy_round.py --rounds 6 [--out benchmarks/results/deploy_round.json]

    PYTHONPATH=$PWD .venv/bin/python benchmarks/deploy_round.py --straggler 30 --round-timeout 15 --rounds 2

adds a third box that waits ``--straggler`` seconds before training each round (node config
``delay-seconds``) and runs only fedsim with three boxes and
``federation.round_timeout``: the slow box counts as ``timeout`` every round, the others are
aggregated, as in a simulation with the same deadline.

Per run: the median of each round's push-to-last-reply seconds (``train_seconds`` for fedsim,
the same span for the vanilla app) and, for the warm run, each box's median step times from
``boxes.json``. Everything it starts is stopped by pid; FLWR_HOME is a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fedsim.deploy.processes import flower_env, flower_exe, free_port, superlink_plan, wait_for_port

POLL = {"FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.1"}
CONFIG = ("seed: 0\ntask: {name: synthetic}\nmodel: {name: mlp}\nstrategy: {name: fedavg}\n"
          "federation: {clients: 2, clients_per_round: 2, local_epochs: 1, lr: 0.1}\n"
          "evaluation: {every: 1000, linear_probe: false}\n")
VANILLA = '''
import json, time
import numpy as np
from flwr.app import ArrayRecord, Context, Message, MessageType, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

server = ServerApp()
client = ClientApp()


def net():
    import torch
    return torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))


@client.train()
def train(msg: Message, context: Context) -> Message:
    import torch
    model = net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 32), torch.randint(0, 10, (64,))
    for i in range(0, 64, 16):
        opt.zero_grad(); torch.nn.functional.cross_entropy(model(x[i:i + 16]), y[i:i + 16]).backward(); opt.step()
    return Message(RecordDict({"arrays": ArrayRecord(model.state_dict())}), reply_to=msg)


@server.main()
def main(grid: Grid, context: Context) -> None:
    rounds, out = int(context.run_config["rounds"]), str(context.run_config["out"])
    while len(nodes := sorted(grid.get_node_ids())) < 2:
        time.sleep(0.1)
    arrays = ArrayRecord(net().state_dict())
    seconds = []
    for rnd in range(1, rounds + 1):
        t0 = time.perf_counter()
        ids = set(grid.push_messages([Message(RecordDict({"arrays": arrays}), n, MessageType.TRAIN, group_id=str(rnd))
                                      for n in nodes]))
        while ids:
            for reply in grid.pull_messages(list(ids)):
                ids.discard(reply.metadata.reply_to_message_id)
            time.sleep(0.01)
        seconds.append(time.perf_counter() - t0)
    open(out, "w").write(json.dumps(seconds))
'''


def start(argv: list[str], home: Path, log: Path, **extra: str) -> subprocess.Popen:
    env = flower_env(FLWR_HOME=str(home), **POLL, **extra)
    return subprocess.Popen(argv, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def vanilla(tmp: Path, link: str, rounds: int) -> list[float]:
    app = tmp / "vanilla"
    app.mkdir()
    (app / "vanilla_app.py").write_text(VANILLA)
    out = tmp / "vanilla.json"
    (app / "pyproject.toml").write_text(f'''[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"
[project]
name = "vanilla"
version = "1.0.0"
dependencies = []
[tool.hatch.build.targets.wheel]
packages = ["."]
[tool.flwr.app]
publisher = "bench"
[tool.flwr.app.components]
serverapp = "vanilla_app:server"
clientapp = "vanilla_app:client"
[tool.flwr.app.config]
rounds = {rounds}
out = "{out}"
''')
    home = tmp / "flwr-cli"
    home.mkdir()
    (home / "config.toml").write_text(f'[superlink]\ndefault = "b"\n[superlink.b]\naddress = "{link}"\ninsecure = true\n')
    subprocess.run([flower_exe("flwr"), "run", str(app), "b"], env=flower_env(FLWR_HOME=str(home)), check=True,
                   capture_output=True)
    deadline = time.monotonic() + 900
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    return json.loads(out.read_text())


def fedsim_run(tmp: Path, link: str, rounds: int, name: str, *extra: str, check: bool = True) -> dict:
    config = tmp / "mlp.yaml"
    config.write_text(CONFIG)
    out = tmp / name
    done = subprocess.run([sys.executable, "-m", "fedsim", "deploy", "run", "--superlink", link, "--insecure",
                           "--config", str(config), "--out", str(out), "--set", f"federation.rounds={rounds}", *extra],
                          check=check)
    rows = [json.loads(ln) for ln in (out / "rounds.jsonl").read_text().splitlines()][1:]
    boxes = json.loads((out / "boxes.json").read_text())["boxes"]
    return {"round_seconds": [r["train_seconds"] for r in rows], "exit_code": done.returncode,
            "rounds": [{k: r.get(k) for k in ("clients_ok", "failed", "train_loss", "train_seconds")} for r in rows],
            "boxes": [{k: b.get(k) for k in ("node_id", "sampled", "ok", "failed", "errors")} for b in boxes],
            "steps_median": {b["node_id"]: b.get("step_seconds_median") for b in boxes}}


def slow_box(tmp: Path, link: str, delay: float) -> subprocess.Popen:
    """A third box that waits ``delay`` seconds before training each round (node config
    ``delay-seconds``; a late ClientApp process start would not do: Flower revokes its token)."""
    return start([flower_exe("flower-supernode"), "--insecure", "--superlink", link, "--port", str(free_port()),
                  "--node-config", f"partition-id=2 num-partitions=3 delay-seconds={delay}"], tmp / "box2",
                 tmp / "box2.log")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--straggler", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--round-timeout", type=float, default=15.0, metavar="SECONDS")
    args = parser.parse_args()
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="fedsim-deploy-bench-") as name:
        tmp = Path(name)
        port = free_port()
        link = f"127.0.0.1:{port}"
        try:
            procs.append(start(superlink_plan(certs=None, keys=[], port=port, insecure=True).argv, tmp / "link",
                               tmp / "link.log"))
            wait_for_port("127.0.0.1", port, timeout=120, process=procs[0])
            for k in (0, 1):
                share = f"partition-id={k} num-partitions={2 if args.straggler is None else 3}"
                procs.append(start([flower_exe("flower-supernode"), "--insecure", "--superlink", link, "--port",
                                    str(free_port()), "--node-config", share],
                                   tmp / f"box{k}", tmp / f"box{k}.log"))
            if args.straggler is not None:
                procs.append(slow_box(tmp, link, args.straggler))
            time.sleep(5)
            if args.straggler is not None:
                results = {"straggler": fedsim_run(
                    tmp, link, args.rounds, "straggler", "--set", "federation.clients=3", "--set",
                    "federation.clients_per_round=3", "--set", f"federation.round_timeout={args.round_timeout}",
                    "--set", "partitioning.kind=iid", check=False)}
            else:
                results = {"warm": fedsim_run(tmp, link, args.rounds, "warm"),
                           "cold": fedsim_run(tmp, link, args.rounds, "cold", "--cold-clientapp"),
                           "vanilla": {"round_seconds": vanilla(tmp, link, args.rounds)}}
        finally:
            for proc in reversed(procs):
                os.killpg(proc.pid, signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
    for name, res in results.items():
        res["median_round_seconds"] = statistics.median(res["round_seconds"]) if res["round_seconds"] else None
        print(f"{name:8s} median round {res['median_round_seconds']} s  rounds {[round(s, 2) for s in res['round_seconds']]}")
    for node, steps in results.get("warm", {}).get("steps_median", {}).items():
        print(f"warm box {node}: " + ", ".join(f"{k} {v:.2f}" for k, v in (steps or {}).items()))
    if "straggler" in results:
        print(json.dumps(results["straggler"], indent=1))
    results["load_average"] = os.getloadavg()
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
