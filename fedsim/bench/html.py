"""One self-contained ``report.html``: the tables and the PNGs (embedded as base64), inline CSS,
no external assets, so the file can be mailed or attached as it is."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from fedsim.bench.tables import Table

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 0.3em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; }
td:first-child, th:first-child { text-align: left; }
p.note { color: #555; font-size: 0.85em; margin-top: 0; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table.rows)
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    return f"<h2>{html.escape(table.title)}</h2>\n<table><tr>{head}</tr>{body}</table>\n{note}\n"


def image_html(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}"><figcaption>' \
           f"{html.escape(path.name)}</figcaption></figure>\n"


def write_html(path: Path, title: str, intro: Sequence[str], tables: Sequence[Table], images: Sequence[Path],
               extra_tables: Sequence[Table] = ()) -> None:
    """Write ``path``: heading, intro paragraphs, tables, images, then ``extra_tables`` folded."""
    parts = [f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    parts += [f"<p>{html.escape(line)}</p>" for line in intro if line]
    parts += [table_html(t) for t in tables]
    if images:
        parts.append("<h2>plots</h2>")
        parts += [image_html(p) for p in images]
    for table in extra_tables:
        parts.append(f"<details><summary>{html.escape(table.title)}</summary>{table_html(table)}</details>")
    parts.append("</body></html>\n")
    path.write_text("\n".join(parts), encoding="utf-8")
