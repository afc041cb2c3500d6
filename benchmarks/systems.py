"""The systems compared by ``throughput.py``, each run as its own process (the child side).

``python benchmarks/systems.py SYSTEM --workload mlp|image --clients N --rounds R --result F``
runs one system on one workload with every one of N clients trained each round, and
writes a JSON result: the seconds and client updates of every round and the wall-clock time
its first round started. Systems:

* ``raw``           a plain sequential PyTorch loop on one thread (the machine's limit is this × cores);
* ``flower``        vanilla Flower simulation: a plain FedAvg ``ClientApp`` on ``run_simulation``,
                    one SuperNode per client, ``num_cpus=1`` per client;
* ``pfl``           pfl-research (``pfl[pytorch]==0.6.0``) — run under ``torchrun``, one worker per core;
* ``fedsim-flower`` and ``fedsim-cohort``: fedsim's two engines (``fedsim.launcher.simulate``).

The MLP workload, and the raw, vanilla-Flower and pfl code, are the project's performance
anchors, kept here so that every clone has them: MLP 784-100-10, each client one SGD step
(lr 0.05) on 32 random samples from its own seeded generator, FedAvg over every client of
the round. The image workload is fedsim's image
task (SimCLR on the bundled digits, ``resnet_small``, 32 samples per client so one step):
every system calls the same ``ImageTask`` for the model, a client's data and the loss.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types
from typing import Any

import torch
import torch.nn as nn
from fedsim.factory import task_for

IN, HID, OUT, BATCH, LR = 784, 100, 10, 32, 0.05
IMAGE_DEFAULT_SIZE = 16


# --------------------------------------------------------------------------- workloads
class MLPWorkload:
    """The anchors' workload: the MLP and one client's local step (``make_model``, ``local_step``)."""

    name = "mlp"

    def make_model(self) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(IN, HID), nn.ReLU(), nn.Linear(HID, OUT))

    def local_step(self, model: nn.Module, cid: int, rnd: int) -> int:
        g = torch.Generator().manual_seed(cid * 1000 + rnd)
        x = torch.randn(BATCH, IN, generator=g)
        y = torch.randint(0, OUT, (BATCH,), generator=g)
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        return BATCH

    def user_data(self, uid: int) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(uid)
        return torch.randn(BATCH, IN, generator=g), torch.randint(0, OUT, (BATCH,), generator=g)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(model(x), y)

    def fedsim_overrides(self) -> dict[str, Any]:
        return {"task.name": "synthetic", "model.name": "mlp"}


class ImageWorkload:
    """fedsim's image task (SimCLR, resnet_small, one step of 32 samples per client)."""

    name = "image"

    def __init__(self, image_size: int = IMAGE_DEFAULT_SIZE, clients: int = 1000) -> None:
        self.image_size = image_size
        self.clients = clients  # a client's data depends on the population size (its shard)
        self._task: Any = None

    def task_params(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "min_samples": BATCH, "max_samples": BATCH}

    def fedsim_overrides(self) -> dict[str, Any]:
        return {"task.name": "image", "model.name": "resnet_small", "task.params": self.task_params()}

    @property
    def task(self) -> Any:
        if self._task is None:  # built once per process, as any real ClientApp would cache its data
            from fedsim.config import load_config

            self._task = task_for(load_config(None, {**self.fedsim_overrides(), "federation.clients": self.clients,
                                            "federation.clients_per_round": self.clients}))
        return self._task

    def make_model(self) -> nn.Module:
        return self.task.build_model()

    def local_step(self, model: nn.Module, cid: int, rnd: int) -> int:
        data = self.task.client_dataset(cid)
        g = torch.Generator().manual_seed(cid * 1000 + rnd)
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        opt.zero_grad()
        self.task.loss(model, data.tensors, g).backward()
        opt.step()
        return len(data)

    def user_data(self, uid: int) -> tuple[torch.Tensor, ...]:
        x = self.task.client_dataset(uid)["image"]
        return x, torch.full((len(x),), uid, dtype=torch.int64)  # the uid seeds the augmentations

    def loss(self, model: nn.Module, x: torch.Tensor, uid: torch.Tensor) -> torch.Tensor:
        return self.task.loss(model, {"image": x}, torch.Generator().manual_seed(int(uid[0])))


def make_workload(name: str, image_size: int = IMAGE_DEFAULT_SIZE, clients: int = 1000) -> MLPWorkload | ImageWorkload:
    """The workload ``name``; ``clients`` is the registered population (the image data depend on it)."""
    if name == "mlp":
        return MLPWorkload()
    if name == "image":
        return ImageWorkload(image_size, clients)
    raise SystemExit(f"unknown workload {name!r}; choose mlp or image")


# --------------------------------------------------------------------------- raw loop
def run_raw(w: Any, clients: int, rounds: int) -> dict[str, Any]:
    """The anchor's raw loop: one thread, load global, one step, add n·w to the sums."""
    torch.set_num_threads(1)
    glob, work = w.make_model(), w.make_model()
    started_at, times = time.time(), []
    for rnd in range(rounds):
        t0 = time.perf_counter()
        gsd = glob.state_dict()
        acc = [torch.zeros_like(p, dtype=torch.float32) for p in gsd.values()]
        total = 0
        for cid in range(clients):
            work.load_state_dict(gsd)
            n = w.local_step(work, cid, rnd)
            for a, p in zip(acc, work.state_dict().values()):
                a.add_(p, alpha=n)
            total += n
        glob.load_state_dict({k: a / total for k, a in zip(gsd.keys(), acc)})
        times.append(time.perf_counter() - t0)
    return {"first_round_start_at": started_at, "round_seconds": times, "round_clients": [clients] * rounds}


# --------------------------------------------------------------------------- vanilla Flower
_WORKLOADS: dict[tuple[str, int, int], Any] = {}  # per Ray worker process, like any ClientApp's data cache


def flower_train(msg: Any, context: Any) -> Any:
    """The anchor's vanilla ClientApp: build the model, load the global, one step, reply weights.

    Module-level (and this file imported as ``systems``) so Ray workers import it by name
    and keep ``_WORKLOADS`` between messages instead of unpickling a fresh copy each time.
    """
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

    torch.set_num_threads(1)
    cfg = msg.content["config"]
    key = (str(cfg["workload"]), int(cfg["image-size"]), int(cfg["clients"]))
    wl = _WORKLOADS.get(key) or _WORKLOADS.setdefault(key, make_workload(*key))
    model = wl.make_model()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    n = wl.local_step(model, int(context.node_config["partition-id"]), int(cfg["server-round"]))
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()),
                          "metrics": MetricRecord({"num-examples": n})})
    return Message(content=content, reply_to=msg)


def run_flower(w: Any, clients: int, rounds: int, image_size: int) -> dict[str, Any]:
    """The anchor's vanilla Flower run, with a timestamp after every round's aggregation."""
    from flwr.app import ArrayRecord, ConfigRecord, Context
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    client_app = ClientApp()
    client_app.train()(flower_train)

    stamps: list[float] = []

    class StampedFedAvg(FedAvg):
        def aggregate_train(self, server_round, replies):  # type: ignore[no-untyped-def]
            out = super().aggregate_train(server_round, replies)
            stamps.append(time.perf_counter())
            return out

    server_app = ServerApp()
    marks: dict[str, float] = {}

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = StampedFedAvg(fraction_train=1.0, fraction_evaluate=0.0,
                                 min_train_nodes=clients, min_available_nodes=clients)
        marks["start"] = time.time()
        stamps.append(time.perf_counter())
        strategy.start(grid=grid, initial_arrays=ArrayRecord(w.make_model().state_dict()),
                       num_rounds=rounds,
                       train_config=ConfigRecord({"workload": w.name, "image-size": image_size,
                                                  "clients": clients}))

    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=clients,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})
    times = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"first_round_start_at": marks["start"], "round_seconds": times,
            "round_clients": [clients] * len(times)}


# --------------------------------------------------------------------------- pfl-research
def run_pfl(w: Any, clients: int, rounds: int) -> dict[str, Any] | None:
    """The pfl anchor (one worker process per core under torchrun); rank 0 returns the result."""
    torch.set_num_threads(1)
    from pfl.aggregate.simulate import SimulatedBackend
    from pfl.aggregate.weighting import WeightByDatapoints
    from pfl.algorithm import FederatedAveraging, NNAlgorithmParams
    from pfl.callback.base import TrainingProcessCallback
    from pfl.data.dataset import Dataset
    from pfl.data.federated_dataset import FederatedDataset
    from pfl.data.sampling import get_user_sampler
    from pfl.hyperparam import NNEvalHyperParams, NNTrainHyperParams
    from pfl.internal.ops.selector import get_framework_module
    from pfl.metrics import Metrics, Weighted
    from pfl.model.pytorch import PyTorchModel

    net = w.make_model()

    def loss(self, *batch, eval=False):  # noqa: A002 - pfl's signature
        return w.loss(self, *batch)

    def metrics(self, *batch, eval=False):  # noqa: A002
        return {"loss": Weighted(float(loss(self, *batch)) * len(batch[0]), len(batch[0]))}

    net.loss = types.MethodType(loss, net)
    net.metrics = types.MethodType(metrics, net)
    fed = FederatedDataset(lambda uid: Dataset(w.user_data(uid), user_id=uid),
                           get_user_sampler("minimize_reuse", list(range(clients))))
    model = PyTorchModel(model=net, local_optimizer_create=torch.optim.SGD,
                         central_optimizer=torch.optim.SGD(net.parameters(), 1.0))
    backend = SimulatedBackend(training_data=fed, val_data=None, postprocessors=[WeightByDatapoints()])
    stamps: list[float] = []

    class Stamp(TrainingProcessCallback):
        def after_central_iteration(self, aggregate_metrics, model, *, central_iteration):  # type: ignore[no-untyped-def]
            stamps.append(time.perf_counter())
            return False, Metrics()

    started_at = time.time()
    stamps.append(time.perf_counter())
    FederatedAveraging().run(
        algorithm_params=NNAlgorithmParams(central_num_iterations=rounds, evaluation_frequency=10**9,
                                           train_cohort_size=clients, val_cohort_size=0),
        backend=backend, model=model,
        model_train_params=NNTrainHyperParams(local_learning_rate=LR, local_num_epochs=1,
                                              local_batch_size=BATCH),
        model_eval_params=NNEvalHyperParams(local_batch_size=BATCH), callbacks=[Stamp()])
    dist = get_framework_module().distributed
    rank, world = dist.global_rank, dist.world_size
    if torch.distributed.is_initialized():  # a clean teardown: without it a rank sometimes
        torch.distributed.barrier()         # aborts at exit ("terminate called without an
        torch.distributed.destroy_process_group()  # active exception") and torchrun fails the run
    if rank != 0:
        return None
    times = [b - a for a, b in zip(stamps, stamps[1:])]
    return {"first_round_start_at": started_at, "round_seconds": times,
            "round_clients": [clients] * len(times), "workers": world}


# --------------------------------------------------------------------------- fedsim
def run_fedsim(w: Any, engine: str, clients: int, rounds: int, workers: int) -> dict[str, Any]:
    """fedsim's ``simulate`` with every client sampled each round; times from ``rounds.jsonl``."""
    import tempfile

    from fedsim.config import load_config
    from fedsim.launcher import simulate
    from fedsim.server import loop

    overrides = {**w.fedsim_overrides(), "seed": 0, "engine.name": engine,
                 "federation.clients": clients, "federation.clients_per_round": clients,
                 "federation.rounds": rounds, "federation.local_epochs": 1,
                 "federation.batch_size": BATCH, "federation.lr": LR,
                 "evaluation.every": rounds, "evaluation.linear_probe": False}
    if engine == "cohort":
        overrides["engine.workers"] = workers
    exp = load_config(None, overrides)
    marks: dict[str, float] = {}
    original_run = loop.RoundLoop.run

    def timed_run(self):  # type: ignore[no-untyped-def]
        marks["run_start"] = time.time()  # summary times are measured from here
        return original_run(self)

    loop.RoundLoop.run = timed_run  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory(prefix="fedsim-bench-") as tmp:
        summary = simulate(exp, os.path.join(tmp, "run"), quiet=True)
        with open(os.path.join(tmp, "run", "rounds.jsonl")) as fh:
            rows = [json.loads(line) for line in fh if line.strip()][1:]  # line 0 is the initial eval
    # A round's seconds run from its start to its end (sampling, training, aggregation, the
    # round's line and checkpoint) less the server-side evaluation, which the other systems
    # do not do: the same span as their time between consecutive round ends.
    return {"first_round_start_at": marks["run_start"] + summary["first_round_start_seconds"],
            "round_seconds": [r["round_seconds"] - r.get("eval_seconds", 0.0) for r in rows],
            "round_clients": [r["clients_ok"] for r in rows],
            "round_train_seconds": [r["train_seconds"] for r in rows],
            "round_eval_seconds": [r.get("eval_seconds", 0.0) for r in rows],
            "round_wall_seconds": [r["round_seconds"] for r in rows],
            "summary_first_round_start_seconds": summary["first_round_start_seconds"],
            "summary_updates_per_s": summary["updates_per_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("system", choices=["raw", "flower", "pfl", "fedsim-flower", "fedsim-cohort"])
    ap.add_argument("--workload", default="mlp")
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--image-size", type=int, default=IMAGE_DEFAULT_SIZE)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--result", required=True)
    a = ap.parse_args()
    w = make_workload(a.workload, a.image_size, a.clients)
    if a.system == "raw":
        out = run_raw(w, a.clients, a.rounds)
    elif a.system == "flower":
        out = run_flower(w, a.clients, a.rounds, a.image_size)
    elif a.system == "pfl":
        out = run_pfl(w, a.clients, a.rounds)
        if out is None:  # not rank 0
            return
    else:
        out = run_fedsim(w, a.system.removeprefix("fedsim-"), a.clients, a.rounds, a.workers)
    out.update({"system": a.system, "workload": a.workload, "clients": a.clients, "rounds": a.rounds,
                "finished_at": time.time()})
    with open(a.result, "w") as fh:
        json.dump(out, fh)


if __name__ == "__main__":
    # Re-import this file as the module ``systems`` so that the vanilla ClientApp's function
    # is pickled by name (Flower hands ``sys.path`` to its Ray workers, so they import it).
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import systems

    sys.exit(systems.main())
