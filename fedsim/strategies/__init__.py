"""Aggregation strategies; importing this package registers the built-in ones."""

from fedsim.strategies import fedavg  # noqa: F401
