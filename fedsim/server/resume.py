"""Checks on a run directory before a run starts in it or resumes it (no Ray needed).

``fedsim run`` calls these before Flower's runtime starts, so a wrong ``--out`` or
``--resume`` costs one line (exit 2) instead of a user's files or a silently wrong run:

* :func:`check_new_run_dir` — ``--out`` must be new, or an empty directory; a directory
  with a fedsim run in it is refused with a hint to ``--resume`` it; any other non-empty
  directory, or a file, is refused.
* :func:`resume_config_path` — ``--resume`` needs a fedsim run directory with its
  ``config.yaml``.
* :func:`check_resumable` — the checkpoint is readable and fits the config (strategy,
  model, task, parameter names and shapes), and ``rounds.jsonl`` agrees with it. The loop
  writes a round's line before its checkpoint, so ``rounds.jsonl`` may run one round
  ahead of the checkpoint (that round is redone). Without a checkpoint, a run directory
  with nothing past round 1 restarts from round 0, losing at most that one interrupted
  round; one with more completed rounds is refused (its checkpoint was removed, and
  continuing would wipe the rounds).

``RoundLoop._restore`` relies on these checks having passed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from fedsim.config import ConfigError, ExperimentConfig
from fedsim.server.outputs import (CHECKPOINT_FILE, CONFIG_FILE, ROUNDS_FILE, SUMMARY_FILE, first_non_finite,
                                   is_run, read_checkpoint, read_rounds)
from fedsim.factory import strategy_for, task_for

IDENTITY_KEY = "identity"  # checkpoint entry: what the checkpoint was trained as (see identity())


def identity(exp: ExperimentConfig) -> dict[str, str]:
    """What a checkpoint records about the run that wrote it, compared on resume."""
    return {"strategy": exp.strategy.name, "model": exp.model.name, "task": exp.task.name}


def check_new_run_dir(run_dir: Path) -> None:
    """Refuse an ``--out`` that a new run would clobber or cannot create (:class:`ConfigError`):
    a run or other files in it, a file, a dangling link, or a folder (or read-only
    filesystem) where no file can be created, which is tried with a temporary file."""
    if run_dir.is_dir():
        if is_run(run_dir):
            raise ConfigError(f"out: {run_dir} already holds a run; choose another --out, or --resume {run_dir}")
        if any(run_dir.iterdir()):
            raise ConfigError(f"out: {run_dir} is not empty and holds no fedsim run; "
                              "choose a new or empty directory")
        _check_writable(run_dir, run_dir)
        return
    existing = run_dir
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():
            raise ConfigError(f"out: {existing} is a link to {os.readlink(existing)}, which does not exist; "
                              "choose another --out")
        existing = existing.parent
    if existing == run_dir or not existing.is_dir():
        raise ConfigError(f"out: {existing} is a file, not a directory; choose another --out")
    _check_writable(existing, run_dir)


def _check_writable(folder: Path, run_dir: Path) -> None:
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ConfigError(f"out: cannot create {run_dir}: no file can be written in {folder} "
                          f"({err.strerror or err}); choose another --out") from None


def resume_config_path(run_dir: Path) -> Path:
    """The ``config.yaml`` of the fedsim run in ``run_dir`` (:class:`ConfigError` if none)."""
    if not run_dir.is_dir():
        raise ConfigError(f"resume: {run_dir} is not a directory; give the run directory of an earlier run")
    if not is_run(run_dir):
        raise ConfigError(f"resume: {run_dir} holds no fedsim run (no {ROUNDS_FILE})")
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"resume: {path} is missing; a run cannot be resumed without its config")
    return path


def check_resumable(run_dir: Path, exp: ExperimentConfig) -> None:
    """Refuse to resume ``run_dir`` under ``exp`` unless its checkpoint fits (:class:`ConfigError`)."""
    completed = max((int(r.get("round", 0)) for r in read_rounds(run_dir)), default=0)
    state = read_checkpoint(run_dir)  # RunDirError (a ConfigError) when unreadable
    if state is None:
        if completed > 1:  # round 1's line may precede its checkpoint; later lines may not
            raise ConfigError(f"resume: {run_dir / ROUNDS_FILE} has {completed} completed rounds but there is no "
                              f"{CHECKPOINT_FILE} to continue from; start a new run with another --out")
        return  # the run restarts from round 0
    _check_identity(state.get(IDENTITY_KEY), exp)
    _check_arrays(state["global"], exp)
    bad = first_non_finite({"global": state["global"], "strategy": state["strategy"]})
    if bad is not None:
        raise ConfigError(f"resume: {run_dir / CHECKPOINT_FILE} (round {state['round']}) holds a non-finite "
                          f"tensor {bad} (NaN or inf); it cannot be continued, start a new run")
    _check_strategy_state(state["strategy"], exp)
    last = int(state["round"])
    if not last <= completed <= last + 1:  # the line of round last + 1 may precede its checkpoint
        raise ConfigError(f"resume: {ROUNDS_FILE} ends at round {completed} but {CHECKPOINT_FILE} is from "
                          f"round {last}; the run directory is inconsistent")
    if exp.federation.rounds < last:
        raise ConfigError(f"federation.rounds: {exp.federation.rounds} is fewer than the {last} rounds this run "
                          f"completed; choose at least {last}")


def is_finished(run_dir: Path, exp: ExperimentConfig) -> bool:
    """Whether the run in ``run_dir`` (checked by :func:`check_resumable`) already completed
    ``exp``'s rounds and wrote its summary: resuming it has nothing to do."""
    completed = max((r["round"] for r in read_rounds(run_dir)), default=0)
    return (run_dir / SUMMARY_FILE).is_file() and completed >= exp.federation.rounds


def _check_identity(recorded: Any, exp: ExperimentConfig) -> None:
    if not isinstance(recorded, dict):  # written before checkpoints recorded it: arrays decide
        return
    for key, name in identity(exp).items():
        if recorded.get(key) != name:
            raise ConfigError(f"resume: {CHECKPOINT_FILE} was written by {key} {recorded.get(key)!r} but "
                              f"{CONFIG_FILE} says {name!r}; resume with the config the run started with")


def _check_arrays(arrays: dict[str, Any], exp: ExperimentConfig) -> None:
    import torch  # here, not at the top: `fedsim report` imports this module without needing torch

    with torch.random.fork_rng(devices=[]):
        expected = task_for(exp).build_model().state_dict()
    missing = [k for k in expected if k not in arrays]
    unexpected = [k for k in arrays if k not in expected]
    if missing or unexpected:
        raise ConfigError(f"resume: {CHECKPOINT_FILE} holds another model than {CONFIG_FILE}'s "
                          f"{exp.model.name!r} on task {exp.task.name!r} (missing: {_few(missing)}; "
                          f"unexpected: {_few(unexpected)})")
    for name, want in expected.items():
        got = arrays[name]
        if not isinstance(got, torch.Tensor) or got.shape != want.shape or got.dtype != want.dtype:
            shown = f"{list(got.shape)} {got.dtype}" if isinstance(got, torch.Tensor) else type(got).__name__
            raise ConfigError(f"resume: {CHECKPOINT_FILE}'s {name} is {shown} but {CONFIG_FILE}'s model "
                              f"has {list(want.shape)} {want.dtype}")


def _check_strategy_state(state: Any, exp: ExperimentConfig) -> None:
    try:
        strategy_for(exp).load_state_dict(state)
    except Exception as err:  # any strategy's own loader: report it in one line
        raise ConfigError(f"resume: {CHECKPOINT_FILE}'s strategy state does not fit strategy "
                          f"{exp.strategy.name!r} ({type(err).__name__})") from None


def _few(names: list[str], limit: int = 3) -> str:
    if not names:
        return "none"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
