"""The round loop, written once for every strategy, task and engine.

Per round: sample clients with a generator seeded by (seed, round), send each SuperNode its
clients with the global weights, fold every reply into the strategy's accumulator as it
arrives (validated first, nothing kept per client), finalize, evaluate every
``evaluation.every`` rounds, and write the round's line and checkpoint.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid
from torch import nn

from fedsim import records as R
from fedsim.client.app import REPLY, STATE_DIR
from fedsim.config import ExperimentConfig
from fedsim.engines import Engine, make_engine
from fedsim.seeding import derive_seed, sample_clients
from fedsim.server.evaluation import evaluate_encoder, raw_input_knn
from fedsim.server.outputs import RunWriter
from fedsim.server.progress import RoundProgress
from fedsim.server.replies import RoundTally, fold_reply
from fedsim.strategies.base import Arrays, Strategy
from fedsim.tasks.base import Task

NODE_WAIT_SECONDS = 120.0
PULL_INTERVAL = 0.01


def initial_model(task: Task, seed: int) -> nn.Module:
    """The task's model initialised from ``seed`` without touching global RNG state."""
    with torch.random.fork_rng():
        torch.manual_seed(derive_seed(seed, 0x1417))
        return task.build_model()


def copy_arrays(model: nn.Module) -> Arrays:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def wait_for_nodes(grid: Grid, count: int, timeout: float = NODE_WAIT_SECONDS) -> list[int]:
    """The sorted ids of ``count`` SuperNodes, waiting for them to connect."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= count:
            return nodes
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(nodes)} of {count} SuperNodes connected after {timeout:.0f}s")
        time.sleep(0.1)


class RoundLoop:
    """Runs an experiment's rounds on a Flower ``Grid`` and writes its outputs."""

    def __init__(self, grid: Grid, exp: ExperimentConfig, run_dir: str, *, quiet: bool = False) -> None:
        self.grid = grid
        self.exp = exp
        self.task: Task = exp.build_task()
        self.strategy: Strategy = exp.build_strategy()
        self.engine: Engine = make_engine(exp)
        self.model = initial_model(self.task, exp.seed)
        self.global_arrays = copy_arrays(self.model)
        self.writer = RunWriter(run_dir, exp.to_yaml())
        self.exp_json = exp.model_dump_json()
        self.state_dir = str((self.writer.dir / "client_state").resolve())
        self.quiet = quiet

    def evaluate(self) -> dict[str, float]:
        ev = self.exp.evaluation
        self.model.load_state_dict(self.global_arrays)
        return evaluate_encoder(self.task, self.model, k=ev.knn_k, linear_probe=ev.linear_probe,
                                seed=self.exp.seed)

    def run(self) -> dict[str, Any]:
        """Run every round; returns the summary also written to ``summary.json``."""
        started = time.perf_counter()
        fed = self.exp.federation
        init = self.evaluate()
        raw = raw_input_knn(self.task, k=self.exp.evaluation.knn_k)
        self.writer.round({"round": 0, **init, "knn_top1_raw_input": raw})
        node_ids = wait_for_nodes(self.grid, self.engine.num_nodes)
        first_round_at = time.perf_counter() - started
        rows = []
        with RoundProgress(fed.rounds, fed.cohort_size(), quiet=self.quiet) as bar:
            for rnd in range(1, fed.rounds + 1):
                row = self.run_round(rnd, node_ids, bar)
                rows.append(row)
                bar.round_end(row)
        evaluated = [r for r in rows if "knn_top1" in r]
        steady = rows[1:] or rows
        summary = {
            "strategy": self.exp.strategy.name, "task": self.exp.task.name,
            "engine": self.engine.name, "rounds": fed.rounds, "clients": fed.clients,
            "clients_per_round": fed.cohort_size(), "seed": self.exp.seed,
            "knn_top1_init": init["knn_top1"], "linear_top1_init": init.get("linear_top1"),
            "knn_top1_raw_input": raw,
            "knn_top1": evaluated[-1]["knn_top1"] if evaluated else None,
            "linear_top1": evaluated[-1].get("linear_top1") if evaluated else None,
            "final_train_loss": rows[-1]["train_loss"],
            "updates_per_s": sum(r["clients_ok"] for r in steady) / max(
                1e-9, sum(r["train_seconds"] for r in steady)),
            "first_round_start_seconds": first_round_at,
            "wall_seconds": time.perf_counter() - started,
            "run_dir": str(self.writer.dir),
        }
        self.writer.finish(summary, self.global_arrays)
        if not self.quiet:
            bar.summary(summary)
        return summary

    def _messages(self, rnd: int, plan: list[tuple[int, list[int]]]) -> list[Message]:
        arrays = ArrayRecord(self.global_arrays)
        messages = []
        for node_id, client_ids in plan:
            config = ConfigRecord({R.SERVER_ROUND: rnd, R.EXPERIMENT: self.exp_json,
                                   R.CLIENT_IDS: client_ids, REPLY: self.engine.reply,
                                   STATE_DIR: self.state_dir})
            content = RecordDict({R.ARRAYS: arrays, R.CONFIG: config})
            messages.append(Message(content, node_id, MessageType.TRAIN, group_id=str(rnd)))
        return messages

    def run_round(self, rnd: int, node_ids: list[int], bar: RoundProgress) -> dict[str, Any]:
        fed = self.exp.federation
        t0 = time.perf_counter()
        client_ids = sample_clients(self.exp.seed, rnd, fed.clients, fed.cohort_size())
        plan = self.engine.assign(client_ids, node_ids)
        bar.round_start(rnd)
        msg_ids = list(self.grid.push_messages(self._messages(rnd, plan)))
        pending = {mid: ids for mid, (_, ids) in zip(msg_ids, plan)}
        acc = self.strategy.new_accumulator(self.global_arrays, rnd)
        tally = RoundTally()
        deadline = None if fed.round_timeout is None else time.monotonic() + fed.round_timeout
        while pending and (deadline is None or time.monotonic() < deadline):
            replies = list(self.grid.pull_messages(list(pending)))
            for reply in replies:
                ids = pending.pop(reply.metadata.reply_to_message_id)
                done = fold_reply(reply, ids, acc, self.engine.reply, tally)
                bar.advance(done, tally.mean_loss, tally.ok / (time.perf_counter() - t0))
            if not replies:
                time.sleep(PULL_INTERVAL)
        for ids in pending.values():
            tally.failed["timeout"] += len(ids)
        train_seconds = time.perf_counter() - t0
        if acc.num_clients:
            self.global_arrays = acc.finalize()
        row: dict[str, Any] = {"round": rnd, "clients_sampled": len(client_ids), **tally.as_record(),
                               "train_loss": tally.mean_loss, "train_seconds": train_seconds,
                               "updates_per_s": tally.ok / train_seconds}
        if rnd % self.exp.evaluation.every == 0 or rnd == fed.rounds:
            t1 = time.perf_counter()
            row.update(self.evaluate())
            row["eval_seconds"] = time.perf_counter() - t1
        self.writer.checkpoint({"round": rnd, "global": self.global_arrays,
                                "strategy": self.strategy.state_dict()})
        row["round_seconds"] = time.perf_counter() - t0
        self.writer.round(row)
        return row
