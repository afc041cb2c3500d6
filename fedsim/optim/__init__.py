"""Client optimisers: plain SGD and RepOpt-SGD (FedRepOpt, arXiv 2409.15898).

``client_optimizer(name, model, lr=..., momentum=..., weight_decay=...)`` is what a client
trains with (a plain-SGD fast path, else ``build_optimizer``); :mod:`fedsim.optim.repopt`
documents the RepOpt gradient masks and the Hyper-Search flow of their scales.
"""

from fedsim.optim.plain import PlainSGD, client_optimizer
from fedsim.optim.repopt import (
    OPTIMIZERS,
    BranchScales,
    ProxyData,
    RepOptSGD,
    build_optimizer,
    extract_scales,
    grad_mult_mask,
    grad_mults,
    hyper_search,
    search_scales,
)

__all__ = ["OPTIMIZERS", "BranchScales", "PlainSGD", "ProxyData", "RepOptSGD", "build_optimizer",
           "client_optimizer", "extract_scales", "grad_mult_mask", "grad_mults", "hyper_search", "search_scales"]
