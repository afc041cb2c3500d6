"""Building a run's plugins (task, strategy) from their names and parameters.

The server builds them from its :class:`fedsim.config.ExperimentConfig`, a client from the
run record it receives (:class:`fedsim.records.RunSpec`): both end here, so a task or
strategy is built the same way on both sides without the client needing the experiment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedsim.plugins import load_plugins
from fedsim.registry import STRATEGIES, TASKS


def build_task(name: str, params: Mapping[str, Any], *, num_clients: int, seed: int,
               partitioning: Any, backbone: str, backbone_options: Mapping[str, Any] | None = None,
               data_dir: str | None = None, evaluation: Any = None) -> Any:
    """The registered task ``name`` with its ``Params(**params)``.

    ``partitioning`` and ``evaluation`` are :class:`fedsim.config.PartitionConfig` and
    :class:`fedsim.config.EvaluationConfig` (the latter defaults: clients do not evaluate).
    """
    from fedsim.config import EvaluationConfig
    from fedsim.tasks.base import TaskContext

    load_plugins()
    cls = TASKS.get(name)
    context = TaskContext(num_clients=num_clients, seed=seed, partitioning=partitioning, backbone=backbone,
                          backbone_options=dict(backbone_options or {}), data_dir=data_dir,
                          evaluation=evaluation if evaluation is not None else EvaluationConfig())
    return cls(context, cls.Params(**params))


def build_strategy(name: str, params: Mapping[str, Any], *, task: str, seed: int,
                   dp_clip: float | None = None, dp_noise: float = 0.0) -> Any:
    """The registered strategy ``name``; a partial-update strategy (FedVSSL) shares what
    ``task`` names as its encoder unless ``params`` say otherwise; ``dp_clip`` wraps it in
    differential privacy."""
    load_plugins()
    cls = STRATEGIES.get(name)
    params = dict(params)
    if "backbone_prefix" in cls.Params.model_fields and "backbone_prefix" not in params:
        params["backbone_prefix"] = TASKS.get(task).encoder_prefixes
    strategy = cls(cls.Params(**params))
    if dp_clip is not None:
        from fedsim.strategies.dp import wrap_dp

        strategy = wrap_dp(strategy, clip=dp_clip, noise_multiplier=dp_noise, seed=seed)
    return strategy
