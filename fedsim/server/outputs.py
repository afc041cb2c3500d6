"""Everything a run writes under its run directory.

``config.yaml`` (resolved), ``rounds.jsonl`` (one line per round, flushed as it happens),
``checkpoint.pt`` (global model + strategy state + round, atomically replaced each round),
``data.json`` (the task's data: source, sizes, held-out items), ``best_<metric>.pt`` (the
global model at the best value of each tracked metric, atomically replaced when it
improves), and at the end ``metrics.csv``, ``summary.json``, ``model.pt`` and the figure of
the curves, ``curves.png`` and ``curves.pdf``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedsim.atomic import as_disk_full, atomic_write_bytes
from fedsim.config import ConfigError

if TYPE_CHECKING:
    import torch

CONFIG_FILE = "config.yaml"
ROUNDS_FILE = "rounds.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"
METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CURVES_FILE = "curves.png"  # and the same figure as curves.pdf
BEST_FILE = "best_{metric}.pt"
DATA_FILE = "data.json"


CHECKPOINT_KEYS = ("round", "global", "strategy", "failed_streak")


class RunDirError(ConfigError):
    """A run directory that cannot be used as asked (foreign files, a corrupt checkpoint)."""


class NonFiniteCheckpoint(RuntimeError):
    """A checkpoint about to be written holds NaN or inf; the previous one is kept."""


def first_non_finite(value: Any, where: str = "") -> str | None:
    """The key path of the first floating tensor in ``value`` (nested dicts, lists and
    tuples of a checkpoint: the global model and the strategy's state) with a NaN or inf,
    else ``None``."""
    import torch  # here, not at the top: `fedsim report` reads run directories without torch

    if isinstance(value, torch.Tensor):
        finite = not value.is_floating_point() or value.numel() == 0 or bool(torch.isfinite(value).all())
        return None if finite else where
    if isinstance(value, float):
        return None if math.isfinite(value) else where
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, child in items:
        found = first_non_finite(child, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def default_run_dir(exp: Any) -> Path:
    """Where a run of ``exp`` (an ExperimentConfig) without ``out`` writes: ``runs/<time>-<strategy>``."""
    return Path(f"runs/{time.strftime('%Y%m%d-%H%M%S')}-{exp.strategy.name}")


def is_run(run_dir: str | os.PathLike[str]) -> bool:
    """Whether ``run_dir`` holds a fedsim run, finished or partial (it has ``rounds.jsonl``)."""
    return (Path(run_dir) / ROUNDS_FILE).is_file()


def read_checkpoint(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The checkpoint in ``run_dir``, or ``None`` if there is none.

    Raises :class:`RunDirError` (one line) if it cannot be read as a fedsim checkpoint.
    """
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        return None
    import torch  # here, not at the top: `fedsim report` reads run directories without torch

    try:
        state = torch.load(path, weights_only=True)
    except Exception as err:  # torch raises many types here; its text suggests unsafe loading
        raise RunDirError(f"{path} is not a readable checkpoint ({type(err).__name__}: corrupt, "
                          "truncated or not written by fedsim)") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing or not isinstance(state["global"], dict):
        raise RunDirError(f"{path} is not a fedsim checkpoint (no {', '.join(missing) or 'global model'})")
    return state


def read_rounds(run_dir: Path) -> list[dict[str, Any]]:
    """The complete lines of ``rounds.jsonl``: a last line without its newline (cut by a
    crash) is ignored; any other line that is not a round record raises :class:`RunDirError`
    naming its line number."""
    path = Path(run_dir) / ROUNDS_FILE
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as err:
        raise RunDirError(f"{path} cannot be read as text ({type(err).__name__}); restore it from a backup") from None
    lines = text.split("\n")
    rows = []
    for number, line in enumerate(lines[:-1], start=1):  # lines[-1]: after the last newline
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            row = None
        if not isinstance(row, dict) or type(row.get("round")) is not int:
            raise RunDirError(f"{path} line {number} is not a round record (a JSON object with an integer "
                              "'round'); remove or restore that line")
        rows.append(row)
    return rows


def json_safe(value: Any) -> Any:
    """JSON-safe: NaN/inf become null so every line parses with any JSON reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


class RunWriter:
    """Writes one run's outputs; the only code that touches the run directory."""

    def __init__(self, run_dir: str | os.PathLike[str], config_yaml: str, *, resume: bool = False) -> None:
        """Open ``run_dir``; a new run needs it new, empty or holding a fedsim run (which
        it replaces), so a user's own files are never overwritten (:class:`RunDirError`)."""
        self.dir = Path(run_dir)
        if not resume and self.dir.is_dir() and not is_run(self.dir) and any(self.dir.iterdir()):
            raise RunDirError(f"out: {self.dir} is not empty and holds no fedsim run; "
                              "choose a new or empty directory")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict[str, Any]] = []
        if resume:
            self.rows = read_rounds(self.dir)
        else:
            (self.dir / CONFIG_FILE).write_text(config_yaml)
            (self.dir / ROUNDS_FILE).write_text("")

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The last complete round's state, or ``None`` if no round completed.

        Raises :class:`RunDirError` for an unreadable checkpoint; ``fedsim.server.resume``
        checks that it fits the config before a resumed run starts.
        """
        return read_checkpoint(self.dir)

    def truncate_after(self, last_round: int) -> None:
        """Drop lines of rounds after ``last_round`` (an interrupted round is redone)."""
        self.rows = [r for r in self.rows if r["round"] <= last_round]
        text = "".join(json.dumps(r) + "\n" for r in self.rows)
        atomic_write_bytes(self.dir / ROUNDS_FILE, lambda fh: fh.write(text.encode()))

    def round(self, row: dict[str, Any]) -> None:
        """Append one round's record to ``rounds.jsonl`` (flushed to disk)."""
        row = json_safe(row)
        try:  # a line cut short by a full disk has no newline: read_rounds ignores it
            with open(self.dir / ROUNDS_FILE, "a") as fh:
                fh.write(json.dumps(row) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as err:
            raise (as_disk_full(err, self.dir / ROUNDS_FILE) or err) from None
        self.rows.append(row)

    def checkpoint(self, state: dict[str, Any]) -> None:
        """Atomically replace ``checkpoint.pt`` with ``state``; a state with a NaN or inf
        tensor is refused (:class:`NonFiniteCheckpoint`) and the previous checkpoint kept."""
        bad = first_non_finite({"global": state.get("global"), "strategy": state.get("strategy")})
        if bad is not None:
            raise NonFiniteCheckpoint(f"round {state.get('round')}: checkpoint tensor {bad} is not finite (NaN or "
                                      f"inf); not written, {self.dir / CHECKPOINT_FILE} keeps the previous round")
        import torch

        atomic_write_bytes(self.dir / CHECKPOINT_FILE, lambda fh: torch.save(state, fh))

    def describe_data(self, description: dict[str, Any]) -> None:
        """Write ``data.json``: where the task's data came from and what was held out."""
        (self.dir / DATA_FILE).write_text(json.dumps(json_safe(description), indent=1) + "\n")

    def best_model(self, metric: str, arrays: dict[str, torch.Tensor]) -> None:
        """Atomically replace ``best_<metric>.pt`` with ``arrays``."""
        import torch

        atomic_write_bytes(self.dir / BEST_FILE.format(metric=metric), lambda fh: torch.save(arrays, fh))

    def finish(self, summary: dict[str, Any], final_arrays: dict[str, torch.Tensor],
               metrics: Mapping[str, bool]) -> None:
        """Write ``model.pt``, ``metrics.csv``, ``curves.png``/``.pdf`` and, last and whole,
        ``summary.json`` (``metrics``: the task's declared metrics, name -> higher is better, one
        panel each). The summary marks a finished run (``fedsim deploy run`` waits for it,
        ``--resume`` checks it), so it appears only once every other output is in place, and
        never half-written to a reader polling for it."""
        import torch

        atomic_write_bytes(self.dir / MODEL_FILE, lambda fh: torch.save(final_arrays, fh))
        self._metrics_csv()
        plot_curves(self.rows, self.dir / CURVES_FILE, metrics, title=run_title(self.dir, summary))
        text = json.dumps(json_safe(summary), indent=2) + "\n"
        atomic_write_bytes(self.dir / SUMMARY_FILE, lambda fh: fh.write(text.encode()))

    def _metrics_csv(self) -> None:
        scalar_keys: list[str] = []
        for row in self.rows:
            for k, v in row.items():
                if not isinstance(v, (dict, list)) and k not in scalar_keys:
                    scalar_keys.append(k)
        with open(self.dir / METRICS_FILE, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=scalar_keys, extrasaction="ignore")
            writer.writeheader()
            writer.writerows({k: csv_value(v) for k, v in row.items()} for row in self.rows)


def csv_value(value: Any) -> Any:
    """A CSV cell: booleans as ``true``/``false`` (as in JSON), not Python's ``True``."""
    return ("true" if value else "false") if isinstance(value, bool) else value


def run_title(run_dir: Path, summary: Mapping[str, Any]) -> str:
    """A figure's title: the run's name and directory, strategy, task and seed (those known)."""
    name = summary.get("name") or run_dir.name
    title = name if name == run_dir.name else f"{name} ({run_dir.name})"
    if summary.get("strategy") and summary.get("task"):
        title += f": {summary['strategy']} on {summary['task']}"
    return title + (f", seed {summary['seed']}" if summary.get("seed") is not None else "")


def arrow(higher_is_better: bool | None) -> str:
    """``↑`` (higher is better), ``↓`` (lower is better) or nothing (not known)."""
    return "" if higher_is_better is None else " ↑" if higher_is_better else " ↓"


def plot_curves(rows: list[dict[str, Any]], path: Path, metrics: Mapping[str, bool | None] | Sequence[str], *,
                title: str | None = None) -> list[Path]:
    """Write :func:`curves_figure` as ``path`` (PNG) and the same name with ``.pdf``; returns both paths."""
    import matplotlib.pyplot as plt

    fig = curves_figure(rows, metrics, title=title)
    paths = [path, path.with_suffix(".pdf")]
    for out in paths:
        fig.savefig(out, dpi=150)
    plt.close(fig)
    return paths


def curves_figure(rows: list[dict[str, Any]], metrics: Mapping[str, bool | None] | Sequence[str], *,
                  title: str | None = None) -> Any:
    """Training loss, then one panel per declared metric (held-out, per evaluated round) with
    its round-0 baselines (``<metric>_<what>``) as dashed lines; ``metrics``: name -> higher
    is better (``None`` or a plain list: direction not known), shown as ↑/↓ in the titles.
    Every panel shares one x axis from round 0 (the initial model) to the last round, with
    integer ticks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    directions = dict(metrics) if isinstance(metrics, Mapping) else dict.fromkeys(metrics)
    fig, axes = plt.subplots(1, 1 + len(directions), figsize=(4.5 * (1 + len(directions)), 4), squeeze=False,
                             sharex=True)
    ax_loss, panels = axes[0][0], axes[0][1:]
    train = [r for r in rows if r.get("round", 0) > 0 and r.get("train_loss") is not None]
    ax_loss.plot([r["round"] for r in train], [r["train_loss"] for r in train], marker="o")
    ax_loss.set(ylabel="mean client training loss", title=f"training loss{arrow(False)}")
    row0 = rows[0] if rows and rows[0].get("round") == 0 else {}
    for ax, (name, higher) in zip(panels, directions.items()):
        pts = [(r["round"], r[name]) for r in rows if r.get(name) is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", label="global encoder")
        for key, value in row0.items():
            if key.startswith(f"{name}_") and isinstance(value, (int, float)):
                ax.axhline(value, linestyle="--", color="grey", label=key.removeprefix(f"{name}_"))
        ax.set(ylabel=name, title=f"{name}{arrow(higher)} (held-out)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=8)
    last = max((int(r.get("round", 0)) for r in rows), default=1)
    for ax in axes[0]:
        ax.set_xlabel("round (0 = initial model)")
        ax.set_xlim(-0.25, max(1, last) + 0.25)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
