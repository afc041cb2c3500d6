"""The bench's tables: per declared metric, mean ± std and 95 % CI over seeds for every
combination of the other axes, with the initial encoder and the round-0 baselines beside,
then the paired comparison over the seeds both ran: of each strategy against a reference
strategy, or, in a grid of one strategy, of each varied axis's values against its first value
(α × SWA, modalities, encoders); the cost of a run (process time, throughput, bytes); and the
provenance of the results. Rendered as markdown (``bench.md``) and, by
:mod:`fedsim.bench.html`, as HTML."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fedsim.bench.results import CellResult
from fedsim.bench.stats import Summary, paired, summarize

SEED_LABEL = "seed"
STRATEGY_LABEL = "strategy"
DEFAULT_REFERENCE = "fedavg"
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


def reference_strategy(cells: Sequence[CellResult]) -> str | None:
    """The strategy others are compared with: fedavg when the grid has it, else its first
    strategy; ``None`` unless the cells ran at least two strategies."""
    names = list(dict.fromkeys(c.values.get(STRATEGY_LABEL) for c in cells if STRATEGY_LABEL in c.values))
    if len(names) < 2:
        return None
    return DEFAULT_REFERENCE if DEFAULT_REFERENCE in names else names[0]


def _signed(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:+.{digits}f}"


def comparisons(cells: Sequence[CellResult], labels: Sequence[str]) -> list[tuple[str, Any]]:
    """The paired comparisons a bench reports, as (axis label, reference value): each strategy
    against :func:`reference_strategy` when the cells ran several; otherwise every axis of
    ``labels`` with two or more values against its first value in grid order."""
    reference = reference_strategy(cells)
    if reference is not None:
        return [(STRATEGY_LABEL, reference)]
    out = []
    for label in labels:
        values = list(dict.fromkeys(c.values.get(label) for c in cells))
        if len(values) > 1:
            out.append((label, values[0]))
    return out


def paired_table(cells: Sequence[CellResult], labels: Sequence[str], metric: str, reference: Any,
                 axis: str = STRATEGY_LABEL) -> Table:
    """Per combination of the other axes, each value of ``axis`` (by default each strategy):
    its final ``metric`` minus the ``reference`` value's, seed by seed over the seeds both
    ran: the differences, their mean and 95 % CI, and the paired t-test's p-value."""
    having = [c for c in cells if metric in c.metrics]
    others = [lb for lb in labels if lb != axis]
    rows = []
    for key, members in groups(having, others).items():
        by_value = groups(members, [axis])
        ref = {c.values.get(SEED_LABEL): c.summary.get(metric) for c in by_value.get((reference,), [])}
        for (name,), runs in by_value.items():
            if name == reference:
                continue
            mine = {c.values.get(SEED_LABEL): c.summary.get(metric) for c in runs}
            seeds = [seed for seed in mine if seed in ref]
            result = paired((mine[seed], ref[seed]) for seed in seeds)
            per_seed = "; ".join(f"{seed}: {_signed(mine[seed] - ref[seed])}" for seed in seeds
                                 if mine[seed] is not None and ref[seed] is not None)
            rows.append([str(v) for v in key] + [str(name), str(result.n if result else 0), per_seed or "–",
                                                 _signed(result.mean if result else None),
                                                 "–" if result is None or result.low is None else
                                                 f"[{_signed(result.low)}, {_signed(result.high)}]",
                                                 "–" if result is None or result.p is None else f"{result.p:.3g}"])
    higher = next((c.higher_is_better.get(metric) for c in having if metric in c.higher_is_better), True)
    against = reference if axis == STRATEGY_LABEL else f"{axis}={reference}"
    note = (f"Δ = {axis} − {against}, final {metric}, per seed over the seeds both ran (n), the other axes "
            f"equal; mean Δ with its 95 % CI from the t-distribution (n − 1 degrees of freedom) and the "
            f"two-sided paired t-test's p; {'positive' if higher else 'negative'} Δ is better; p needs two seeds "
            f"whose Δ differ")
    return Table(title=f"{metric}: paired difference against {against}",
                 headers=[*others, axis, "n", "Δ per seed", "mean Δ", "95 % CI", "p"], rows=rows, note=note)


def cost_table(cells: Sequence[CellResult], labels: Sequence[str]) -> Table:
    """Per group (means over seeds): rounds, the cell's process time, the round loop's time,
    the cell's overhead, client-updates/s, MB down and up per run."""
    headers = [*labels, "n", "rounds", "process s", "loop s", "overhead s", "client-updates/s", "MB down", "MB up"]
    rows = []
    for key, members in groups(cells, labels).items():
        rows.append([str(v) for v in key] + [
            str(len(members)), _mean(members, lambda c: c.summary.get("rounds"), 0),
            _mean(members, lambda c: c.process_seconds, 1),
            _mean(members, lambda c: c.summary.get("wall_seconds"), 1),
            _mean(members, lambda c: c.summary.get("cell_overhead_seconds"), 1),
            _mean(members, lambda c: c.summary.get("updates_per_s"), 1),
            _mean(members, lambda c: _mb(c.summary.get("bytes_down")), 2),
            _mean(members, lambda c: _mb(c.summary.get("bytes_up")), 2)])
    note = ("means over seeds; process s: wall time of the cell's fedsim run processes from start to exit "
            "(imports, Ray start-up and every invocation of a resumed cell included, failed attempts not; – when "
            "the bench runner did not time it); loop s: the round loop of the run's last invocation; "
            "overhead s: the cell's wall time in the bench minus its rounds' (start-up, initial evaluation, end); "
            "bytes: tensor payload per run, counted per client (see docs/guides/benchmarking.md); MB = 10^6 bytes")
    return Table(title="cost per run", headers=headers, rows=rows, note=note)


def incomplete_table(cells: Sequence[CellResult]) -> Table | None:
    """The finished cells whose runs lost clients: rounds with failed or rejected clients,
    their totals, skipped rounds (too few updates to aggregate) and the first error message;
    ``None`` when every round of every cell aggregated all its sampled clients."""
    rows = []
    for cell in cells:
        trained = [r for r in cell.rounds if r.get("round", 0) > 0]
        hit = [r for r in trained if r.get("clients_failed") or r.get("clients_rejected") or r.get("skipped")]
        if not hit:
            continue
        errors = [msg for r in hit for msg in (r.get("errors") or {}).values()]
        rows.append([cell.name, f"{len(hit)} of {len(trained)}", str(sum(int(r.get("clients_failed") or 0) for r in hit)),
                     str(sum(int(r.get("clients_rejected") or 0) for r in hit)),
                     str(sum(bool(r.get("skipped")) for r in hit)), str(errors[0]).replace("|", "\\|")[:120] if errors else "–"])
    if not rows:
        return None
    note = ("a cell listed here finished, but some rounds aggregated fewer clients than were sampled (failed: an error or "
            "timeout on the client; rejected: an update the server refused) or were skipped; its numbers are not those "
            "of the full cohort. Every round's details: 'failed', 'rejected' and 'errors' in the cell's rounds.jsonl")
    return Table(title="cells that lost clients", headers=["cell", "rounds hit", "clients failed", "clients rejected",
                                                             "rounds skipped", "first error"], rows=rows, note=note)


def provenance_table(own: Mapping[str, Any] | None, runs: Sequence[Mapping[str, Any]]) -> Table:
    """Versions, commit, command, start time, host and device: of the bench's own command
    (``own``, from ``bench.json``) beside those of its runs, or of one run (``own=None``)."""
    from fedsim.provenance import describe

    ran = describe([r for r in runs if r])
    if own is None:
        return Table(title="provenance", headers=["key", "value"], rows=[[k, v] for k, v in ran.items()])
    mine = describe([own])
    keys = list(dict.fromkeys([*mine, *ran]))
    return Table(title="provenance", headers=["key", "bench command", "its runs"],
                 rows=[[k, mine.get(k, "–"), ran.get(k, "–")] for k in keys],
                 note="bench command: the last fedsim bench that wrote bench.json; its runs: the cells' "
                      "summary.json (distinct values; a resumed cell: its last process)")


def _mb(value: Any) -> float | None:
    return None if value is None else float(value) / MB


def bench_tables(cells: Sequence[CellResult], labels: Sequence[str], target: tuple[str, float] | None,
                 reference: str | None = None) -> list[Table]:
    """Every metric's table, each followed by its paired comparisons (:func:`comparisons`; or
    each strategy against ``reference`` when given); then the cost table."""
    pairs = [(STRATEGY_LABEL, reference)] if reference is not None else comparisons(cells, labels)
    tables = []
    for metric in metric_names(cells):
        tables.append(metric_table(cells, labels, metric, target))
        tables += [paired_table(cells, labels, metric, ref, axis) for axis, ref in pairs]
    return [*tables, cost_table(cells, labels)]


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
