"""Self-supervised losses, one per module, each citing its paper."""

from fedsim.losses.ntxent import NTXentLoss

__all__ = ["NTXentLoss"]
