"""A bench's cells checked before anything runs: each cell's config, and what its run directory holds.

Every cell's experiment is the base experiment, then the user's ``--set``/run flags, then
the cell's axis values, validated by :func:`fedsim.config.load_config` — so an unknown
strategy, α ≤ 0 or a bad value anywhere in the grid is one line before any cell starts.
A cell's directory is then:

* ``new`` — missing or empty: ``fedsim run --config base.yaml --set ... --out DIR``;
* ``done`` — ``summary.json`` present and ``rounds.jsonl`` at the cell's round count: skipped;
* ``resume`` — a run that did not finish (or finished fewer rounds than asked):
  ``fedsim run --resume DIR --rounds R``, after the same checks ``fedsim run --resume``
  makes (:func:`fedsim.server.resume.check_resumable`).

A directory holding a run with other settings, or files that are no run, is refused.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fedsim.bench.grid import Axis, Cell, expand
from fedsim.config import (ConfigError, ExperimentConfig, forget_other_backbone_options, load_config,
                           read_experiment_yaml, read_yaml)
from fedsim.provenance import KEY as PROVENANCE, provenance
from fedsim.server.outputs import CONFIG_FILE, SUMMARY_FILE, is_run, read_rounds
from fedsim.server.resume import check_resumable
from fedsim.factory import task_for

BENCH_FILE = "bench.json"
BASE_FILE = "base.yaml"
LOG_DIR = "logs"
NEW, RESUME, DONE = "new", "resume", "done"
# Keys a cell's config.yaml may differ in from the grid's: where it is, how many rounds were
# asked when it started (a resume extends them), and a Ray address (never stored on resume).
IGNORED_KEYS = ("out", "federation.rounds", "engine.ray_address")


@dataclass(frozen=True)
class BenchSpec:
    """A bench: its axes, the base experiment, the overrides every cell gets, and options."""

    axes: tuple[Axis, ...]
    base: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    target: tuple[str, float] | None = None
    trackers: tuple[str, ...] = ()

    def cells(self) -> list[Cell]:
        return expand(self.axes)


@dataclass(frozen=True)
class PlannedCell:
    """A cell, its validated experiment, its directory and what that directory holds."""

    cell: Cell
    dir: Path
    exp: ExperimentConfig
    state: str
    rounds_done: int = 0

    @property
    def rounds(self) -> int:
        return self.exp.federation.rounds


def parse_target(text: str | None) -> tuple[str, float] | None:
    """``--target knn_top1=0.5`` -> ``("knn_top1", 0.5)``."""
    if text is None:
        return None
    name, sep, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not sep or not name.strip() or not math.isfinite(number):
        raise ConfigError(f"--target {text!r}: expected METRIC=VALUE, e.g. knn_top1=0.5")
    return name.strip(), number


def read_bench_yaml(path: Path) -> tuple[dict[str, Any], Any]:
    """A bench YAML: the base experiment (its ``extends:`` resolved, see
    :func:`fedsim.config.read_experiment_yaml`) and its ``grid:`` section (``None`` if absent)."""
    raw = read_experiment_yaml(path)
    return raw, raw.pop("grid", None)


def _overlaps(a: str, b: str) -> bool:
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _cell_config(spec: BenchSpec, cell: Cell, cell_dir: Path) -> ExperimentConfig:
    base = copy.deepcopy(spec.base)
    if "model.name" in cell.values:
        forget_other_backbone_options(base, cell.values["model.name"])
    try:
        exp = load_config(None, {**base, **spec.overrides, **cell.values, "out": str(cell_dir)})
    except ConfigError as e:
        raise ConfigError(f"grid cell {cell.name}: {e}") from None
    if "partitioning.alpha" in cell.values and exp.partitioning.kind != "dirichlet":
        raise ConfigError(f"grid alpha: partitioning.kind is {exp.partitioning.kind!r}; the alpha axis needs "
                          "dirichlet (set partitioning.kind: dirichlet)")
    if spec.target is not None:
        declared = [m.name for m in task_for(exp).metrics()]
        if spec.target[0] not in declared:
            raise ConfigError(f"--target: task {exp.task.name!r} has no metric {spec.target[0]!r}; "
                              f"choose from: {', '.join(declared)}")
    return exp


def flat_keys(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{"section.key": value}`` (a non-empty mapping is descended into)."""
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flat_keys(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _different_settings(cell_dir: Path, exp: ExperimentConfig) -> str | None:
    """The first setting in which the run in ``cell_dir`` differs from ``exp`` (``None``: none).

    A key its ``config.yaml`` lacks entirely (a setting added to fedsim after it was written)
    is not compared.
    """
    have = flat_keys(read_yaml(cell_dir / CONFIG_FILE))
    want = flat_keys(json.loads(exp.model_dump_json()))
    for key in sorted(set(have) | set(want)):
        parts = key.split(".")
        newer = key not in have and not any(".".join(parts[:i]) in have for i in range(1, len(parts)))
        if key not in IGNORED_KEYS and not newer and have.get(key) != want.get(key):
            return f"{key}: {have.get(key)!r} there, {want.get(key)!r} in the grid"
    return None


def _state(cell: Cell, cell_dir: Path, exp: ExperimentConfig) -> tuple[str, int]:
    where = f"grid cell {cell.name}: {cell_dir}"
    if not cell_dir.exists() or (cell_dir.is_dir() and not any(cell_dir.iterdir())):
        return NEW, 0
    if not cell_dir.is_dir() or not is_run(cell_dir) or not (cell_dir / CONFIG_FILE).is_file():
        raise ConfigError(f"{where} holds files that are no fedsim run; move them or choose another --out")
    differ = _different_settings(cell_dir, exp)
    if differ is not None:
        raise ConfigError(f"{where} holds a run with other settings ({differ}); choose another --out")
    done = max((int(r.get("round", 0)) for r in read_rounds(cell_dir)), default=0)
    if done > exp.federation.rounds:
        raise ConfigError(f"{where} has {done} rounds, more than the grid's {exp.federation.rounds}; "
                          "choose another --out or ask for at least as many rounds")
    if (cell_dir / SUMMARY_FILE).is_file() and done == exp.federation.rounds:
        return DONE, done
    resumed = load_config(cell_dir / CONFIG_FILE, {"federation.rounds": exp.federation.rounds,
                                                   "engine.ray_address": exp.engine.ray_address})
    try:
        check_resumable(cell_dir, resumed)
    except ConfigError as e:
        raise ConfigError(f"{where} cannot be resumed: {e}") from None
    return RESUME, done


def plan(spec: BenchSpec, bench_dir: Path) -> list[PlannedCell]:
    """Every cell checked and its state found; :class:`ConfigError` (one line) for the first
    problem, before anything runs or is written."""
    for key in spec.overrides:
        if _overlaps(key, "out"):
            raise ConfigError("out: the bench names each cell's run directory; give the bench directory with --out")
        for axis in spec.axes:
            if _overlaps(key, axis.key):
                raise ConfigError(f"{key}: {axis.key} is a grid axis ({axis.label}); give its values in the grid")
    planned = []
    for cell in spec.cells():
        cell_dir = bench_dir / cell.name
        exp = _cell_config(spec, cell, cell_dir)
        state, done = _state(cell, cell_dir, exp)
        planned.append(PlannedCell(cell=cell, dir=cell_dir, exp=exp, state=state, rounds_done=done))
    return planned


def write_bench_files(spec: BenchSpec, bench_dir: Path, planned: list[PlannedCell], argv: list[str]) -> None:
    """``base.yaml`` (the experiment every new cell starts from) and ``bench.json`` (the grid,
    its cells and options: what ``fedsim report`` reads)."""
    bench_dir.mkdir(parents=True, exist_ok=True)
    (bench_dir / BASE_FILE).write_text(yaml.safe_dump(spec.base, sort_keys=False))
    meta = {
        "axes": [a.to_json() for a in spec.axes],
        "cells": [{"name": p.cell.name, "values": p.cell.labelled(spec.axes)} for p in planned],
        "overrides": spec.overrides,
        "target": None if spec.target is None else f"{spec.target[0]}={spec.target[1]:g}",
        "command": argv,
        PROVENANCE: provenance(argv=argv),
    }
    (bench_dir / BENCH_FILE).write_text(json.dumps(meta, indent=1) + "\n")


def command(cell: PlannedCell, spec: BenchSpec, bench_dir: Path) -> list[str]:
    """The ``fedsim run`` command line that starts or continues ``cell``."""
    cmd = [sys.executable, "-m", "fedsim", "run", "--quiet"]
    if cell.state == RESUME:
        cmd += ["--resume", str(cell.dir), "--rounds", str(cell.rounds)]
        if cell.exp.engine.ray_address:
            cmd += ["--ray-address", cell.exp.engine.ray_address]
        if cell.exp.plugins:  # named by the bench's own config, which the plan validated
            cmd += ["--trust-plugins"]
    else:
        cmd += ["--config", str(bench_dir / BASE_FILE)]
        for key, value in {**spec.overrides, **cell.cell.values}.items():
            cmd += ["--set", f"{key}={json.dumps(value)}"]
        cmd += ["--out", str(cell.dir)]
    for name in spec.trackers:
        cmd += ["--tracker", name]
    return cmd
