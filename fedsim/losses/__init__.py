"""Self-supervised losses, one per module, each citing its paper."""

from fedsim.losses.barlow import BarlowTwinsLoss
from fedsim.losses.byol import BYOLLoss, BYOLNetwork, MomentumTarget, ema_update
from fedsim.losses.ntxent import NTXentLoss

__all__ = ["BYOLLoss", "BYOLNetwork", "MomentumTarget", "BarlowTwinsLoss", "NTXentLoss", "ema_update"]
