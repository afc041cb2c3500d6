"""Explicit name registries for strategies, tasks, models and engines (after timm's ``_registry.py``).

A plugin registers itself with a decorator under the name users type::

    @register_strategy("fedavg")
    class FedAvg(ReducibleStrategy): ...

The built-in plugins are also listed in :data:`BUILTIN` as lazy references
(``"module:attribute"``): a registry knows their names without importing them, and
:meth:`Registry.get` imports a plugin's module the first time it is asked for, so a run
imports only the task, model and strategy it uses (a synthetic MLP run never loads
torchvision). A test checks :data:`BUILTIN` against the decorators in the source.

This module is a leaf: it imports nothing of fedsim's (``importlib`` resolves a reference).
"""

from __future__ import annotations

import importlib
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


@dataclass(frozen=True)
class LazyRef:
    """A registered object not imported yet: ``"package.module:attribute"``."""

    target: str

    def load(self) -> Any:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)


@dataclass
class Registry:
    """A mapping from user-facing name to a factory, with one-line descriptions."""

    kind: str
    _entries: dict[str, Any] = field(default_factory=dict)
    _info: dict[str, Any] = field(default_factory=dict)

    def register(self, name: str, info: Any = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Return a decorator registering ``obj`` under ``name``, with optional metadata ``info``.

        A name listed lazily (:meth:`register_lazy`) is taken by the object it refers to
        when that object's module runs the decorator; any other name registered twice is an
        error (a plugin cannot replace a built-in)."""

        def decorator(obj: Callable[..., Any]) -> Callable[..., Any]:
            entry = self._entries.get(name)
            if entry is not None and not (isinstance(entry, LazyRef) and entry.target == _target_of(obj)):
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            self._info[name] = info
            return obj

        return decorator

    def register_lazy(self, name: str, target: str) -> None:
        """List ``name`` as ``target`` (``"module:attribute"``), imported on first :meth:`get`."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = LazyRef(target)

    def info(self, name: str) -> Any:
        """The metadata registered with ``name`` (``None`` if none was given)."""
        self.get(name)
        return self._info.get(name)

    def get(self, name: str) -> Any:
        """Return the factory registered under ``name``, importing its module on first use."""
        try:
            entry = self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}"
            ) from None
        if isinstance(entry, LazyRef):
            obj = entry.load()  # its module's decorator usually replaced the reference already
            if isinstance(self._entries[name], LazyRef):
                self._entries[name] = obj
            entry = self._entries[name]
        return entry

    def is_loaded(self, name: str) -> bool:
        """Whether ``name``'s module has been imported (a lazy reference not yet resolved: no)."""
        return name in self._entries and not isinstance(self._entries[name], LazyRef)

    def names(self) -> list[str]:
        """Registered names, sorted (lazy ones included, without importing them)."""
        return sorted(self._entries)

    def describe(self) -> dict[str, str]:
        """Name -> first line of the docstring of each entry imported so far (a lazy one is left
        out: :func:`fedsim.plugins.builtin_listing` reads those from the source)."""
        return {n: (doc.strip().splitlines()[0] if (doc := self.get(n).__doc__) else "")
                for n in self.names() if self.is_loaded(n)}


def _target_of(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '')}:{getattr(obj, '__qualname__', '')}"


STRATEGIES = Registry("strategy")
TASKS = Registry("task")
MODELS = Registry("model")
ENGINES = Registry("engine")

register_strategy = STRATEGIES.register
register_task = TASKS.register
register_engine = ENGINES.register


def register_model(name: str, **info: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a backbone factory ``f(in_channels=..., **options) -> nn.Module`` (with an
    ``out_dim`` attribute) under ``name``; ``info`` are :class:`ModelInfo` fields."""
    return MODELS.register(name, ModelInfo(**info))


def repopt_models() -> list[str]:
    """Registered plain RepOpt backbones (trained with ``repopt-sgd``); imports every
    registered model's module to read its :class:`ModelInfo`."""
    return [n for n in MODELS.names() if MODELS.info(n).repopt]


# The built-in plugins by kind: name -> "module:attribute" of the object its decorator registers.
BUILTIN: dict[str, dict[str, str]] = {
    "strategy": {
        "fedadagrad": "fedsim.strategies.fedopt:FedAdagrad",
        "fedadam": "fedsim.strategies.fedopt:FedAdam",
        "fedavg": "fedsim.strategies.fedavg:FedAvg",
        "fedavgm": "fedsim.strategies.fedavgm:FedAvgM",
        "fedprox": "fedsim.strategies.fedprox:FedProx",
        "fedrepopt": "fedsim.strategies.fedrepopt:FedRepOpt",
        "fedvssl": "fedsim.strategies.fedvssl:FedVSSL",
        "fedyogi": "fedsim.strategies.fedopt:FedYogi",
        "krum": "fedsim.strategies.krum:Krum",
        "ldawa": "fedsim.strategies.ldawa:LDAWA",
        "median": "fedsim.strategies.median:Median",
        "trimmed-mean": "fedsim.strategies.trimmed_mean:TrimmedMean",
    },
    "task": {
        "audio": "fedsim.tasks.audio:AudioTask",
        "audio_image": "fedsim.tasks.audio_image:AudioImageTask",
        "cardio": "fedsim.tasks.cardio:CardioTask",
        "image": "fedsim.tasks.image:ImageTask",
        "synthetic": "fedsim.tasks.synthetic:SyntheticTask",
        "video": "fedsim.tasks.video:VideoTask",
    },
    "model": {
        "audio_inceptionnext": "fedsim.models.audio_inceptionnext:audio_inceptionnext",
        "audio_rep_inceptionnext": "fedsim.models.audio_inceptionnext:audio_rep_inceptionnext",
        "cardionet_lite": "fedsim.models.cardionet:cardionet_lite",
        "mlp": "fedsim.models.mlp:mlp",
        "r2plus1d_small": "fedsim.models.video3d:r2plus1d_small",
        "r3d_small": "fedsim.models.video3d:r3d_small",
        "repghost": "fedsim.models.repghost:repghost",
        "repghost_csla": "fedsim.models.repghost:repghost_csla",
        "repghost_hs": "fedsim.models.repghost:repghost_hs",
        "repopt_vgg": "fedsim.models.repopt_vgg:repopt_vgg",
        "repvgg_csla": "fedsim.models.repopt_vgg:repvgg_csla",
        "repvgg_hs": "fedsim.models.repopt_vgg:repvgg_hs",
        "resnet_small": "fedsim.models.resnet:resnet_small",
        "van_lka": "fedsim.models.van:van_lka",
        "van_lska": "fedsim.models.van:van_lska",
    },
    "engine": {
        "cohort": "fedsim.engines.cohort:CohortEngine",
        "flower": "fedsim.engines.flower:FlowerEngine",
    },
}
REGISTRIES = {r.kind: r for r in (STRATEGIES, TASKS, MODELS, ENGINES)}
for _kind, _named in BUILTIN.items():
    for _name, _target in _named.items():
        REGISTRIES[_kind].register_lazy(_name, _target)
