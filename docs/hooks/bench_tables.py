"""MkDocs hook: a reproduction page shows its committed bench's tables as `fedsim report` wrote them.

A page line ``<!-- fedsim:bench benchmarks/results/<dir> -->`` is replaced, at build time,
by the ``bench.md`` of that directory (relative to the repository root) in a collapsed
block: its tables of every metric with CIs, the paired differences, the cost per run and
the provenance. Rerunning ``fedsim report benchmarks/results/<dir>`` after a bench (or a
change to the report code) therefore updates the page on the next ``mkdocs build``, and the
prose around the marker quotes numbers the reader can check right below. A marker naming a
directory without ``bench.md`` fails the build. Hand-written because the snippets extension
would paste the file verbatim, with its own top-level heading, into the page's outline.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

MARKER = re.compile(r"^<!-- fedsim:bench (\S+) -->$", flags=re.MULTILINE)
ROOT = Path(__file__).resolve().parents[2]


def bench_block(bench_dir: str, root: Path = ROOT) -> str:
    """The ``bench.md`` of ``root / bench_dir`` as a collapsed admonition: its title line
    dropped, its ``##`` headings turned into bold lines, every line indented under the block."""
    path = root / bench_dir / "bench.md"
    if not path.is_file():
        raise FileNotFoundError(f"{path.relative_to(root)} not found: run `fedsim report {bench_dir}` "
                                f"(or the bench) first, or fix the marker")
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            continue
        if line.startswith("## "):
            line = f"**{line[3:].strip()}**"
        lines.append(f"    {line}" if line.strip() else "")
    title = f"The committed bench: {bench_dir}/bench.md, as fedsim report writes it"
    return f'??? info "{title}"\n\n' + "\n".join(lines).strip("\n") + "\n"


def expand(markdown: str, root: Path = ROOT) -> str:
    """Every bench marker of a page replaced by its block."""
    return MARKER.sub(lambda m: bench_block(m.group(1), root), markdown)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """MkDocs event: expand the page's bench markers."""
    return expand(markdown)
