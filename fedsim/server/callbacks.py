"""Round-loop callbacks: everything a run writes or reports per round, outside the loop.

The round loop trains and evaluates; what happens to its results is a list of
:class:`RoundCallback` objects (pfl-research's ``TrainingProcessCallback``), called in list
order at four points:

* :meth:`~RoundCallback.on_begin` — once, before round 0 is evaluated (the run directory
  exists; the model is the initial one or the checkpoint's).
* :meth:`~RoundCallback.after_round` — with each round's record (its ``rounds.jsonl`` line),
  round 0's (the initial model's evaluation) included.
* :meth:`~RoundCallback.on_end` — once, with the summary, when every round ran.
* :meth:`~RoundCallback.on_close` — always, last (``completed``: the run returned its summary),
  for every callback whose ``on_begin`` ran.

Every hook gets the :class:`~fedsim.server.loop.RoundLoop` (its ``exp``, ``task``,
``writer``, ``global_arrays``, ``strategy``...). The loop's own outputs come first, in this
order, so a crash between two of them is always recoverable: :class:`BestModels` (written
before the line that names them), :class:`RoundsFile` (the line; at the end ``summary.json``,
``model.pt``, ``metrics.csv`` and the curves), :class:`Checkpoint` (after the line: a resume
truncates lines past the checkpoint). Then the run's trackers and any callbacks given to the
loop. A callback that must not end a run is wrapped in :class:`Guarded`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from fedsim.server.metrics import improved
from fedsim.server.outputs import NonFiniteCheckpoint
from fedsim.server.progress import print_summary
from fedsim.server.resume import IDENTITY_KEY, identity
from fedsim.server.waits import RunAborted

if TYPE_CHECKING:
    from fedsim.server.loop import RoundLoop


class RoundCallback:
    """A hook into the round loop; every hook does nothing unless overridden."""

    def on_begin(self, loop: RoundLoop) -> None:
        """Before round 0 is evaluated (or, on resume, before the next round)."""

    def after_round(self, loop: RoundLoop, row: dict[str, Any]) -> None:
        """After a round (round 0: the initial model) with its complete record."""

    def on_end(self, loop: RoundLoop, summary: dict[str, Any]) -> None:
        """After the last round, with the run's summary."""

    def on_close(self, loop: RoundLoop, *, completed: bool) -> None:
        """Always, last; ``completed``: the run returned its summary."""


class CallbackList(RoundCallback):
    """Callbacks called in order; :meth:`on_close` reaches those whose :meth:`on_begin` ran
    (in order too, each even if an earlier one raised; the first error is raised after)."""

    def __init__(self, callbacks: Iterable[RoundCallback]) -> None:
        self.callbacks = list(callbacks)
        self.begun: list[RoundCallback] = []

    def on_begin(self, loop: RoundLoop) -> None:
        for callback in self.callbacks:
            callback.on_begin(loop)
            self.begun.append(callback)

    def after_round(self, loop: RoundLoop, row: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback.after_round(loop, row)

    def on_end(self, loop: RoundLoop, summary: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback.on_end(loop, summary)

    def on_close(self, loop: RoundLoop, *, completed: bool) -> None:
        first: BaseException | None = None
        for callback in self.begun:
            try:
                callback.on_close(loop, completed=completed)
            except BaseException as e:  # the others still close; the first error is not lost
                first = first or e
        self.begun = []
        if first is not None:
            raise first


class Guarded(RoundCallback):
    """A callback that must not end the run (a tracker): if a hook after :meth:`on_begin`
    raises, one line goes to stderr and the callback is off for the rest of the run."""

    def __init__(self, name: str, inner: RoundCallback) -> None:
        self.name, self.inner, self.on = name, inner, True

    def on_begin(self, loop: RoundLoop) -> None:
        self.inner.on_begin(loop)  # a sink that cannot open is an error of the run, as a bad option

    def _call(self, hook: str, *args: Any, **kwargs: Any) -> None:
        if not self.on:
            return
        try:
            getattr(self.inner, hook)(*args, **kwargs)
        except Exception as e:  # a sink must not end a run
            print(f"warning: tracker {self.name} failed ({type(e).__name__}: {e}); it is off for the rest "
                  "of the run", file=sys.stderr)
            self.on = False

    def after_round(self, loop: RoundLoop, row: dict[str, Any]) -> None:
        self._call("after_round", loop, row)

    def on_end(self, loop: RoundLoop, summary: dict[str, Any]) -> None:
        self._call("on_end", loop, summary)

    def on_close(self, loop: RoundLoop, *, completed: bool) -> None:
        self._call("on_close", loop, completed=completed)
        self.on = False


class BestModels(RoundCallback):
    """``best_<metric>.pt`` for every tracked metric (``evaluation.track``, default the
    task's primary metric) a round improves, written before that round's line, so a crash in
    between redoes the round and rewrites the same model."""

    def after_round(self, loop: RoundLoop, row: dict[str, Any]) -> None:
        tracked = loop.exp.evaluation.track or [loop.task.primary_metric.name]
        for name in tracked:
            if improved(loop.writer.rows, row, loop.task.metric(name)):
                loop.writer.best_model(name, loop.global_arrays)


class RoundsFile(RoundCallback):
    """Each round's line in ``rounds.jsonl``; at the end ``model.pt``, ``metrics.csv``,
    ``summary.json`` and the curves (:meth:`fedsim.server.outputs.RunWriter.finish`)."""

    def after_round(self, loop: RoundLoop, row: dict[str, Any]) -> None:
        loop.writer.round(row)

    def on_end(self, loop: RoundLoop, summary: dict[str, Any]) -> None:
        metrics = {m.name: m.higher_is_better for m in loop.task.metrics()}
        loop.writer.finish(summary, loop.global_arrays, metrics)


class Checkpoint(RoundCallback):
    """``checkpoint.pt`` after every round's line (a failed round's too, the model unchanged;
    round 0 has none: a resume without one starts from round 0). A non-finite state is
    refused, the previous checkpoint kept, and the run aborted."""

    def after_round(self, loop: RoundLoop, row: dict[str, Any]) -> None:
        if row["round"] == 0:
            return

        try:
            loop.writer.checkpoint({"round": row["round"], "global": loop.global_arrays,
                                    "strategy": loop.strategy.state_dict(),
                                    "failed_streak": loop.failed_streak, "aggregations": loop.aggregations,
                                    IDENTITY_KEY: identity(loop.exp)})
        except NonFiniteCheckpoint as e:  # e.g. a strategy's server momentum diverged
            raise RunAborted(str(e)) from None


class PrintSummary(RoundCallback):
    """The summary on stdout at the end (``flwr run .``; ``fedsim run`` prints its own)."""

    def on_end(self, loop: RoundLoop, summary: Mapping[str, Any]) -> None:
        if not loop.quiet:
            print_summary(dict(summary))


def run_outputs() -> list[RoundCallback]:
    """The loop's own outputs, in the order they must be written."""
    return [BestModels(), RoundsFile(), Checkpoint()]
