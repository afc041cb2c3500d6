"""One row per finished cell, read from its run directory's ``summary.json`` and ``rounds.jsonl``.

Nothing here names a metric: the declared metrics are those the summary reports
(``<m>``, ``<m>_init``, ``<m>_best``, ``<m>_best_round``), the primary one is
``primary_metric``, a metric's round-0 baselines are the other ``<m>_<what>`` keys, and its
direction comes from the task the cell's ``config.yaml`` names. The cell's process time is
what the bench runner recorded in ``logs/<cell>.times.jsonl`` (one line per process).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsim.bench.plan import LOG_DIR
from fedsim.server.outputs import CONFIG_FILE, SUMMARY_FILE, read_rounds

SUMMARY_SUFFIXES = ("_init", "_best", "_best_round")
COST_COLUMNS = ("process_seconds", "wall_seconds", "rounds_seconds", "updates_per_s", "bytes_down", "bytes_up")
TIMES_FILE = "{name}.times.jsonl"  # under LOG_DIR: {"started_at", "seconds", "returncode"} per cell process


def times_path(bench_dir: Path, name: str) -> Path:
    return bench_dir / LOG_DIR / TIMES_FILE.format(name=name)


def record_process_time(bench_dir: Path, name: str, *, started_at: str, seconds: float, returncode: int) -> None:
    """Append one cell process's wall time (start to exit) to its times file."""
    path = times_path(bench_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps({"started_at": started_at, "seconds": seconds, "returncode": returncode}) + "\n")


def counted(returncode: int) -> bool:
    """Whether a cell process's time is part of the cell's cost: it finished (0) or was
    stopped by a signal (128 + n, or −n) and its rounds were resumed; a failed attempt
    (an error, exit 1–3) is not, since its rerun starts again from its last checkpoint."""
    return returncode == 0 or returncode < 0 or returncode > 128


def process_seconds(bench_dir: Path, name: str) -> float | None:
    """The summed wall time of the processes that ran the cell, failed attempts left out
    (``None``: none recorded)."""
    path = times_path(bench_dir, name)
    if not path.is_file():
        return None
    total = None
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
            seconds, code = float(record["seconds"]), int(record["returncode"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by a crash
        if counted(code):
            total = (total or 0.0) + seconds
    return total


@dataclass
class CellResult:
    """A finished cell: its axis values, summary, round lines and the metrics' directions."""

    name: str
    values: dict[str, Any]
    summary: dict[str, Any]
    rounds: list[dict[str, Any]]
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    process_seconds: float | None = None

    @property
    def metrics(self) -> list[str]:
        """Declared metric names, the primary first."""
        names = [k.removesuffix("_best_round") for k in self.summary if k.endswith("_best_round")]
        primary = self.summary.get("primary_metric")
        return sorted(names, key=lambda n: n != primary)

    @property
    def primary(self) -> str | None:
        return self.summary.get("primary_metric")

    def baselines(self, metric: str) -> dict[str, Any]:
        """``{what: value}`` of the round-0 baselines ``<metric>_<what>``."""
        others = [m for m in self.metrics if m != metric and m.startswith(metric + "_")]
        out = {}
        for key, value in self.summary.items():
            what = key.removeprefix(metric + "_")
            if (key.startswith(metric + "_") and f"_{what}" not in SUMMARY_SUFFIXES
                    and not any(key == o or key.startswith(o + "_") for o in others)):
                out[what] = value
        return out

    def curve(self, metric: str) -> list[tuple[int, float]]:
        """``(round, value)`` of every round that evaluated ``metric`` (round 0 = initial encoder)."""
        return [(int(r["round"]), float(r[metric])) for r in self.rounds if r.get(metric) is not None]

    def rounds_to(self, metric: str, target: float) -> int | None:
        """The first round after 0 whose ``metric`` reached ``target`` (``None``: never)."""
        higher = self.higher_is_better.get(metric, True)
        for rnd, value in self.curve(metric):
            if rnd > 0 and (value >= target if higher else value <= target):
                return rnd
        return None


_DIRECTIONS: dict[str, dict[str, bool]] = {}


def metric_directions(cell_dir: Path) -> dict[str, bool]:
    """``{metric: higher_is_better}`` of the cell's task, in declared order: from its
    ``summary.json``, else from the task its ``config.yaml`` builds (which imports torch; empty
    if it cannot be built here, e.g. a plugin task that is not importable: higher is then assumed)."""
    from fedsim.config import ExperimentConfig, read_yaml
    from fedsim.factory import task_for

    try:
        recorded = json.loads((cell_dir / SUMMARY_FILE).read_text()).get("higher_is_better")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if isinstance(recorded, dict) and recorded:
        return {str(k): bool(v) for k, v in recorded.items()}
    try:
        raw = read_yaml(cell_dir / CONFIG_FILE)
        key = json.dumps([raw.get("plugins"), raw.get("task"), raw.get("model")], sort_keys=True)
        if key not in _DIRECTIONS:
            # a cell's config.yaml may come from anyone: its plugins are not imported
            task = task_for(ExperimentConfig.model_validate(raw, context={"trust_plugins": False}))
            _DIRECTIONS[key] = {m.name: m.higher_is_better for m in task.metrics()}
        return _DIRECTIONS[key]
    except Exception:  # a report still works from the numbers alone
        return {}


def read_cell(cell_dir: Path, name: str, values: dict[str, Any]) -> CellResult | None:
    """The cell in ``cell_dir`` if it finished (has ``summary.json``), else ``None``."""
    path = cell_dir / SUMMARY_FILE
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    return CellResult(name=name, values=values, summary=summary, rounds=read_rounds(cell_dir),
                      higher_is_better=metric_directions(cell_dir),
                      process_seconds=process_seconds(cell_dir.parent, name))


def csv_row(cell: CellResult, target: tuple[str, float] | None) -> dict[str, Any]:
    """The cell's ``bench.csv`` row: values, rounds, every declared metric's final, best
    (and its round), initial value and baselines, rounds to ``target``, cost."""
    s = cell.summary
    row: dict[str, Any] = {"cell": cell.name, **cell.values, "rounds": s.get("rounds")}
    for m in cell.metrics:
        row[m] = s.get(m)
        row[f"{m}_best"] = s.get(f"{m}_best")
        row[f"{m}_best_round"] = s.get(f"{m}_best_round")
        row[f"{m}_init"] = s.get(f"{m}_init")
        for what, value in cell.baselines(m).items():
            row[f"{m}_{what}"] = value
    if target is not None:
        row[target_column(target)] = cell.rounds_to(*target)
    row["process_seconds"] = cell.process_seconds
    row["wall_seconds"] = s.get("wall_seconds")
    row["rounds_seconds"] = sum(float(r.get("round_seconds", 0.0)) for r in cell.rounds)
    row["updates_per_s"] = s.get("updates_per_s")
    row["bytes_down"] = s.get("bytes_down")
    row["bytes_up"] = s.get("bytes_up")
    return row


def target_column(target: tuple[str, float]) -> str:
    return f"rounds_to_{target[0]}_{target[1]:g}"
