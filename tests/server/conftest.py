"""Real simulations shared by the server tests: each (engine, strategy, tag) runs once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fedsim.config import load_config
from fedsim.launcher import simulate
from fedsim.server.callbacks import RoundCallback

SMALL = {
    "federation.clients": 6, "federation.clients_per_round": 3, "federation.rounds": 3,
    "task.params": {"image_size": 12, "min_samples": 16, "max_samples": 24},
    "evaluation.every": 3,
}


def small_config(**extra: object):
    return load_config(None, {**SMALL, **extra})


def small_yaml(path: Path, **extra: object) -> Path:
    """Write the resolved small config as YAML (for runs started as a subprocess)."""
    path.write_text(small_config(**extra).to_yaml())
    return path


def read_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "rounds.jsonl").read_text().splitlines()]


class HookLog(RoundCallback):
    """Every hook the round loop called, in order, with what it passed."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def on_begin(self, loop) -> None:
        self.calls.append(("on_begin", loop.last_round))

    def after_round(self, loop, row) -> None:
        self.calls.append(("after_round", dict(row)))

    def on_end(self, loop, summary) -> None:
        self.calls.append(("on_end", dict(summary)))

    def on_close(self, loop, *, completed) -> None:
        self.calls.append(("on_close", completed))


@pytest.fixture(scope="session")
def simulated(tmp_path_factory):
    """``simulated(engine, strategy="fedavg", tag="a")`` -> run dir of a finished small run;
    ``simulated.hooks[run_dir]``: the round-loop callback calls of that run (:class:`HookLog`)."""
    cache: dict[tuple[str, str, str], Path] = {}

    def run(engine: str, strategy: str = "fedavg", tag: str = "a") -> Path:
        key = (engine, strategy, tag)
        if key not in cache:
            run_dir = tmp_path_factory.mktemp(f"{engine}-{strategy}-{tag}") / "run"
            run.hooks[run_dir] = HookLog()
            simulate(small_config(**{"engine.name": engine, "strategy.name": strategy}),
                     str(run_dir), quiet=True, callbacks=[run.hooks[run_dir]])
            cache[key] = run_dir
        return cache[key]

    run.hooks = {}
    return run


__all__ = ["SMALL", "read_rows", "small_config", "small_yaml", "yaml"]
