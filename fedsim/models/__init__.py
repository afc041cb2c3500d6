"""Backbones. The built-in models are listed lazily in :data:`fedsim.registry.BUILTIN`: a
model's module is imported when the model is first asked for, so a run imports only its own.

:func:`build_backbone` is how a task builds a registered backbone: it passes each factory
only the options its :class:`fedsim.registry.ModelInfo` says it takes.
"""

from __future__ import annotations

from torch import nn

from fedsim.optim.repopt import ProxyData
from fedsim.registry import MODELS


def build_backbone(name: str, *, in_channels: int, image_size: int, proxy: ProxyData | None = None,
                   options: dict[str, object] | None = None) -> nn.Module:
    """The registered backbone ``name`` for ``(n, in_channels, image_size, image_size)`` inputs.

    ``proxy`` is the task's labelled proxy data for models that run RepOpt Hyper-Search at
    build time (ignored by the others); ``options`` (``model.params``) go to the factory.
    """
    info = MODELS.info(name)
    if image_size < info.min_size:
        raise ValueError(f"model {name!r} needs inputs of at least {info.min_size} px (got {image_size})")
    kwargs: dict[str, object] = dict(options or {})
    if info.fixed_size:
        kwargs["image_size"] = image_size
    if info.hyper_search:
        kwargs["proxy"] = proxy
    try:
        return MODELS.get(name)(in_channels=in_channels, **kwargs)
    except TypeError as err:  # an option the factory does not take
        raise ValueError(f"model.params for {name!r}: {err}") from None
