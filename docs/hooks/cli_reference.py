"""MkDocs hook: the command-line reference, generated from the Typer app at build time.

A page holding ``<!-- fedsim:cli -->`` gets, in its place, every command of ``fedsim.cli:app``
with its usage, arguments and options, read by mkdocs-typer2 from the Click tree Typer builds.
Its own Markdown block is not used because it parses the rendered HTML as XML, which fails on
help texts holding ``<time>``-style placeholders or ``a | b`` choices; here those are escaped
before the tables are written.
"""

from __future__ import annotations

import re
from typing import Any

MARKER = "<!-- fedsim:cli -->"


def _escape(text: str) -> str:
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def _escape_tree(node: Any) -> None:
    node.description = _escape(node.description)
    for item in (*node.arguments, *node.options, *node.commands):
        item.description = _escape(item.description)
    for sub in node.subcommands:
        _escape_tree(sub)


def cli_reference() -> str:
    """Every command of ``fedsim``, as Markdown whose headings start at level 2."""
    from mkdocs_typer2.pretty import build_tree_from_click_app, tree_to_markdown

    tree = build_tree_from_click_app("fedsim.cli", "fedsim")
    _escape_tree(tree)
    markdown = tree_to_markdown(tree)
    return re.sub(r"^(#+) ", r"#\1 ", markdown, flags=re.MULTILINE)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """MkDocs event: replace the marker with the generated reference."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, cli_reference())
