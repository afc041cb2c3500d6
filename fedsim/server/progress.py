"""Live progress of a run: a rich bar per round, one plain line per round when not a TTY."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


class RoundProgress:
    """Shows clients done, loss, the last value of the task's primary metric and
    client-updates/s for each round."""

    def __init__(self, rounds: int, clients_per_round: int, *, metric: str,
                 console: Console | None = None, quiet: bool = False) -> None:
        self.console = console or Console(stderr=True)
        self.rounds = rounds
        self.per_round = clients_per_round
        self.quiet = quiet
        self.metric = metric
        self.live = self.console.is_terminal and not quiet
        self.progress = Progress(
            TextColumn("[bold]round {task.fields[rnd]}/{task.fields[rounds]}"), BarColumn(),
            MofNCompleteColumn(), TextColumn("clients"),
            TextColumn("loss {task.fields[loss]}"), TextColumn(f"{metric} {{task.fields[value]}}"),
            TextColumn("{task.fields[ups]} upd/s"), TimeElapsedColumn(),
            console=self.console, disable=not self.live, transient=False)
        self.task_id = None
        self.last_value: float | None = None

    def __enter__(self) -> "RoundProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def round_start(self, rnd: int) -> None:
        fields = dict(rnd=rnd, rounds=self.rounds, loss="-", value=_fmt(self.last_value), ups="-")
        if self.task_id is None:
            self.task_id = self.progress.add_task("train", total=self.per_round, **fields)
        else:
            self.progress.reset(self.task_id, total=self.per_round, **fields)

    def advance(self, clients: int, loss: float | None, updates_per_s: float) -> None:
        if self.task_id is not None:
            self.progress.update(self.task_id, advance=clients, loss=_fmt(loss),
                                 ups=_fmt(updates_per_s, ".1f"))

    def round_end(self, row: dict[str, Any]) -> None:
        if row.get(self.metric) is not None:
            self.last_value = row[self.metric]
        if self.task_id is not None:
            self.progress.update(self.task_id, value=_fmt(self.last_value))
        if not self.live and not self.quiet:
            self.console.print(
                f"round {row['round']}/{self.rounds}: {row.get('clients_ok', 0)} ok, "
                f"{row.get('clients_rejected', 0)} rejected, {row.get('clients_failed', 0)} failed, "
                f"loss {_fmt(row.get('train_loss'))}, {self.metric} {_fmt(row.get(self.metric))}, "
                f"{_fmt(row.get('updates_per_s'), '.1f')} upd/s, {row.get('round_seconds', 0):.1f}s")

    def summary(self, summary: dict[str, Any]) -> None:
        """Print the end-of-run table."""
        table = Table(title=f"fedsim run: {summary['strategy']} on {summary['task']}")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, v in summary.items():
            if isinstance(v, (dict, list)) or v is None:
                continue
            table.add_row(key, _fmt(v, ".4f") if isinstance(v, float) else str(v))
        self.console.print(table)
