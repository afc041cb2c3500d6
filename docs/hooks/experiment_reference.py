"""MkDocs hook: the experiment-file reference, generated from the pydantic models at build time.

A page that holds the marker ``<!-- fedsim:experiment-file -->`` gets, in its place, one
table per section of :class:`fedsim.config.ExperimentConfig` and one per registered task's
and strategy's ``Params``, read from their JSON schemas. The page therefore cannot drift from
the code: a new field, default or bound shows up on the next ``mkdocs build``. Hand-written
because mkdocstrings renders classes, not a config file's key paths with their defaults and
bounds; the schema is pydantic's own (``model_json_schema``).
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel

MARKER = "<!-- fedsim:experiment-file -->"

_BOUNDS = (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<"))


def _type(prop: dict[str, Any]) -> str:
    """A short type name: ``int``, ``float | null``, ``simclr | supervised``, ``list[str]``."""
    if "anyOf" in prop:
        return " \\| ".join(_type(p) for p in prop["anyOf"])
    if "enum" in prop:
        return " \\| ".join(str(v) for v in prop["enum"])
    if "const" in prop:
        return str(prop["const"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list[{_type(prop.get('items', {}))}]"
    if kind == "object":
        return "mapping"
    return {"integer": "int", "number": "float", "string": "str", "boolean": "bool"}.get(kind, kind)


def _number(value: float) -> str:
    return f"{value:,}" if float(value).is_integer() and abs(value) >= 1000 else f"{value:g}"


def _bounds(prop: dict[str, Any]) -> str:
    parts = [f"{sign} {_number(prop[key])}" for key, sign in _BOUNDS if key in prop]
    for alt in prop.get("anyOf", ()):
        parts += [f"{sign} {_number(alt[key])}" for key, sign in _BOUNDS if key in alt]
    return ", ".join(parts)


def _default(field: Any) -> str:
    if field.is_required():
        return "(required)"
    value = field.get_default(call_default_factory=True)
    return f"`{json.dumps(value, ensure_ascii=False, default=str)}`"


def _plain(text: str) -> str:
    """Docstring text as one Markdown line: RST roles and double backticks become code spans."""
    text = re.sub(r":(?:class|func|meth|attr):`~?([^`]+)`", r"`\1`", text)
    return " ".join(text.replace("``", "`").split())


def fields_table(model: Any, prefix: str, names: Any = None) -> str:
    """One Markdown table row per field of the pydantic ``model`` (or only ``names``): key path,
    type, default, bounds and meaning, from its JSON schema."""
    props = model.model_json_schema()["properties"]
    rows = ["| key | type | default | bounds | meaning |", "| --- | --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        if names is not None and name not in names:
            continue
        prop = props[name]
        meaning = _plain(prop.get("description", "")).replace("|", "\\|")
        rows.append(f"| `{prefix}{name}` | {_type(prop)} | {_default(field)} | {_bounds(prop)} | {meaning} |")
    return "\n".join(rows)


def _doc(cls: type, whole: bool = False) -> str:
    """A class's docstring as Markdown: its first paragraph, or every paragraph."""
    paragraphs = (cls.__doc__ or "").strip().split("\n\n")
    return "\n\n".join(_plain(p) for p in (paragraphs if whole else paragraphs[:1]))


def _sections() -> list[str]:
    from fedsim.config import FAULT_KINDS, ExperimentConfig

    sections = {name: field.annotation for name, field in ExperimentConfig.model_fields.items()
                if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)}
    top = [name for name in ExperimentConfig.model_fields if name not in sections]
    kinds = ", ".join(f"`{kind}`" for kind in FAULT_KINDS)
    out = ["## Top level", fields_table(ExperimentConfig, "", top), f"Fault kinds (`faults`): {kinds}."]
    for name, model in sections.items():
        out += [f"## `{name}`", _doc(model, whole=True), fields_table(model, f"{name}.")]
    return out


def _registered(kind: str, registry: Any, key_prefix: str) -> list[str]:
    out = []
    for name in registry.names():
        params = getattr(registry.get(name), "Params", None)
        if params is None or not params.model_fields:
            out.append(f"### `{name}`\n\nNo parameters of its own.")
            continue
        out += [f"### `{name}`", _doc(params), fields_table(params, key_prefix)]
    return [f"## {kind}"] + out


def _models(registry: Any) -> list[str]:
    rows = ["| `model.name` | input | what it is |", "| --- | --- | --- |"]
    for name, line in registry.describe().items():
        info = registry.info(name)
        text = _plain(line).replace("|", "\\|")
        rows.append(f"| `{name}` | {getattr(info, 'input', '')} | {text} |")
    return ["## Backbones (`model.name`)", "Options go in `model.params` (the factory's keyword arguments). Naming another backbone later "
            "(`--model`, `--set model.name=...`, a bench's own `model.name` or its grid axis) drops the options "
            "the file gave its own backbone.",
            "\n".join(rows)]


def experiment_reference() -> str:
    """The generated part of the experiment-file reference page, as Markdown."""
    from fedsim.plugins import load_plugins
    from fedsim.registry import MODELS, STRATEGIES, TASKS

    load_plugins()
    parts = _sections()
    parts += _registered("Task parameters (`task.params`, by `task.name`)", TASKS, "task.params.")
    parts += _models(MODELS)
    parts += _registered("Strategy parameters (`strategy.params`, by `strategy.name`)", STRATEGIES,
                         "strategy.params.")
    return "\n\n".join(p for p in parts if p) + "\n"


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """MkDocs event: replace the marker with the generated tables."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, experiment_reference())
