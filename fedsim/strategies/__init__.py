"""Aggregation strategies; importing this package registers the built-in ones."""

from fedsim.strategies import (  # noqa: F401
    fedavg,
    fedavgm,
    fedopt,
    fedprox,
    fedrepopt,
    fedvssl,
    krum,
    ldawa,
    median,
    trimmed_mean,
)
from fedsim.strategies.dp import DPFixedClipping, wrap_dp  # noqa: F401
