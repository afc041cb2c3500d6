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


@dataclass(frozen=True)
class ModelInfo:
    """What the rest of fedsim needs to know about a registered backbone (after timm's
    pretrained configs): the inputs it takes and how it is trained.

    Attributes
    ----------
    input
        ``"image"``: ``(n, in_channels, s, s)`` tensors (spectrograms count as 1-channel images);
        ``"video"``: ``(n, in_channels, t, s, s)`` clips; ``"av"``: the cardio task's timeline
        streams (built by that task only).
    min_size
        Smallest input side the model accepts.
    fixed_size
        The model's shape depends on the input side (an MLP): its factory takes ``image_size``.
    repopt
        A plain RepOpt model whose gradients are masked by its ``scale_*`` buffers
        (``federation.optimizer: repopt-sgd``).
    hyper_search
        Its factory runs RepOpt Hyper-Search at build time and takes ``proxy`` data
        (:class:`fedsim.optim.repopt.ProxyData`) from the task that trains it.
    """

    input: str = "image"
    min_size: int = 8
    fixed_size: bool = False
    repopt: bool = False
    hyper_search: bool = False


class UnknownNameError(ValueError):
    """Raised when a name is not registered; the message lists the allowed names."""


@dataclass
class Registry:
    """A mapping from user-facing name to a factory, with one-line descriptions."""

    kind: str
    _entries: dict[str, Callable[..., Any]] = field(default_factory=dict)
    _info: dict[str, Any] = field(default_factory=dict)

    def register(self, name: str, info: Any = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Return a decorator registering ``obj`` under ``name``, with optional metadata ``info``."""

        def decorator(obj: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            self._info[name] = info
            return obj

        return decorator

    def info(self, name: str) -> Any:
        """The metadata registered with ``name`` (``None`` if none was given)."""
        self.get(name)
        return self._info[name]

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


def register_model(name: str, **info: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a backbone factory ``f(in_channels=..., **options) -> nn.Module`` (with an
    ``out_dim`` attribute) under ``name``; ``info`` are :class:`ModelInfo` fields."""
    return MODELS.register(name, ModelInfo(**info))


def repopt_models() -> list[str]:
    """Registered plain RepOpt backbones (trained with ``repopt-sgd``); the plugins that
    register them must be loaded (:func:`fedsim.plugins.load_plugins`)."""
    return [n for n in MODELS.names() if MODELS.info(n).repopt]
