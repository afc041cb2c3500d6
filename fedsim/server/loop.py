"""The round loop, written once for every strategy, task and engine.

Per round: sample clients with a generator seeded by (seed, round), drop the simulated
dropouts and stragglers, send each SuperNode its clients with the global weights, fold
every reply into the strategy's accumulator (validated first; in plan order, so the float
summation order and therefore the result do not depend on arrival order), apply the
failure policy, finalize, evaluate every ``evaluation.every`` rounds, then hand the round's
record to the callbacks (:mod:`fedsim.server.callbacks`: best models, the line in
``rounds.jsonl``, the checkpoint, trackers...). ``resume=True`` continues a run from its last
complete round.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid
from torch import nn

from fedsim import records as R
from fedsim.config import ExperimentConfig
from fedsim.engines import Engine, make_engine, server_device
from fedsim.engines.stop import StopFlag
from fedsim.seeding import sample_clients
from fedsim.server.callbacks import CallbackList, RoundCallback, run_outputs
from fedsim.server.heterogeneity import unavailable
from fedsim.server.metrics import metric_summary
from fedsim.server.outputs import RunWriter
from fedsim.provenance import KEY as PROVENANCE, now_utc, provenance
from fedsim.server.progress import RoundProgress, note
from fedsim.server.replies import RoundTally, fold_reply, payload_bytes
from fedsim.server.waits import PULL_INTERVAL, Readiness, RunAborted, wait_for_nodes
from fedsim.records import RoundContext, RunSpec
from fedsim.strategies.base import Arrays, Strategy
from fedsim.strategies.validation import all_finite
from fedsim.tasks.base import Task
from fedsim.factory import strategy_for, task_for


def copy_arrays(model: nn.Module) -> Arrays:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class RoundLoop:
    """Runs an experiment's rounds on a Flower ``Grid`` and writes its outputs."""

    def __init__(self, grid: Grid, exp: ExperimentConfig, run_dir: str, *, quiet: bool = False,
                 resume: bool = False, verbose: bool = False, stop: StopFlag | None = None,
                 whole_nodes: bool = False, engine: Engine | None = None,
                 callbacks: Iterable[RoundCallback] = ()) -> None:
        """``callbacks`` (trackers, say) follow the loop's own outputs (:func:`run_outputs`)."""
        self.grid = grid
        self.started_at = now_utc()
        self.stop = stop or StopFlag()  # set by the launcher when the runtime ends or a signal comes
        self.verbose = verbose  # print the first client traceback of the run
        self.shown_traceback = False
        self.exp = exp
        self.task: Task = task_for(exp)
        self.strategy: Strategy = strategy_for(exp)
        self.engine: Engine = engine or make_engine(exp)  # the launcher's, sized by an attached cluster
        self.model = self.task.build_model()
        self.global_arrays = copy_arrays(self.model)
        self.model.to(server_device(self.engine.device))  # where the workers train, if the driver can
        self.writer = RunWriter(run_dir, exp.to_yaml(), resume=resume)
        # whole_nodes (deployment): every SuperNode is one client training all of its own data
        self.run_record = ConfigRecord(RunSpec.from_experiment(exp, whole_node=whole_nodes).to_record())
        self.quiet = quiet
        self.resumed = resume
        self.failed_streak = 0
        self.last_round = 0
        self.aggregations = 0  # completed aggregations; strategies count warm-up/SWA by them
        if resume:
            self._restore()
        else:
            self.writer.describe_data(self.task.describe_data())
        self.callbacks = CallbackList([*run_outputs(), *callbacks])

    def _restore(self) -> None:
        # fedsim.server.resume.check_resumable (run by the CLI before start-up) has checked
        # that the checkpoint fits this config and that no completed round lacks one.
        state = self.writer.load_checkpoint()
        if state is None:
            self.writer.truncate_after(0)
            return
        self.last_round = int(state["round"])
        self.global_arrays = state["global"]
        self.strategy.load_state_dict(state["strategy"])
        self.failed_streak = int(state["failed_streak"])
        # checkpoints written before the counter existed: as before, count server rounds
        self.aggregations = int(state.get("aggregations", self.last_round))
        self.writer.truncate_after(self.last_round)

    def evaluate(self) -> dict[str, float]:
        """The task's declared metrics of the current global model."""
        self.model.load_state_dict(self.global_arrays)
        return self.task.evaluate(self.model)

    def run(self) -> dict[str, Any]:
        """Run the remaining rounds; returns the summary also written to ``summary.json``."""
        completed = False
        try:
            self.callbacks.on_begin(self)
            summary = self._run()
            completed = True
            return summary
        finally:
            self.callbacks.on_close(self, completed=completed)

    def _run(self) -> dict[str, Any]:
        started = time.perf_counter()
        fed = self.exp.federation
        # The workers start (Ray actors, imports, task and model build) while round 0 is evaluated.
        node_ids = wait_for_nodes(self.grid, self.engine.num_nodes, stop=self.stop)
        ready = Readiness(self.grid, node_ids, self.run_record)
        if not self.writer.rows:
            self.callbacks.after_round(self, {"round": 0, **self.evaluate(), **self.task.baselines()})
        ready.wait(self.stop)  # round timeouts start after
        first_round_at = time.perf_counter() - started
        if not self.quiet:
            note(f"workers ready after {first_round_at:.1f}s; {fed.rounds - self.last_round} rounds to run")
        with RoundProgress(fed.rounds, fed.cohort_size(), metric=self.task.primary_metric.name,
                           quiet=self.quiet) as bar:
            for rnd in range(self.last_round + 1, fed.rounds + 1):
                row = self.run_round(rnd, node_ids, bar)
                self.callbacks.after_round(self, row)  # the line, then the checkpoint
                self.last_round = rnd
                bar.round_end(row)
                if row.get("skipped") and not self.quiet:
                    bar.console.print(f"round {rnd}: only {row['clients_ok']} of {row['clients_sampled']} "
                                      f"clients succeeded (need {fed.min_success_fraction:.0%}); "
                                      "round skipped, global model unchanged", highlight=False, soft_wrap=True)
                if self.failed_streak >= fed.max_failed_rounds:
                    # every round writes its checkpoint, a failed one too (the model unchanged)
                    raise RunAborted(f"{self.failed_streak} consecutive rounds failed "
                                     f"(federation.max_failed_rounds={fed.max_failed_rounds}); the global "
                                     f"model last changed in round {rnd - self.failed_streak}, last "
                                     f"checkpoint is round {rnd}")
            summary = self._summary(first_round_at, time.perf_counter() - started)
        self.callbacks.on_end(self, summary)
        if self.aggregations == 0 and fed.rounds > 0:  # fewer rounds than max_failed_rounds, all skipped
            raise RunAborted(f"all {fed.rounds} rounds were skipped, so the model is the initial one; "
                             f"see 'failed' and 'errors' in {self.writer.dir / 'rounds.jsonl'}")
        return summary

    def _summary(self, first_round_at: float, wall: float) -> dict[str, Any]:
        fed = self.exp.federation
        rows = self.writer.rows[1:]
        steady = rows[1:] or rows
        return {
            "name": self.exp.name, "strategy": self.exp.strategy.name, "task": self.exp.task.name,
            "engine": self.engine.name, "workers": self.engine.num_nodes, "rounds": fed.rounds, "clients": fed.clients,
            "clients_per_round": fed.cohort_size(), "seed": self.exp.seed,
            **metric_summary(self.writer.rows, self.task.metrics()),
            "final_train_loss": rows[-1].get("train_loss") if rows else None,
            "rounds_skipped": sum(1 for r in rows if r.get("skipped")),
            "updates_per_s": sum(r["clients_ok"] for r in steady) / max(
                1e-9, sum(r["train_seconds"] for r in steady)),
            "bytes_down": sum(r.get("bytes_down", 0) for r in rows),
            "bytes_up": sum(r.get("bytes_up", 0) for r in rows),
            "first_round_start_seconds": first_round_at, "wall_seconds": wall,
            "run_dir": str(self.writer.dir),
            PROVENANCE: provenance(device=self.engine.device, started_at=self.started_at),
        }

    def _messages(self, rnd: int, plan: list[tuple[int, list[int]]],
                  ttl: float | None = None) -> list[Message]:
        arrays = ArrayRecord(self.global_arrays)
        # the round's context, the same for every node; each message names its own clients
        ctx = RoundContext.for_round(self.exp, self.strategy, rnd, aggregation=self.aggregations + 1,
                                     reply=self.engine.reply)
        messages = []
        for node_id, client_ids in plan:
            content = RecordDict({R.ARRAYS: arrays, R.RUN: self.run_record,
                                  R.ROUND: ConfigRecord(replace(ctx, client_ids=tuple(client_ids)).to_record())})
            # ttl: Flower drops the message (and a late reply) once the round's time is up
            messages.append(Message(content, node_id, MessageType.TRAIN, ttl=ttl, group_id=str(rnd)))
        return messages

    def _collect(self, rnd: int, plan: list[tuple[int, list[int]]], node_ids_sent: list[str],
                 bar: RoundProgress, t0: float, deadline: float | None) -> tuple[Any, RoundTally]:
        """Fold replies in plan order as they arrive (out-of-order ones wait in ``early``).

        Waits until every reply is in, the wall-clock ``deadline`` passes (the rest count as
        ``timeout``; Flower drops their messages and late replies, as their TTL ends then too)
        or the stop flag is set (:class:`RunStopped`).
        """
        acc = self.strategy.new_accumulator(self.global_arrays, rnd, aggregation=self.aggregations + 1)
        tally = RoundTally()
        order = list(zip(node_ids_sent, (ids for _, ids in plan)))
        waiting = set(node_ids_sent)
        early: dict[str, Message] = {}
        nxt = 0
        while nxt < len(order) and (deadline is None or time.time() < deadline):
            replies = list(self.grid.pull_messages(list(waiting))) if waiting else []
            for reply in replies:
                mid = reply.metadata.reply_to_message_id
                waiting.discard(mid)
                early[mid] = reply
            while nxt < len(order) and order[nxt][0] in early:
                mid, ids = order[nxt]
                done = fold_reply(early.pop(mid), ids, acc, self.engine.reply, tally)
                bar.advance(done, tally.mean_loss, tally.ok / (time.perf_counter() - t0))
                nxt += 1
            if replies:
                self.stop.check()
            else:
                self.stop.sleep(PULL_INTERVAL)
        for mid, ids in order[nxt:]:  # past the deadline: arrived-but-unfolded ones count too
            if mid in early:
                fold_reply(early.pop(mid), ids, acc, self.engine.reply, tally)
            else:
                tally.failed["timeout"] += len(ids)
        return acc, tally

    def run_round(self, rnd: int, node_ids: list[int], bar: RoundProgress) -> dict[str, Any]:
        """Train round ``rnd``, fold its replies, finalize and evaluate when due; returns the
        round's record (the callbacks write it)."""
        t0 = time.perf_counter()
        sampled, acc, tally, bytes_down = self._train(rnd, node_ids, bar, t0)
        train_seconds = time.perf_counter() - t0
        ok = self._aggregate(rnd, acc, tally, len(sampled))
        row: dict[str, Any] = {"round": rnd, "clients_sampled": len(sampled), **tally.as_record(),
                               "skipped": not ok, "train_loss": tally.mean_loss,
                               "train_seconds": train_seconds,
                               # train_seconds minus this is the engine's own overhead
                               # (messages, Ray, waiting for the slowest reply)
                               "busiest_reply_seconds": tally.busiest_reply_seconds,
                               "updates_per_s": tally.ok / train_seconds,
                               "bytes_down": bytes_down, "bytes_up": tally.bytes_up}
        row.update(self.strategy.last_round_info())
        if rnd % self.exp.evaluation.every == 0 or rnd == self.exp.federation.rounds:
            t1 = time.perf_counter()
            row.update(self.evaluate())
            row["eval_seconds"] = time.perf_counter() - t1
        row["round_seconds"] = time.perf_counter() - t0
        self._report_errors(rnd, tally, bar)
        return row

    def _train(self, rnd: int, node_ids: list[int], bar: RoundProgress,
               t0: float) -> tuple[list[int], Any, RoundTally, int]:
        """Sample the round's clients, drop the unavailable ones, send the rest the global
        model and fold their replies: ``(sampled, accumulator, tally, bytes sent down)``."""
        fed = self.exp.federation
        sampled = sample_clients(self.exp.seed, rnd, fed.clients, fed.cohort_size())
        absent = unavailable(self.exp.heterogeneity, seed=self.exp.seed, server_round=rnd,
                             client_ids=sampled, local_epochs=fed.local_epochs)
        present = [c for c in sampled if c not in absent]
        bar.round_start(rnd)
        plan = self.engine.assign(present, node_ids) if present else []
        budget = self.engine.round_budget(plan, fed.round_timeout)
        messages = self._messages(rnd, plan, ttl=budget)
        # the round's time starts when its messages are made (their TTL counts from then)
        deadline = None if budget is None or not messages else messages[0].metadata.created_at + budget
        sent = list(self.grid.push_messages(messages)) if plan else []
        # Per client, as a real federation would send: the whole global to every client sent
        # work (a cohort worker gets one message for several virtual clients).
        bytes_down = payload_bytes(self.global_arrays) * sum(len(ids) for _, ids in plan)
        acc, tally = self._collect(rnd, plan, sent, bar, t0, deadline)
        for reason in absent.values():
            tally.failed[reason] += 1
        return sampled, acc, tally, bytes_down

    def _aggregate(self, rnd: int, acc: Any, tally: RoundTally, sampled: int) -> bool:
        """Finalize the round when enough of its ``sampled`` clients succeeded
        (``federation.min_success_fraction``), else count a failed round; whether it did."""
        if not (acc.num_clients > 0 and tally.ok >= self.exp.federation.min_success_fraction * sampled):
            self.failed_streak += 1
            return False
        new_global = acc.finalize()
        bad = [k for k, v in new_global.items() if v.is_floating_point() and not all_finite(v)]
        if bad:  # every update was finite: the server rule itself diverged; stop, never train on NaN
            raise RunAborted(f"strategy {self.exp.strategy.name!r} produced a non-finite global model in "
                             f"round {rnd} ({len(bad)} tensors, e.g. {bad[0]}); try a smaller server "
                             f"or client learning rate; last checkpoint is round {rnd - 1}")
        self.global_arrays = new_global
        self.failed_streak = 0
        self.aggregations += 1
        return True

    def _report_errors(self, rnd: int, tally: RoundTally, bar: RoundProgress) -> None:
        """One line per failure reason (its count and first message); the run's first
        client traceback too with ``--verbose``."""
        if self.quiet:
            return
        for reason, message in tally.errors.items():
            bar.console.print(f"round {rnd}: {tally.failed[reason] or tally.rejected[reason]} client(s) "
                              f"failed ({reason}): {message}", highlight=False, markup=False,
                              soft_wrap=True)
        if self.verbose and not self.shown_traceback and tally.tracebacks:
            reason, text = next(iter(tally.tracebacks.items()))
            bar.console.print(f"first client traceback ({reason}):\n{text}", highlight=False, markup=False,
                              soft_wrap=True)
            self.shown_traceback = True
