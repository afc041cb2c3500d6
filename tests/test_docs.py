"""The README and the documentation site: size, links, no citations of files outside the
repository, and the generated reference pages covering what the code accepts.

``mkdocs build --strict`` itself (every page built, every link and anchor resolved) runs in
``make test`` after pytest (``make docs``); these checks need no mkdocs.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _hook(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail into docs/"


def test_readme_links_resolve_to_files_in_the_repository():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t)]
    assert len(targets) > 20  # the docs table links every page
    missing = [t for t in targets if not (ROOT / t.split("#")[0]).is_file()]
    assert missing == []


def test_no_committed_file_cites_a_file_outside_the_repository():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    # Built by concatenation so that this file does not match itself.
    outside = ["DESIGN" + ".md", "STYLE" + ".md", "../" + "shared", "anchor_" + "flower_vs_raw", "anchor_" + "pfl.py"]
    found = subprocess.run(["git", "grep", "-I", "-l", "-F", *sum((["-e", p] for p in outside), []), "--", "."],
                           cwd=ROOT, capture_output=True, text=True)
    assert found.returncode in (0, 1), found.stderr
    assert found.stdout.split() == []


def test_experiment_reference_lists_every_key_the_config_accepts():
    from fedsim.config import ExperimentConfig
    from fedsim.registry import STRATEGIES, TASKS

    page = _hook("experiment_reference").experiment_reference()
    keys = set(re.findall(r"^\| `([^`]+)` \|", page, flags=re.MULTILINE))
    expected = set()
    for name, field in ExperimentConfig.model_fields.items():
        sub = getattr(field.annotation, "model_fields", None)
        expected |= {f"{name}.{k}" for k in sub} if sub else {name}
    for registry, prefix in ((TASKS, "task.params."), (STRATEGIES, "strategy.params.")):
        for name in registry.names():
            expected |= {prefix + k for k in registry.get(name).Params.model_fields}
    assert expected - keys == set()
    assert "`federation.clients` | int | `20` | ≥ 1, ≤ 10,000,000 |" in page  # type, default, bounds


def test_cli_reference_lists_every_command_with_escaped_help():
    from fedsim.cli import app

    page = _hook("cli_reference").cli_reference()
    commands = [c.name or c.callback.__name__ for c in app.registered_commands]
    commands += [g.name for g in app.registered_groups]
    assert commands and all(re.search(rf"^## `fedsim {c}`$", page, flags=re.MULTILINE) for c in commands)
    assert "runs/&lt;time&gt;-&lt;strategy&gt;" in page  # placeholders survive as text, not tags


def test_a_bench_marker_becomes_the_bench_tables_in_a_collapsed_block(tmp_path):
    # Prepare: a bench directory with a bench.md as `fedsim report` writes it
    hook = _hook("bench_tables")
    bench = tmp_path / "benchmarks" / "results" / "b"
    bench.mkdir(parents=True)
    (bench / "bench.md").write_text("# fedsim bench: b\n\nintro\n\n## knn_top1 (primary)\n\n| a | b |\n| --- | --- |\n"
                                    "| 1 | 2 |\n", encoding="utf-8")
    page = "text\n\n<!-- fedsim:bench benchmarks/results/b -->\n\nmore\n"
    # Execute
    out = hook.expand(page, root=tmp_path)
    # Assert: the title line dropped, the heading bold, every line indented under the block
    assert out == ('text\n\n??? info "The committed bench: benchmarks/results/b/bench.md, as fedsim report writes it"'
                   "\n\n    intro\n\n    **knn_top1 (primary)**\n\n    | a | b |\n    | --- | --- |\n    | 1 | 2 |\n"
                   "\n\nmore\n")
    with pytest.raises(FileNotFoundError, match="benchmarks/results/missing/bench.md not found"):
        hook.expand("<!-- fedsim:bench benchmarks/results/missing -->", root=tmp_path)


def test_every_bench_marker_in_the_docs_names_a_committed_bench():
    hook = _hook("bench_tables")
    named = [m.group(1) for page in (ROOT / "docs").rglob("*.md") for m in hook.MARKER.finditer(page.read_text())]
    assert len(named) >= 11
    assert [d for d in named if not (ROOT / d / "bench.md").is_file()] == []


TABLE_MARKER = re.compile(r"<!-- table: python (benchmarks/\S+\.py) (--table[^>]*?) -->\n\n?((?:\|.*\n)+)")


def test_every_table_marked_as_made_by_a_script_is_what_the_script_prints():
    """A ``<!-- table: python benchmarks/X.py --table ... -->`` line is followed by exactly the
    table that command prints from the committed JSON (numbers copied by hand drift)."""
    marked = [(page, m) for page in sorted((ROOT / "docs").rglob("*.md"))
              for m in TABLE_MARKER.finditer(page.read_text(encoding="utf-8"))]
    assert len(marked) >= 3
    for page, m in marked:
        script, args, table = m.groups()
        printed = subprocess.run([sys.executable, script, *args.split()], cwd=ROOT, capture_output=True,
                                 text=True, timeout=120, check=True).stdout
        assert printed.strip() == table.strip(), f"{page.relative_to(ROOT)}: the table under `{script} {args}`"
