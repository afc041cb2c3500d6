"""What a run prints while it runs and when it ends.

Diagnostics (start-up lines, one line per round, warnings, errors) go to stderr; the
end-of-run summary goes to stdout (a table on a terminal, ``key value`` lines otherwise, or
JSON with ``fedsim run --json``). Every line is printed whole: never wrapped at the
terminal's (or rich's default 80-column) width, and without colour codes or box drawing
when the stream is not a terminal, so ``fedsim run > out.txt 2> err.txt`` and ``| grep``
see one record per line. On a terminal a rich bar shows the round in progress and each
finished round's line is printed above it, so it stays in the scrollback.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def diagnostics() -> Console:
    """The stderr console: lines are never wrapped, text is not highlighted."""
    return Console(stderr=True, soft_wrap=True, highlight=False)


def note(text: str, console: Console | None = None) -> None:
    """Print one plain diagnostic line (no markup) to stderr."""
    (console or diagnostics()).print(text, markup=False)


def error(message: str, console: Console | None = None) -> None:
    """Print ``error: <message>`` to stderr as one line of at most ~300 characters."""
    from fedsim.config import one_line

    (console or diagnostics()).print(f"[bold red]error:[/] {escape(one_line(message))}", highlight=False,
                                     soft_wrap=True)


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def round_line(row: dict[str, Any], rounds: int, metric: str) -> str:
    """A finished round in one line: clients ok/rejected/failed, mean training loss, the
    primary metric (``-`` when the round did not evaluate), client-updates/s, seconds."""
    return (f"round {row['round']}/{rounds}: {row.get('clients_ok', 0)} ok, "
            f"{row.get('clients_rejected', 0)} rejected, {row.get('clients_failed', 0)} failed, "
            f"loss {_fmt(row.get('train_loss'))}, {metric} {_fmt(row.get(metric))}, "
            f"{_fmt(row.get('updates_per_s'), '.1f')} upd/s, {row.get('round_seconds', 0):.1f}s")


class RoundProgress:
    """Shows clients done, loss, the last value of the task's primary metric and
    client-updates/s for each round; one line per finished round."""

    def __init__(self, rounds: int, clients_per_round: int, *, metric: str,
                 console: Console | None = None, quiet: bool = False) -> None:
        self.console = console or diagnostics()
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
            console=self.console, disable=not self.live, transient=True)
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
        """Print the round's line (above the live bar on a terminal: it stays in the scrollback)."""
        if row.get(self.metric) is not None:
            self.last_value = row[self.metric]
        if self.task_id is not None:
            self.progress.update(self.task_id, value=_fmt(self.last_value))
        if not self.quiet:
            note(round_line(row, self.rounds, self.metric), self.console)


def summary_json(summary: dict[str, Any]) -> str:
    """The summary as JSON (NaN and infinities as ``null``, as in ``summary.json``)."""
    from fedsim.server.outputs import json_safe

    return json.dumps(json_safe(summary), indent=2)


def _summary_items(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary's scalar entries, then the provenance's, as text."""
    items = [(k, _fmt(v, ".4f") if isinstance(v, float) else str(v)) for k, v in summary.items()
             if not isinstance(v, (dict, list)) and v is not None]
    for key, value in (summary.get("provenance") or {}).items():
        items.append((key, str(value)))
    return items


def print_summary(summary: dict[str, Any], *, as_json: bool = False, console: Console | None = None) -> None:
    """The end-of-run summary on stdout: JSON, a table on a terminal, else one
    ``key value`` line per entry (aligned, never wrapped)."""
    out = console or Console(soft_wrap=True, highlight=False)
    if as_json:
        out.out(summary_json(summary), highlight=False)
        return
    items = _summary_items(summary)
    if out.is_terminal:
        table = Table(title=f"fedsim run: {summary.get('strategy')} on {summary.get('task')}")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, text in items:
            table.add_row(key, text)
        out.print(table, markup=False)
        return
    width = max((len(k) for k, _ in items), default=0)
    for key, text in items:
        out.out(f"{key:<{width}}  {text}", highlight=False)
