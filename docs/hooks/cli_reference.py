"""MkDocs hook: the command-line reference, generated from the Typer app at build time.

A page holding ``<!-- fedsim:cli -->`` gets, in its place, every command of ``fedsim.cli:app``
with its usage, arguments and options, read by mkdocs-typer2 from the Click tree Typer builds.
Its own Markdown block is not used: it parses the rendered HTML as XML, which fails on help
texts holding ``<time>``-style placeholders or ``a | b`` choices, and nests a group's commands
below heading level 6. Here each command is one level-2 section (``fedsim deploy certs``) and
those characters are escaped.
"""

from __future__ import annotations

from typing import Any

MARKER = "<!-- fedsim:cli -->"


def _escape(text: str) -> str:
    return " ".join(text.split()).replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def _table(header: str, rows: list[str]) -> str:
    cells = header.count("|") - 1
    return "\n".join([header, "|" + " --- |" * cells, *rows]) if rows else ""


def _command(node: Any, path: str) -> list[str]:
    """One command's section: what it does, its usage line, its arguments and options."""
    arguments = [f"| `{a.name}` | {_escape(a.description)} | {'yes' if a.required else ''} |"
                 for a in node.arguments]
    options = []
    for o in node.options:
        default = "required" if o.required else (f"`{o.default}`" if o.default else "")
        options.append(f"| `{o.name}` | {_escape(o.description)} | {default} |")
    parts = [f"## `{path}`", _escape(node.description), f"`{node.usage}`" if node.usage else "",
             _table("| argument | meaning | required |", arguments),
             _table("| option | meaning | default |", options)]
    section = "\n\n".join(p for p in parts if p)
    return [section] + [part for sub in node.subcommands for part in _command(sub, f"{path} {sub.name}")]


def cli_reference() -> str:
    """Every command of ``fedsim`` and its subcommands, one level-2 section each."""
    from mkdocs_typer2.pretty import build_tree_from_click_app

    tree = build_tree_from_click_app("fedsim.cli", "fedsim")
    return "\n\n".join(part for sub in tree.subcommands for part in _command(sub, f"fedsim {sub.name}")) + "\n"


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """MkDocs event: replace the marker with the generated reference."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_reference())
