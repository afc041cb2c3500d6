"""FedRepOpt (Lau et al., arXiv 2409.15898): FedAvg of plain RepOpt models trained with RepOpt-SGD.

The server is plain FedAvg; the method is on the client: a plain RepOpt-VGG / RepGhost
backbone trained with RepOpt-SGD, gradients multiplied by masks derived from the model's
Hyper-Searched scales (:mod:`fedsim.optim.repopt`). The strategy names that optimiser and
backbone; the experiment uses them unless ``federation.optimizer`` / ``model.name`` are
given, so the client optimiser stays selectable on its own. The optimiser reaches every
client as the round context's ``optimizer``, which the default client hooks build
(:meth:`fedsim.strategies.hooks.ClientHooks.optimizer`); the masks come with the weights
(the scales are buffers of the model), so nothing else has to travel.
"""

from __future__ import annotations

from fedsim.registry import register_strategy
from fedsim.strategies.fedavg import FedAvg


@register_strategy("fedrepopt")
class FedRepOpt(FedAvg):
    """FedRepOpt: FedAvg of plain RepOpt models trained with RepOpt-SGD (Lau et al. 2024)."""

    client_optimizer = "repopt-sgd"
    default_model = "repopt_vgg"
