"""The bench's tables: per declared metric, mean ± std and 95 % CI over seeds for every
combination of the other axes, with the initial encoder and the round-0 baselines beside;
and the cost of a run (time, throughput, bytes). Rendered as markdown (``bench.md``) and,
by :mod:`fedsim.bench.html`, as HTML."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fedsim.bench.results import CellResult
from fedsim.bench.stats import Summary, summarize

SEED_LABEL = "seed"
MB = 1e6


@dataclass(frozen=True)
class Table:
    """A titled table of already formatted cells."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""


def groups(cells: Sequence[CellResult], labels: Sequence[str]) -> dict[tuple[Any, ...], list[CellResult]]:
    """Cells grouped by their values of ``labels`` (every axis but the seed), in grid order."""
    out: dict[tuple[Any, ...], list[CellResult]] = {}
    for cell in cells:
        out.setdefault(tuple(cell.values.get(label) for label in labels), []).append(cell)
    return out


def metric_names(cells: Sequence[CellResult]) -> list[str]:
    """Every declared metric, the primary ones first, in the order cells declare them."""
    names: list[str] = []
    for cell in cells:
        for m in cell.metrics:
            if m not in names:
                names.append(m)
    primaries = [c.primary for c in cells]
    return sorted(names, key=lambda m: m not in primaries)


def fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def pm(s: Summary | None, digits: int = 3) -> str:
    """``mean ± std`` (just the mean for one value)."""
    if s is None:
        return "–"
    return fmt(s.mean, digits) if s.std is None else f"{fmt(s.mean, digits)} ± {fmt(s.std, digits)}"


def ci(s: Summary | None, digits: int = 3) -> str:
    return "–" if s is None or s.low is None else f"[{fmt(s.low, digits)}, {fmt(s.high, digits)}]"


def _mean(cells: Sequence[CellResult], get: Callable[[CellResult], Any], digits: int = 3) -> str:
    s = summarize(get(c) for c in cells)
    return "–" if s is None else fmt(s.mean, digits)


def metric_table(cells: Sequence[CellResult], labels: Sequence[str], metric: str,
                 target: tuple[str, float] | None) -> Table:
    """Final and best ``metric`` (mean ± std, 95 % CI) per group, beside its initial value and baselines."""
    having = [c for c in cells if metric in c.metrics]
    baselines: list[str] = []
    for c in having:
        baselines += [w for w in c.baselines(metric) if w not in baselines]
    with_target = target is not None and target[0] == metric
    headers = [*labels, "n", "final", "95 % CI", "best", "init", *baselines]
    if with_target:
        headers.append(f"rounds to {target[1]:g}")  # type: ignore[index]
    rows = []
    for key, members in groups(having, labels).items():
        final = summarize(c.summary.get(metric) for c in members)
        row = [str(v) for v in key] + [str(len(members)), pm(final), ci(final),
                                       pm(summarize(c.summary.get(f"{metric}_best") for c in members)),
                                       _mean(members, lambda c: c.summary.get(f"{metric}_init"))]
        row += [_mean(members, lambda c, w=w: c.baselines(metric).get(w)) for w in baselines]
        if with_target:
            reached = [r for r in (c.rounds_to(*target) for c in members) if r is not None]  # type: ignore[misc]
            row.append(f"{sum(reached) / len(reached):.1f} ({len(reached)}/{len(members)})" if reached
                       else f"– (0/{len(members)})")
        rows.append(row)
    higher = next((c.higher_is_better.get(metric) for c in having if metric in c.higher_is_better), True)
    primary = any(c.primary == metric for c in having)
    title = f"{metric} ({'primary; ' if primary else ''}{'higher' if higher else 'lower'} is better)"
    note = ("final: last evaluated round; best: best evaluated round; mean ± std over seeds, 95 % CI from the "
            "t-distribution (n − 1 degrees of freedom); init: the encoder at initialisation (round 0)"
            + ("; " + ", ".join(baselines) + ": round-0 baselines" if baselines else "")
            + ("; rounds to target: mean over the seeds that reached it (reached/n)" if with_target else "")
            + "; init and baselines: mean over seeds")
    return Table(title=title, headers=headers, rows=rows, note=note)


def cost_table(cells: Sequence[CellResult], labels: Sequence[str]) -> Table:
    """Per group (means over seeds): rounds, wall time, client-updates/s, MB down and up per run."""
    headers = [*labels, "n", "rounds", "wall s", "overhead s", "client-updates/s", "MB down", "MB up"]
    rows = []
    for key, members in groups(cells, labels).items():
        rows.append([str(v) for v in key] + [
            str(len(members)), _mean(members, lambda c: c.summary.get("rounds"), 0),
            _mean(members, lambda c: c.summary.get("wall_seconds"), 1),
            _mean(members, lambda c: c.summary.get("cell_overhead_seconds"), 1),
            _mean(members, lambda c: c.summary.get("updates_per_s"), 1),
            _mean(members, lambda c: _mb(c.summary.get("bytes_down")), 2),
            _mean(members, lambda c: _mb(c.summary.get("bytes_up")), 2)])
    note = ("means over seeds; wall s: the run's last invocation (a resumed cell counts its last part); "
            "overhead s: the cell's wall time in the bench minus its rounds' (start-up, initial evaluation, end); "
            "bytes: tensor payload per run, counted per client (see README, Benchmarking strategies); MB = 10^6 bytes")
    return Table(title="cost per run", headers=headers, rows=rows, note=note)


def _mb(value: Any) -> float | None:
    return None if value is None else float(value) / MB


def bench_tables(cells: Sequence[CellResult], labels: Sequence[str], target: tuple[str, float] | None) -> list[Table]:
    """Every metric's table, then the cost table."""
    return [*(metric_table(cells, labels, m, target) for m in metric_names(cells)), cost_table(cells, labels)]


def to_markdown(title: str, intro: Sequence[str], tables: Sequence[Table]) -> str:
    """``bench.md``: a heading, intro lines, and each table with its note."""
    out = [f"# {title}", "", *intro, ""]
    for table in tables:
        out += [f"## {table.title}", "", "| " + " | ".join(table.headers) + " |",
                "|" + "|".join(" --- " for _ in table.headers) + "|"]
        out += ["| " + " | ".join(row) + " |" for row in table.rows]
        if table.note:
            out += ["", table.note]
        out.append("")
    return "\n".join(out)
