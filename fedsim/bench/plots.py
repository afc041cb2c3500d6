"""The bench's figures, each as PNG (embedded in ``report.html``) and PDF: the primary metric
against the round (one line per series value — the strategy, or the first axis that varies —
mean over seeds with a ± std band; one figure per combination of the other axes), and bars
of the final primary metric (mean ± std with every seed's value as a point over its bar, the
y range fitted to the values so that differences show). Legends sit outside the data."""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedsim.bench.results import CellResult
from fedsim.bench.stats import summarize
from fedsim.bench.tables import groups
from fedsim.server.outputs import arrow

_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def series_label(labels: Sequence[str], cells: Sequence[CellResult]) -> str | None:
    """The axis drawn as separate lines/bars: ``strategy`` if it varies, else the first that varies."""
    varying = [lb for lb in labels if len({repr(c.values.get(lb)) for c in cells}) > 1]
    if "strategy" in varying or (not varying and "strategy" in labels):
        return "strategy"
    return varying[0] if varying else None


def _save(fig: Any, path: Path) -> Path:
    """Write ``path`` (PNG) and the same figure as PDF, legend included; close the figure."""
    for out in (path, path.with_suffix(".pdf")):
        fig.savefig(out, dpi=150, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def _legend_outside(ax: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def fitted_range(values: Sequence[float], margin: float = 0.15) -> tuple[float, float]:
    """A y range around ``values`` with ``margin`` of their span on each side (not from 0, so
    that differences between bars show; a span of 0 gets ±5 % of the value, or ±1)."""
    low, high = min(values), max(values)
    pad = (high - low) * margin or abs(high) * 0.05 or 1.0
    return low - pad, high + pad


def _spread(k: int, n: int, width: float) -> float:
    """The ``k``-th of ``n`` offsets spread evenly over ``width`` (so seed points sit side by side)."""
    return 0.0 if n < 2 else (k / (n - 1) - 0.5) * width


def _key_text(labels: Sequence[str], key: tuple[Any, ...]) -> str:
    return ",".join(f"{lb}={v}" for lb, v in zip(labels, key))


def mean_curve(members: Sequence[CellResult], metric: str) -> tuple[list[int], list[float], list[float]]:
    """Rounds every member evaluated ``metric`` at, the mean there and the std (0 for one seed)."""
    curves = [dict(c.curve(metric)) for c in members]
    rounds = sorted(set.intersection(*(set(cv) for cv in curves))) if curves else []
    means = [statistics.fmean(cv[r] for cv in curves) for r in rounds]
    stds = [statistics.stdev(cv[r] for cv in curves) if len(curves) > 1 else 0.0 for r in rounds]
    return rounds, means, stds


def curve_plots(cells: Sequence[CellResult], labels: Sequence[str], out_dir: Path) -> list[Path]:
    """One PNG per combination of the non-series axes: primary metric vs round per series value."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    series = series_label(labels, cells)
    panel_labels = [lb for lb in labels if lb != series]
    paths = []
    for key, members in groups(cells, panel_labels).items():
        metric = members[0].primary
        if metric is None:
            continue
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for value, line_cells in groups(members, [series] if series else []).items():
            rounds, means, stds = mean_curve(line_cells, metric)
            if not rounds:
                continue
            name = f"{value[0]}" if value else "run"
            (line,) = ax.plot(rounds, means, marker="o", label=f"{name} (n={len(line_cells)})")
            ax.fill_between(rounds, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                            color=line.get_color(), alpha=0.2)
        for what in sorted({w for c in members for w in c.baselines(metric)}):
            s = summarize(c.baselines(metric).get(what) for c in members)
            if s is not None:
                ax.axhline(s.mean, linestyle="--", color="grey", linewidth=1)
                ax.annotate(what, (0, s.mean), textcoords="offset points", xytext=(2, 3), fontsize=8, color="grey")
        text = _key_text(panel_labels, key)
        higher = next((c.higher_is_better.get(metric) for c in members if metric in c.higher_is_better), None)
        ax.set(xlabel="round (0 = initial model)", ylabel=f"{metric}{arrow(higher)}",
               title=f"{metric}{arrow(higher)}: mean ± std over seeds" + (f"\n{text}" if text else ""))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        _legend_outside(ax)
        paths.append(_save(fig, out_dir / (f"curves_{_UNSAFE.sub('_', text)}.png" if text else "curves.png")))
    return paths


def bar_plots(cells: Sequence[CellResult], labels: Sequence[str], out_dir: Path) -> list[Path]:
    """Per primary metric, bars of its final value (mean, ± std error bars) per series value,
    grouped by the other axes, with each seed's value as a point over its bar."""
    plt = _pyplot()
    series = series_label(labels, cells)
    panel_labels = [lb for lb in labels if lb != series]
    paths = []
    for metric in dict.fromkeys(c.primary for c in cells if c.primary):
        having = [c for c in cells if c.primary == metric]
        panels = groups(having, panel_labels)
        names = list(groups(having, [series] if series else []))
        slot = 0.8 / max(1, len(names))
        fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(panels) * max(1, len(names)) * 0.6 + 2), 4.2))
        shown: list[float] = []
        for i, name in enumerate(names):
            xs, means, errs, points = [], [], [], []
            for j, members in enumerate(panels.values()):
                mine = [c for c in members if not series or (c.values.get(series),) == name]
                s = summarize(c.summary.get(metric) for c in mine)
                if s is None:
                    continue
                x = j + (i - (len(names) - 1) / 2) * slot
                xs.append(x)
                means.append(s.mean)
                errs.append(s.std or 0.0)
                seeds = [float(c.summary[metric]) for c in mine if c.summary.get(metric) is not None]
                points += [(x + _spread(k, len(seeds), slot * 0.5), y) for k, y in enumerate(seeds)]
            ax.bar(xs, means, width=slot * 0.8, yerr=errs, capsize=3, alpha=0.75,
                          label=str(name[0]) if name else "run")
            if points:
                ax.scatter(*zip(*points), s=14, color="black", zorder=3,
                           label="one seed" if i == len(names) - 1 else None)
            shown += [*(m - e for m, e in zip(means, errs)), *(m + e for m, e in zip(means, errs)),
                      *(y for _, y in points)]
        if shown:
            ax.set_ylim(*fitted_range(shown))
        ax.set_xticks(range(len(panels)), [_key_text(panel_labels, k).replace(",", "\n") or "all" for k in panels],
                      fontsize=8)
        higher = next((c.higher_is_better.get(metric) for c in having if metric in c.higher_is_better), None)
        ax.set(ylabel=f"final {metric}{arrow(higher)}",
               title=f"final {metric}: mean ± std over seeds, points: seeds (y axis not from 0)")
        ax.grid(axis="y", alpha=0.3)
        _legend_outside(ax)
        paths.append(_save(fig, out_dir / f"final_{_UNSAFE.sub('_', metric)}.png"))
    return paths
