"""Where a result came from: the one function that describes the software, machine and
command behind a run or a bench, written into ``summary.json``, ``bench.json`` and shown
in ``report.html`` and ``bench.md``.

Versions are read from the installed distributions' metadata (no import of torch or Ray,
so a report stays light); the git commit is asked of ``git`` only when the fedsim package
sits in a git checkout, with a short timeout, and left out otherwise.
"""

from __future__ import annotations

import datetime as _dt
import platform
import shlex
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import fedsim

# distribution -> provenance key (fedsim's own version is fedsim.version(), written in one place)
PACKAGES = {"flwr": "flwr_version", "torch": "torch_version", "ray": "ray_version"}
GIT_TIMEOUT_SECONDS = 2.0
KEY = "provenance"  # the summary's key that holds it


def _installed(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def git_commit(path: Path | None = None) -> str | None:
    """``git rev-parse HEAD`` of the checkout holding ``path`` (default: the fedsim package),
    or ``None`` outside a checkout, without git, or when git does not answer in time."""
    where = path or Path(fedsim.__file__).resolve().parent.parent
    if not any((p / ".git").exists() for p in (where, *where.parents)):
        return None
    try:
        proc = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = proc.stdout.strip()
    return commit if proc.returncode == 0 and commit else None


def now_utc() -> str:
    """The current time, ISO 8601 in UTC to the second (``2026-01-31T12:00:00Z``)."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def provenance(*, device: str | None = None, argv: Sequence[str] | None = None,
               started_at: str | None = None) -> dict[str, Any]:
    """Versions (fedsim, flwr, torch, ray, Python), the git commit when fedsim runs from a
    checkout, the command line, the start time (ISO UTC), the host and the training device."""
    out: dict[str, Any] = {"fedsim_version": fedsim.version()}
    out.update({key: _installed(dist) for dist, key in PACKAGES.items()})
    out["python_version"] = platform.python_version()
    commit = git_commit()
    if commit is not None:
        out["git_commit"] = commit
    words = list(sys.argv if argv is None else argv)
    if words and Path(words[0]).name in ("fedsim", "__main__.py"):
        words[0] = "fedsim"
    out["command"] = shlex.join(words)
    out["started_at"] = started_at or now_utc()
    out["host"] = socket.gethostname()
    if device is not None:
        out["device"] = device
    return out


def describe(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The provenance of one run, or of many (a bench's cells), as ``{key: text}``: a key
    whose value differs between records lists the distinct values (``; ``-separated); start
    times give the first and the last; several command lines are counted, not listed."""
    keys = list(dict.fromkeys(k for r in records for k in r))
    out = {}
    for key in keys:
        values = list(dict.fromkeys(str(r[key]) for r in records if r.get(key) is not None))
        if key == "started_at" and len(values) > 1:
            out[key] = f"{min(values)} … {max(values)}"
        elif key == "command" and len(values) > 1:
            out[key] = f"{len(values)} command lines (each run's summary.json has its own)"
        else:
            out[key] = "; ".join(values) if values else "–"
    return out
