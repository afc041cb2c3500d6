"""A protocol for ratios between systems on a machine whose speed moves: repetitions run
interleaved (every system once per repetition, the order rotated each time, so a slow
minute hurts all systems alike), each repetition gives one ratio per system against the
reference, and the report is the median ratio with its range over the repetitions.

As a library (``benchmarks/throughput.py`` and others can pass their own ``measure``)::

    values = interleaved(["raw", "pfl", "fedsim"], lambda system, rep: run_one(system), repetitions=3)
    print(ratio_text(ratios(values, "fedsim", "pfl")))  # "1.24× [1.20–1.43]"

As a command, wall seconds of shell commands (lower is better, so a ratio below 1 means the
system is faster than the reference, the first one)::

    python benchmarks/ratios.py --repetitions 3 \\
        --system "before=FEDSIM_BENCH_HOSTS=0 fedsim bench ... --out /tmp/b-{rep}-before" \\
        --system "after=fedsim bench ... --out /tmp/b-{rep}-after"

``{rep}`` in a command is replaced by the repetition's number; the JSON of every value and
ratio goes to ``--json`` when given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence


def interleaved(systems: Sequence[str], measure: Callable[[str, int], float],
                repetitions: int = 3) -> dict[str, list[float]]:
    """``measure(system, repetition)`` for every system in every repetition, interleaved, the
    order rotated by one each repetition; values by system, in repetition order."""
    values: dict[str, list[float]] = {s: [0.0] * repetitions for s in systems}
    for rep in range(repetitions):
        shift = rep % len(systems)
        for system in [*systems[shift:], *systems[:shift]]:
            values[system][rep] = float(measure(system, rep))
    return values


def ratios(values: dict[str, list[float]], system: str, reference: str) -> dict[str, object]:
    """``system ÷ reference`` per repetition (paired by repetition), their median and range."""
    per_rep = [a / b for a, b in zip(values[system], values[reference]) if b]
    if not per_rep:
        return {"per_repetition": [], "median": None, "min": None, "max": None}
    return {"per_repetition": per_rep, "median": statistics.median(per_rep), "min": min(per_rep),
            "max": max(per_rep)}


def ratio_text(r: dict[str, object], digits: int = 2) -> str:
    """``"1.24× [1.20–1.43]"`` (median, then the range over repetitions)."""
    if r["median"] is None:
        return "n/a"
    return f"{r['median']:.{digits}f}× [{r['min']:.{digits}f}–{r['max']:.{digits}f}]"


def wall_seconds(command: str) -> float:
    """Seconds ``command`` (a shell line) takes; a failing command is an error."""
    started = time.perf_counter()
    subprocess.run(command, shell=True, check=True)
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--system", action="append", required=True, metavar="NAME=COMMAND",
                        help="a system and its shell command; the first is the reference")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--json", help="write every value and ratio here")
    args = parser.parse_args(argv)
    commands = dict(s.split("=", 1) for s in args.system)
    names = list(commands)
    values = interleaved(names, lambda name, rep: wall_seconds(commands[name].replace("{rep}", str(rep))),
                         args.repetitions)
    reference = names[0]
    report = {"seconds": values, "ratios": {n: ratios(values, n, reference) for n in names[1:]}}
    for name in names:
        line = f"{name}: {statistics.median(values[name]):.1f} s median of {values[name]}"
        if name != reference:
            line += f"; ÷ {reference}: {ratio_text(report['ratios'][name])}"
        print(line)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
