"""Bookkeeping of the metrics a task declares: final and best values, best models.

The round loop, the summary, the CSV and the plots never name a metric: they iterate over
the :class:`fedsim.tasks.base.Metric` list the task declares (Flower's ``evaluate_fn``
contract, with a direction per metric). Best values are derived from the round records
(``rounds.jsonl``), so a resumed run knows them without extra state; a strictly better
value wins, so the best round is the first one that reached it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fedsim.tasks.base import Metric


def best_of(rows: Sequence[dict[str, Any]], metric: Metric) -> tuple[float | None, int | None]:
    """The best value of ``metric`` over ``rows`` and the first round that reached it."""
    best, best_round = None, None
    for row in rows:
        value = row.get(metric.name)
        if value is not None and metric.better(value, best):
            best, best_round = value, int(row["round"])
    return best, best_round


def improved(rows: Sequence[dict[str, Any]], row: dict[str, Any], metric: Metric) -> bool:
    """Whether ``row`` beats every earlier row on ``metric`` (``rows`` excludes ``row``)."""
    value = row.get(metric.name)
    return value is not None and metric.better(value, best_of(rows, metric)[0])


def baseline_keys(row0: dict[str, Any], metrics: Sequence[Metric]) -> list[str]:
    """The round-0 keys that are baselines (``<metric>_<what>``), not metrics or the round."""
    names = {m.name for m in metrics}
    return [k for k in row0 if k != "round" and k not in names]


def metric_summary(rows: Sequence[dict[str, Any]], metrics: Sequence[Metric]) -> dict[str, Any]:
    """Per declared metric: ``<m>_init``, ``<m>`` (last evaluated), ``<m>_best``,
    ``<m>_best_round``; the round-0 baselines; ``primary_metric``; and ``higher_is_better``
    (metric -> direction, in declared order: reports read it without building the task)."""
    out: dict[str, Any] = {"primary_metric": metrics[0].name if metrics else None,
                           "higher_is_better": {m.name: m.higher_is_better for m in metrics}}
    init = rows[0] if rows and rows[0].get("round") == 0 else {}
    for m in metrics:
        evaluated = [r for r in rows if r.get("round", 0) > 0 and r.get(m.name) is not None]
        best, best_round = best_of(rows, m)
        out[f"{m.name}_init"] = init.get(m.name)
        out[m.name] = evaluated[-1][m.name] if evaluated else None
        out[f"{m.name}_best"] = best
        out[f"{m.name}_best_round"] = best_round
    for key in baseline_keys(init, metrics):
        out[key] = init[key]
    return out
