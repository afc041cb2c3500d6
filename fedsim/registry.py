"""Explicit name registries for strategies, tasks and models (after timm's ``_registry.py``).

A plugin registers itself with a decorator under the name users type::

    @register_strategy("fedavg")
    class FedAvg(ReducibleStrategy): ...

``fedsim list`` and the registry-wide tests read these registries, so a new plugin is
listed and tested without touching either. Registration happens when the plugin module is
imported; the package ``__init__`` of each plugin folder imports its modules explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class UnknownNameError(ValueError):
    """Raised when a name is not registered; the message lists the allowed names."""


@dataclass
class Registry:
    """A mapping from user-facing name to a factory, with one-line descriptions."""

    kind: str
    _entries: dict[str, Callable[..., Any]] = field(default_factory=dict)

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Return a decorator registering ``obj`` under ``name``."""

        def decorator(obj: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> Callable[..., Any]:
        """Return the factory registered under ``name``."""
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def describe(self) -> dict[str, str]:
        """Name -> first line of the factory's docstring."""
        return {n: (self._entries[n].__doc__ or "").strip().splitlines()[0] if self._entries[n].__doc__ else ""
                for n in self.names()}


STRATEGIES = Registry("strategy")
TASKS = Registry("task")
MODELS = Registry("model")

register_strategy = STRATEGIES.register
register_task = TASKS.register
register_model = MODELS.register


def load_plugins() -> None:
    """Import every built-in plugin package so their registrations run."""
    import fedsim.models  # noqa: F401
    import fedsim.strategies  # noqa: F401
    import fedsim.tasks  # noqa: F401
