"""Provenance: versions, commit, command line, start time, host and device of a result."""

from __future__ import annotations

import re
import subprocess
from importlib import metadata
from pathlib import Path

import fedsim
from fedsim.provenance import describe, git_commit, provenance

KEYS = {"fedsim_version", "flwr_version", "torch_version", "ray_version", "python_version", "command",
        "started_at", "host", "device"}


def test_provenance_names_versions_command_time_host_and_device():
    found = provenance(device="cpu", argv=["/usr/bin/fedsim", "run", "--out", "a b"])

    assert KEYS <= found.keys()
    assert found["flwr_version"] == metadata.version("flwr") and found["torch_version"] == metadata.version("torch")
    said = getattr(fedsim, "version", None) or getattr(fedsim, "__version__", None)
    expected = (said() if callable(said) else said) or metadata.version("fedsim")
    assert expected and found["fedsim_version"] == expected
    assert found["command"] == "fedsim run --out 'a b'"  # quoted as a shell would need it
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", found["started_at"])
    assert found["device"] == "cpu"


def test_git_commit_is_the_checkouts_head_and_absent_outside_one(tmp_path):
    root = Path(fedsim.__file__).resolve().parent.parent
    in_checkout = any((p / ".git").exists() for p in (root, *root.parents))

    commit = git_commit()

    if in_checkout:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
        assert commit == head.stdout.strip() and ("git_commit" in provenance()) == bool(commit)
    assert git_commit(tmp_path) is None or any((p / ".git").exists() for p in tmp_path.parents)


def test_describe_many_runs_lists_distinct_values_and_the_first_and_last_start():
    a = {"host": "a", "command": "fedsim run x", "started_at": "2026-01-01T00:00:00Z", "device": "cpu"}
    b = {"host": "b", "command": "fedsim run y", "started_at": "2025-12-31T23:00:00Z", "device": "cpu"}

    text = describe([a, b])

    assert text == {"host": "a; b", "command": "2 command lines (each run's summary.json has its own)",
                    "started_at": "2025-12-31T23:00:00Z … 2026-01-01T00:00:00Z", "device": "cpu"}
