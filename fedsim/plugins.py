"""Loading plugins: fedsim's built-in plugin packages and the user's ``plugins:`` modules.

Importing a plugin module runs its ``@register_task``/``@register_model``/
``@register_strategy`` decorators; :mod:`fedsim.registry` itself imports nothing of fedsim's
and lists the built-in plugins lazily, so a run needs no loading step: asking a registry for
a name imports that plugin's module only. :func:`builtin_listing` reads the decorators from
the built-in plugins' source instead, so ``fedsim list`` names them without importing torch.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from fedsim.registry import MODELS, STRATEGIES, TASKS

# The packages holding fedsim's built-in plugins (fedsim.registry.BUILTIN lists them).
BUILTIN_PACKAGES = ("fedsim.models", "fedsim.strategies", "fedsim.tasks")
# Registration decorator -> the registry's kind (fedsim.registry).
DECORATORS = {"register_strategy": "strategy", "register_task": "task", "register_model": "model"}


def load_plugins() -> None:
    """Import every registered plugin's module (torchvision, torchaudio and all): what a
    listing of every plugin's class needs; a run needs only its own (the registry imports
    each on first use)."""
    for registry in (STRATEGIES, TASKS, MODELS):
        for name in registry.names():
            registry.get(name)


def import_plugins(modules: Iterable[str]) -> None:
    """Import each of the user's plugin modules; one-line :class:`ValueError` naming the module
    and the exception (a ``SystemExit`` raised by a plugin is an error too, not an exit).

    The working directory is put on ``sys.path`` first, as ``python -m fedsim`` has it, so
    ``fedsim`` finds a plugin module beside the experiment file the same way (and Ray's
    workers inherit the path).
    """
    modules = list(modules)
    if modules and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ValueError(f"plugin module {module!r} cannot be imported: {err}") from None
        except (Exception, SystemExit) as err:  # the plugin's own code failed
            raise ValueError(f"plugin module {module!r} failed while being imported: "
                             f"{type(err).__name__}: {err}") from None


def builtin_listing() -> dict[str, dict[str, str]]:
    """Kind (``strategy``, ``task``, ``model``) -> {name: first line of its docstring} of the
    built-in plugins, sorted by name: what ``Registry.describe`` gives once
    :func:`load_plugins` ran, read from the source without importing it.

    It finds the ``@register_*("name", ...)`` decorators of the modules in
    :data:`BUILTIN_PACKAGES` (a test checks the two agree).
    """
    return {kind: {name: found.doc for name, found in named.items()} for kind, named in _scan().items()}


def builtin_experimental() -> dict[str, dict[str, str]]:
    """Task name -> its ``experimental`` class attribute (objective -> the measured reason),
    read from the source like :func:`builtin_listing`; tasks with none are left out."""
    return {name: found.experimental for name, found in _scan()["task"].items() if found.experimental}


def builtin_targets() -> dict[str, dict[str, str]]:
    """Kind -> {name: ``"module:attribute"`` its decorator registers}, read from the source:
    what :data:`fedsim.registry.BUILTIN` must list (a test compares them)."""
    return {kind: {name: found.target for name, found in named.items()} for kind, named in _scan().items()}


class _Found(NamedTuple):
    doc: str  # first line of the docstring
    experimental: dict[str, str]  # a class's ``experimental`` literal
    target: str  # "module:attribute"


def _scan() -> dict[str, dict[str, _Found]]:
    found: dict[str, dict[str, _Found]] = {kind: {} for kind in DECORATORS.values()}
    for package in BUILTIN_PACKAGES:
        spec = importlib.util.find_spec(package)  # imports only the fedsim package itself
        for folder in spec.submodule_search_locations if spec and spec.submodule_search_locations else ():
            for path in sorted(Path(folder).glob("*.py")):
                for kind, name, node in _registrations(path):
                    doc = ast.get_docstring(node, clean=False)
                    found[kind][name] = _Found(doc.strip().splitlines()[0] if doc else "", _experimental(node),
                                               f"{package}.{path.stem}:{node.name}")
    return {kind: dict(sorted(named.items())) for kind, named in found.items()}


def _registrations(path: Path) -> Iterable[tuple[str, str, ast.ClassDef | ast.FunctionDef]]:
    """(kind, name, decorated class or function) of each registration decorator in the
    module at ``path``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if not isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            continue
        for deco in node.decorator_list:
            if (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Name) and deco.func.id in DECORATORS
                    and deco.args and isinstance(deco.args[0], ast.Constant)):
                yield DECORATORS[deco.func.id], deco.args[0].value, node


def _experimental(node: ast.ClassDef | ast.FunctionDef) -> dict[str, str]:
    """The class body's ``experimental = {...}`` literal, else ``{}``."""
    for stmt in node.body if isinstance(node, ast.ClassDef) else ():
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else (
            stmt.target if isinstance(stmt, ast.AnnAssign) else None)
        if isinstance(target, ast.Name) and target.id == "experimental" and stmt.value is not None:
            return dict(ast.literal_eval(stmt.value))
    return {}


def allowed_plugins(requested: Iterable[str], own: str | None) -> list[str]:
    """The plugin modules a worker node may import for a run: those the run asks for, each of
    which the node's own config lists (``own``: comma-separated, the node setting
    ``plugins``). A module the node does not list is a :class:`ValueError`: plugins are code,
    and the run's records come from the server, not from the node's owner."""
    listed = {m.strip() for m in (own or "").split(",") if m.strip()}
    requested = list(requested)
    foreign = [m for m in requested if m not in listed]
    if foreign:
        raise ValueError(f"the run asks this node to import plugin module(s) {', '.join(foreign)}, which this "
                         "node's own config does not list; start it with --plugins naming them if you trust them")
    return requested
