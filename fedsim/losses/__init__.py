"""Self-supervised losses, one per module, each citing its paper."""

from fedsim.losses.barlow import BarlowTwinsLoss
from fedsim.losses.ntxent import NTXentLoss

__all__ = ["BarlowTwinsLoss", "NTXentLoss"]
