"""Client optimisers: plain SGD and RepOpt-SGD (FedRepOpt, arXiv 2409.15898).

``build_optimizer(name, model, lr=..., momentum=..., weight_decay=...)`` is what a client
calls; :mod:`fedsim.optim.repopt` documents the RepOpt gradient masks and the Hyper-Search
flow of their scales.
"""

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

__all__ = ["OPTIMIZERS", "BranchScales", "ProxyData", "RepOptSGD", "build_optimizer", "extract_scales",
           "grad_mult_mask", "grad_mults", "hyper_search", "search_scales"]
