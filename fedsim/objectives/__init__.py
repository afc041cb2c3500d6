"""Training objectives as registered parts: one module per objective, selected by name.

An objective (:class:`fedsim.objectives.base.Objective`) holds the heads it trains on the
task's encoder and its loss on the views the task produces. It registers under the name users
write in ``task.params.objective`` (or, for the video task, in ``task.params.pretext``) with
the views it needs::

    @register_objective("simclr", needs={"augmented"})
    class SimCLR(TwoViewObjective): ...

A task declares the views it produces (``views`` on the task class) and builds its objective
with :func:`build_objective`. Two objectives may share a name when they need different views
(``order`` on spectrograms and on video clips): the task's views pick one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fedsim.objectives.base import VIEWS, Objective, TwoViewObjective, ViewSource

_REGISTERED: list[type[Objective]] = []
# The built-in objectives, imported the first time the registry is used, in the order their
# choices are listed. Not at import time: the image, sound and video views they use import
# torchvision and torchaudio, which a task without objectives (synthetic) must not pay for.
BUILTIN = ("simclr", "byol", "supervised", "barlow", "spectrogram_order", "clip_order", "playback_speed",
           "colorize", "clip_contrast")
_builtins_loaded = False


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True  # first: their own register_objective calls come back here
        import importlib

        for module in BUILTIN:
            importlib.import_module(f"fedsim.objectives.{module}")


def register_objective(name: str, *, needs: Iterable[str]) -> Callable[[type[Objective]], type[Objective]]:
    """Register an :class:`Objective` subclass under ``name``, needing the views ``needs``."""
    _load_builtins()  # a plugin's objective is listed after the built-in ones
    wanted = frozenset(needs)
    unknown = sorted(wanted - set(VIEWS))
    if unknown:
        raise ValueError(f"objective {name!r} needs unknown views {unknown}; views are: {', '.join(VIEWS)}")

    def decorator(cls: type[Objective]) -> type[Objective]:
        if any(o.name == name and o.needs == wanted for o in _REGISTERED):
            raise ValueError(f"objective {name!r} needing {sorted(wanted)} is registered twice")
        cls.name, cls.needs = name, wanted
        _REGISTERED.append(cls)
        return cls

    return decorator


def objective_names(views: Iterable[str]) -> list[str]:
    """Names of the objectives a task producing ``views`` can train, in registration order."""
    _load_builtins()
    have = frozenset(views)
    return list(dict.fromkeys(o.name for o in _REGISTERED if o.needs <= have))


def objective_class(name: str, views: Iterable[str]) -> type[Objective]:
    """The objective registered as ``name`` whose needs ``views`` meet (ValueError naming the choices)."""
    _load_builtins()
    have = frozenset(views)
    for o in _REGISTERED:
        if o.name == name and o.needs <= have:
            return o
    raise ValueError(f"unknown objective {name!r} for views {sorted(have)}; "
                     f"choose one of: {', '.join(objective_names(have))}")


def build_objective(name: str, views: Iterable[str], params: Any, head_path: str = "head") -> Objective:
    """The objective ``name`` for a task producing ``views``, reading its settings from ``params``."""
    return objective_class(name, views)(params, head_path)


__all__ = ["VIEWS", "Objective", "TwoViewObjective", "ViewSource", "build_objective", "objective_class",
           "objective_names", "register_objective"]
