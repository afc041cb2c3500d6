"""Loading plugins: fedsim's built-in plugin packages and the user's ``plugins:`` modules.

Importing a plugin module runs its ``@register_task``/``@register_model``/
``@register_strategy`` decorators; :mod:`fedsim.registry` itself imports nothing of fedsim's.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable


def load_plugins() -> None:
    """Import every built-in plugin package so their registrations run."""
    import fedsim.models  # noqa: F401
    import fedsim.strategies  # noqa: F401
    import fedsim.tasks  # noqa: F401


def import_plugins(modules: Iterable[str]) -> None:
    """Import each of the user's plugin modules (importable on every worker); one-line error."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ValueError(f"plugin module {module!r} cannot be imported: {err}") from None
