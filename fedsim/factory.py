"""Building a run's plugins (task, strategy) from their names and parameters.

The server builds them from its :class:`fedsim.config.ExperimentConfig` (:func:`task_for`,
:func:`strategy_for`), a client from the run record it receives
(:class:`fedsim.records.RunSpec`): both end in :func:`build_task` and :func:`build_strategy`,
so a task or strategy is built the same way on both sides without the client needing the
experiment. The config is a spec only; what needs a built plugin to check (the metrics a
task reports, for ``evaluation.track``) is checked here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedsim.config import EvaluationConfig, ExperimentConfig
from fedsim.registry import STRATEGIES, TASKS


def build_task(name: str, params: Mapping[str, Any], *, num_clients: int, seed: int,
               partitioning: Any, backbone: str, backbone_options: Mapping[str, Any] | None = None,
               data_dir: str | None = None, evaluation: Any = None) -> Any:
    """The registered task ``name`` with its ``Params(**params)``.

    ``partitioning`` and ``evaluation`` are :class:`fedsim.config.PartitionConfig` and
    :class:`fedsim.config.EvaluationConfig` (the latter defaults: clients do not evaluate).
    """
    from fedsim.tasks.base import TaskContext

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
    cls = STRATEGIES.get(name)
    params = dict(params)
    if "backbone_prefix" in cls.Params.model_fields and "backbone_prefix" not in params:
        params["backbone_prefix"] = TASKS.get(task).encoder_prefixes
    strategy = cls(cls.Params(**params))
    if dp_clip is not None:
        from fedsim.strategies.dp import wrap_dp

        strategy = wrap_dp(strategy, clip=dp_clip, noise_multiplier=dp_noise, seed=seed)
    return strategy


def task_for(exp: ExperimentConfig) -> Any:
    """The configured :class:`fedsim.tasks.base.Task` (server side: the run's data folder).

    Raises a one-line :class:`ValueError` when ``evaluation.track`` names a metric the task
    does not report (a task's metrics can depend on its parameters, so they are known once
    it is built; a task's constructor is cheap: data is made or read on first use)."""
    task = build_task(exp.task.name, exp.task.params, num_clients=exp.federation.clients, seed=exp.seed,
                      partitioning=exp.partitioning, backbone=exp.model.name, backbone_options=exp.model.params,
                      data_dir=exp.task.data_dir, evaluation=exp.evaluation)
    declared = [m.name for m in task.metrics()]
    for name in exp.evaluation.track or ():
        if name not in declared:
            raise ValueError(f"evaluation.track: task {exp.task.name!r} has no metric {name!r}; "
                             f"choose from: {', '.join(declared)}")
    return task


def strategy_for(exp: ExperimentConfig) -> Any:
    """The configured :class:`fedsim.strategies.base.Strategy` (under DP when ``dp_clip`` is set)."""
    return build_strategy(exp.strategy.name, exp.strategy.params, task=exp.task.name, seed=exp.seed,
                          dp_clip=exp.strategy.dp_clip, dp_noise=exp.strategy.dp_noise)
