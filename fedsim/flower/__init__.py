"""fedsim's aggregation rules as Flower strategies, for a user's own ServerApp.

Every class here is a ``flwr.serverapp.strategy.Strategy`` (a subclass of Flower's
``FedAvg``) whose training aggregation is the fedsim rule of the same name, so it runs with
Flower's ``Grid`` and ``strategy.start(grid=..., initial_arrays=..., num_rounds=...,
evaluate_fn=...)`` and returns Flower's ``Result``::

    from fedsim.flower import LDAWA
    strategy = LDAWA(fraction_train=0.5, warmup_rounds=2)
    result = strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=5)

FedVSSL's clients use :func:`keep_local_mod` (``fedsim.flower.client``).
"""

from __future__ import annotations

from fedsim.flower.client import keep_local_mod, split_arrays
from fedsim.flower.strategy import FedsimStrategy
from fedsim.registry import STRATEGIES
from fedsim.strategies import (fedavg, fedavgm, fedopt, fedprox, fedrepopt, fedvssl, krum, ldawa, median,
                               trimmed_mean)


def _adapter(rule: type, name: str) -> type[FedsimStrategy]:
    doc = f"Flower strategy running fedsim's {rule.__doc__ or rule.__name__}"
    return type(name, (FedsimStrategy,), {"rule": rule, "__doc__": doc, "__module__": __name__})


FedAvg = _adapter(fedavg.FedAvg, "FedAvg")
FedRepOpt = _adapter(fedrepopt.FedRepOpt, "FedRepOpt")
FedAvgM = _adapter(fedavgm.FedAvgM, "FedAvgM")
FedAdam = _adapter(fedopt.FedAdam, "FedAdam")
FedYogi = _adapter(fedopt.FedYogi, "FedYogi")
FedAdagrad = _adapter(fedopt.FedAdagrad, "FedAdagrad")
FedProx = _adapter(fedprox.FedProx, "FedProx")
FedVSSL = _adapter(fedvssl.FedVSSL, "FedVSSL")
Krum = _adapter(krum.Krum, "Krum")
LDAWA = _adapter(ldawa.LDAWA, "LDAWA")
Median = _adapter(median.Median, "Median")
TrimmedMean = _adapter(trimmed_mean.TrimmedMean, "TrimmedMean")

BUILT_IN = {"fedavg": FedAvg, "fedrepopt": FedRepOpt, "fedavgm": FedAvgM, "fedadam": FedAdam,
            "fedyogi": FedYogi, "fedadagrad": FedAdagrad, "fedprox": FedProx, "fedvssl": FedVSSL,
            "krum": Krum, "ldawa": LDAWA, "median": Median, "trimmed-mean": TrimmedMean}


def strategy_class(name: str) -> type[FedsimStrategy]:
    """The Flower strategy class of the fedsim strategy registered as ``name`` (a plugin's
    too, once its module is imported)."""
    rule = STRATEGIES.get(name)
    built_in = BUILT_IN.get(name)
    return built_in if built_in is not None and built_in.rule is rule else _adapter(rule, rule.__name__)


__all__ = ["BUILT_IN", "FedAdagrad", "FedAdam", "FedAvg", "FedAvgM", "FedProx", "FedRepOpt", "FedVSSL",
           "FedYogi", "FedsimStrategy", "Krum", "LDAWA", "Median", "TrimmedMean", "keep_local_mod",
           "split_arrays", "strategy_class"]
