"""A benchmark grid: axes of config values whose product is the set of cells.

An axis is a config key and its values. Four have short names — ``strategies``
(``strategy.name``), ``tasks`` (``task.name``), ``alpha`` (``partitioning.alpha``) and
``seeds`` (``seed``) — and any other config key can be an axis too
(``federation.local_epochs: [1, 5]``, ``task.params.objective: [simclr, barlow]``). Axes are
ordered strategy, task, alpha, the others as given, seed last; a cell's directory name lists
its values in that order (``strategy=fedavg,task=image,alpha=0.1,seed=0``).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from fedsim.config import ConfigError

# short axis name -> (config key, its label in tables and cell names)
NAMED_AXES = {"strategies": ("strategy.name", "strategy"), "tasks": ("task.name", "task"),
              "alpha": ("partitioning.alpha", "alpha"), "seeds": ("seed", "seed")}
LABELS = {key: label for key, label in NAMED_AXES.values()}
FIRST = ("strategy.name", "task.name", "partitioning.alpha")
SEED = "seed"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def label_of(key: str) -> str:
    """A config key's short label: ``federation.local_epochs`` -> ``local_epochs``,
    ``model.name`` -> ``model``, ``strategy.name`` -> ``strategy``."""
    if key in LABELS:
        return LABELS[key]
    parts = key.split(".")
    return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]


@dataclass(frozen=True)
class Axis:
    """One grid axis: a config key and the values it takes."""

    key: str
    values: tuple[Any, ...]
    label: str

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "values": list(self.values)}


@dataclass(frozen=True)
class Cell:
    """One point of the grid: a value per axis (config key -> value) and its directory name."""

    name: str
    values: dict[str, Any]

    def labelled(self, axes: tuple[Axis, ...]) -> dict[str, Any]:
        """``{axis label: value}`` in axis order."""
        return {a.label: self.values[a.key] for a in axes}


def parse_list(text: str, name: str) -> list[Any]:
    """Values of a ``--alpha 0.1,1.0``-style flag (each read as YAML; ``[1, 5]`` also works)."""
    text = text.strip()
    if text.startswith("["):
        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"grid {name}: cannot read {text!r}; give values as a,b,c or [a, b, c]") from None
    else:
        values = [_scalar(part) for part in text.split(",") if part.strip()]
    if not isinstance(values, list) or not values:
        raise ConfigError(f"grid {name}: empty list; give at least one value, e.g. --{name} a,b")
    return values


def _scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text.strip())
    except yaml.YAMLError:
        return text.strip()


def axis_from(name: str, values: Any) -> Axis:
    """An :class:`Axis` from a grid entry (``seeds``, ``federation.local_epochs``, ...)."""
    if name in NAMED_AXES:
        key, label = NAMED_AXES[name]
    elif "." in name or name == SEED:
        key, label = name, label_of(name)
    else:
        raise ConfigError(f"grid: unknown axis {name!r}; use {', '.join(NAMED_AXES)} or a config key such as "
                          "federation.local_epochs")
    if not isinstance(values, list):
        values = [values]
    if not values:
        raise ConfigError(f"grid {name}: empty list; give at least one value")
    seen: list[str] = []
    for v in values:
        if not isinstance(v, (str, int, float, bool)):
            raise ConfigError(f"grid {name}: values must be names or numbers (got {v!r})")
        text = json.dumps(v)
        if text in seen:
            raise ConfigError(f"grid {name}: {v!r} appears twice")
        seen.append(text)
    return Axis(key=key, values=tuple(values), label=label)


def order_axes(axes: list[Axis]) -> tuple[Axis, ...]:
    """Strategy, task, alpha, the others as given, seed last; labels made unique."""
    keys = [a.key for a in axes]
    for key in set(keys):
        if keys.count(key) > 1:
            raise ConfigError(f"grid: {key} is given twice (e.g. as a named axis and as a config key)")

    def rank(axis: Axis) -> tuple[int, int]:
        if axis.key in FIRST:
            return 0, FIRST.index(axis.key)
        return (2, 0) if axis.key == SEED else (1, 0)  # sorted() is stable: others keep their order

    ordered = sorted(axes, key=rank)
    labels = [a.label for a in ordered]
    return tuple(a if labels.count(a.label) == 1 else Axis(a.key, a.values, a.key) for a in ordered)


def expand(axes: tuple[Axis, ...]) -> list[Cell]:
    """Every combination of the axes' values, with unique directory names."""
    cells = []
    for combo in itertools.product(*(a.values for a in axes)):
        values = {a.key: v for a, v in zip(axes, combo)}
        name = ",".join(f"{a.label}={_safe(v)}" for a, v in zip(axes, combo)) or "run"
        cells.append(Cell(name=name, values=values))
    names = [c.name for c in cells]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"grid: two cells would share the directory {name!r}; make the values distinct")
    return cells


def _safe(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return _UNSAFE.sub("_", text)


def grid_axes(section: Mapping[str, Any] | None, flags: Mapping[str, str | None],
              extra: list[str]) -> tuple[Axis, ...]:
    """The axes of a YAML ``grid:`` section, replaced by the CLI flags given
    (``flags``: ``strategies``/``tasks``/``alpha``/``seeds`` -> comma list) and ``--axis
    KEY=V1,V2`` entries."""
    entries: dict[str, Any] = {}
    if section is not None:
        if not isinstance(section, Mapping):
            raise ConfigError("grid: must be a mapping of axis -> list of values, e.g. seeds: [0, 1, 2]")
        entries.update(section)
    for name, text in flags.items():
        if text is not None:
            entries[name] = parse_list(text, name)
    for item in extra:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--axis {item!r}: expected KEY=V1,V2, e.g. federation.local_epochs=1,5")
        entries[key.strip()] = parse_list(text, key.strip())
    return order_axes([axis_from(name, values) for name, values in entries.items()])
