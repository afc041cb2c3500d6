"""Rebuild a bench's (or a run's) results from its files: the one function both
``fedsim bench`` and ``fedsim report`` call.

A bench directory (``bench.json`` + one run directory per cell) gets ``bench.csv``,
``bench.md``, ``plots/*.png`` (and ``.pdf``) and ``report.html``. A directory of run directories without a
``bench.json`` (e.g. written by an older script) is read as a bench whose axes are the config
keys in which its runs differ. A single run directory gets ``report.html`` (its summary,
provenance, curves and round table) and a fresh ``curves.png`` and ``curves.pdf``.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsim.bench.grid import SEED, Axis, label_of, order_axes
from fedsim.bench.html import write_html
from fedsim.bench.plan import BENCH_FILE, flat_keys, parse_target
from fedsim.bench.plots import bar_plots, curve_plots
from fedsim.bench.results import CellResult, csv_row, metric_directions, read_cell
from fedsim.bench.tables import Table, bench_tables, fmt, incomplete_table, provenance_table, to_markdown
from fedsim.config import ConfigError, read_yaml
from fedsim.provenance import KEY as PROVENANCE
from fedsim.server.outputs import (CONFIG_FILE, CURVES_FILE, SUMMARY_FILE, is_run, plot_curves, read_rounds,
                                   run_title)

CSV_FILE, MD_FILE, HTML_FILE, PLOT_DIR = "bench.csv", "bench.md", "report.html", "plots"
IGNORED_KEYS = ("out", "name")  # config keys never taken as axes when inferring a grid


@dataclass(frozen=True)
class BenchReport:
    """What a report found and wrote."""

    finished: int
    total: int
    files: list[Path]
    tables: list[Table]


def build_report(path: Path, *, target: str | None = None) -> BenchReport:
    """(Re)write the results of the bench or run in ``path``; :class:`ConfigError` if it is neither."""
    if (path / BENCH_FILE).is_file() or (path.is_dir() and not is_run(path) and _runs_below(path)):
        return build_bench_report(path, target=target)
    if is_run(path):
        return build_run_report(path)
    raise ConfigError(f"report: {path} holds no bench ({BENCH_FILE}) and no fedsim run (rounds.jsonl); "
                      "give a directory written by fedsim bench or fedsim run")


def _runs_below(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and is_run(p) and (p / CONFIG_FILE).is_file())


def infer_meta(path: Path) -> dict[str, Any]:
    """A ``bench.json``-like description of a folder of runs: the axes are the config keys whose
    values differ between the runs."""
    runs = _runs_below(path)
    configs = {run.name: flat_keys(read_yaml(run / CONFIG_FILE)) for run in runs}
    keys = list(dict.fromkeys(k for cfg in configs.values() for k in cfg))
    varying = [k for k in keys if k not in IGNORED_KEYS and len({json.dumps(c.get(k)) for c in configs.values()}) > 1]
    axes = order_axes([Axis(k, tuple(dict.fromkeys(c.get(k) for c in configs.values())),
                            label_of(k)) for k in varying])
    return {"axes": [a.to_json() for a in axes], "target": None,
            "cells": [{"name": name, "values": {a.label: cfg.get(a.key) for a in axes}} for name, cfg in configs.items()]}


def build_bench_report(bench_dir: Path, *, target: str | None = None) -> BenchReport:
    """``bench.csv``, ``bench.md``, ``plots/*.png`` and ``report.html`` from the cells' files."""
    meta_file = bench_dir / BENCH_FILE
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else infer_meta(bench_dir)
    goal = parse_target(target or meta.get("target"))
    labels = [a["label"] for a in meta["axes"] if a["key"] != SEED]
    found = [read_cell(bench_dir / c["name"], c["name"], c["values"]) for c in meta["cells"]]
    cells: list[CellResult] = [c for c in found if c is not None]
    rows = [csv_row(c, goal) for c in cells]
    _write_csv(bench_dir / CSV_FILE, rows)
    tables = bench_tables(cells, labels, goal)
    lost = incomplete_table(cells)
    if lost:
        tables.append(lost)
    tables.append(provenance_table(meta.get(PROVENANCE) or {}, [c.summary.get(PROVENANCE) or {} for c in cells]))
    grid = "; ".join(f"{a['label']}: {', '.join(str(v) for v in a['values'])}" for a in meta["axes"])
    intro = [f"{len(cells)} of {len(meta['cells'])} cells finished. Grid: {grid or 'one cell'}."]
    if lost:
        intro.append(f"**{len(lost.rows)} of them lost clients in some rounds** (see \"{lost.title}\").")
    if meta.get("overrides"):
        intro.append("Every cell also: " + ", ".join(f"{k}={json.dumps(v)}" for k, v in meta["overrides"].items())
                     + " (over base.yaml).")
    title = f"fedsim bench: {bench_dir.name}"
    (bench_dir / MD_FILE).write_text(to_markdown(title, intro, tables))
    plot_dir = bench_dir / PLOT_DIR
    plot_dir.mkdir(exist_ok=True)
    for old in [*plot_dir.glob("*.png"), *plot_dir.glob("*.pdf")]:  # a plot of an axis value no longer
        old.unlink()                                                   # in the grid must not linger
    images = curve_plots(cells, labels, plot_dir) + bar_plots(cells, labels, plot_dir) if cells else []
    pdfs = [p.with_suffix(".pdf") for p in images]
    csv_table = Table(title="bench.csv (one row per cell)", headers=list(rows[0]) if rows else [],
                      rows=[[_cell_text(r.get(k)) for k in rows[0]] for r in rows] if rows else [])
    write_html(bench_dir / HTML_FILE, title, intro, tables, images, extra_tables=[csv_table])
    files = [bench_dir / CSV_FILE, bench_dir / MD_FILE, *images, *pdfs, bench_dir / HTML_FILE]
    return BenchReport(finished=len(cells), total=len(meta["cells"]), files=files, tables=tables)


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)


def build_run_report(run_dir: Path) -> BenchReport:
    """``report.html`` (summary, curves, one row per round) and ``curves.png`` of one run."""
    rows = read_rounds(run_dir)
    summary_file = run_dir / SUMMARY_FILE
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    metrics = metric_directions(run_dir) or CellResult(run_dir.name, {}, summary, rows).metrics
    name = summary.get("name") or (read_yaml(run_dir / CONFIG_FILE).get("name") if (run_dir / CONFIG_FILE).is_file()
                                   else None)
    figures = plot_curves(rows, run_dir / CURVES_FILE, metrics, title=run_title(run_dir, {**summary, "name": name}))
    summary_table = Table(title="summary" if summary else "summary (the run has not finished)",
                          headers=["key", "value"],
                          rows=[[k, fmt(v, 4) if isinstance(v, float) else str(v)] for k, v in summary.items()
                                if not isinstance(v, (dict, list))])
    columns = list(dict.fromkeys(k for r in rows for k, v in r.items() if not isinstance(v, (dict, list))))
    round_table = Table(title="rounds (rounds.jsonl)", headers=columns,
                        rows=[[_cell_text(r.get(k)) for k in columns] for r in rows])
    done = max((int(r.get("round", 0)) for r in rows), default=0)
    intro = [f"{done} rounds recorded in {run_dir}."]
    tables = [summary_table, provenance_table(None, [summary[PROVENANCE]])] if summary.get(PROVENANCE) \
        else [summary_table]
    write_html(run_dir / HTML_FILE, f"fedsim run: {run_dir.name}", intro, [*tables, round_table],
               [run_dir / CURVES_FILE])
    return BenchReport(finished=1 if summary else 0, total=1, files=[*figures, run_dir / HTML_FILE],
                       tables=[*tables, round_table])
