"""Loading plugins: fedsim's built-in plugin packages and the user's ``plugins:`` modules.

Importing a plugin module runs its ``@register_task``/``@register_model``/
``@register_strategy`` decorators; :mod:`fedsim.registry` itself imports nothing of fedsim's.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable


def load_plugins() -> None:
    """Import every built-in plugin package so their registrations run."""
    import fedsim.models  # noqa: F401
    import fedsim.strategies  # noqa: F401
    import fedsim.tasks  # noqa: F401


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
