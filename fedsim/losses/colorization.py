"""Video colourisation after VCGAN: reconstruction plus temporal consistency, and PSNR.

Zhao et al., "VCGAN: Video Colorization with Hybrid Generative Adversarial Network",
arXiv 2104.12357, §III-D: besides the per-frame reconstruction loss, a *short-term*
temporal loss between neighbouring frames and a *long-term* one between the first frame and
distant frames, each ``M ⊙ |O_t − W(O_s)|`` with ``W`` the optical-flow warp from frame
``s`` to ``t`` and ``M`` a visibility mask ``exp(−α‖I_t − W(I_s)‖²)`` computed on the input
(Lai et al., arXiv 1808.00449, eq. 3). fedsim has no optical flow, so ``W`` is the identity:
the mask then keeps the pixels whose grey input did not change (static background, the
inside of a slow object) and the loss asks their predicted colour not to change either.
VCGAN's adversarial term is **not** implemented (the issue makes it optional).
"""

from __future__ import annotations

from typing import Literal

import torch

from fedsim.data.augmentations import LUMA


def chroma_to_rgb(luma: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """RGB ``(n, 3, ...)`` from luma ``Y`` ``(n, 1, ...)`` and the colour differences
    ``(R − Y, B − Y)`` ``(n, 2, ...)`` (the unscaled chroma of YUV / YCbCr): ``G`` follows from
    ``Y = 0.299 R + 0.587 G + 0.114 B``, so the result's luma is ``Y`` exactly (before any
    clamping). Hand-written: torchvision converts colour spaces only to grey and HSV."""
    r_y, b_y = chroma[:, :1], chroma[:, 1:2]
    g_y = -(LUMA[0] * r_y + LUMA[2] * b_y) / LUMA[1]
    return luma + torch.cat([r_y, g_y, b_y], dim=1)


def colourfulness(rgb: torch.Tensor) -> torch.Tensor:
    """HSV chroma ``max(R, G, B) − min(R, G, B)`` per pixel, ``(n, 1, ...)`` in [0, 1]: 0 for grey."""
    return rgb.amax(dim=1, keepdim=True) - rgb.amin(dim=1, keepdim=True)


def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, *, kind: Literal["l1", "mse"] = "l1",
                        rebalance: float = 0.0) -> torch.Tensor:
    """Per-pixel colour error, each pixel weighted by ``1 + rebalance · colourfulness(target)``
    and the weights normalised to mean 1 over the batch (``rebalance`` 0: the plain mean).

    A colour-frequency rebalancing in the spirit of Zhang et al. (arXiv 1603.08511, §2.2): there
    the rare saturated colours of natural images are weighted up; here the few colourful
    pixels (the digit, whose hue follows its class) are weighted up against the dark,
    weakly coloured background, whose random hue no encoder can predict. ``kind`` ``"mse"``
    is the error PSNR measures (its optimum is the conditional mean, which hedges towards
    grey where colour is unpredictable); ``"l1"`` is VCGAN's (the conditional median).
    """
    err = (pred - target).pow(2) if kind == "mse" else (pred - target).abs()
    if rebalance == 0:
        return err.mean()
    w = 1 + rebalance * colourfulness(target)
    return (err * w).mean() / w.mean()


def visibility_mask(grey_t: torch.Tensor, grey_s: torch.Tensor, alpha: float) -> torch.Tensor:
    """``exp(−α · Σ_c (I_t − I_s)²)`` per pixel, ``(n, 1, ..., h, w)`` from ``(n, c, ..., h, w)``."""
    return torch.exp(-alpha * (grey_t - grey_s).pow(2).sum(dim=1, keepdim=True))


def temporal_consistency_loss(pred: torch.Tensor, grey: torch.Tensor, *, alpha: float = 50.0,
                              long_term: bool = True) -> torch.Tensor:
    """Short-term (+ long-term) temporal loss of colour predictions.

    Parameters
    ----------
    pred
        Predicted colour clips ``(n, c, t, h, w)``.
    grey
        The grey input clips ``(n, 1, t, h, w)`` the masks come from.
    alpha
        Sharpness of the visibility mask (Lai et al. use 50 on [0, 1] images).
    long_term
        Add VCGAN's long-term term: the first frame against every frame from the middle on.

    Returns
    -------
    The mean over neighbouring pairs ``(t−1, t)`` of ``mean(M ⊙ |O_t − O_{t−1}|)``, plus the
    same mean over the distant pairs ``(0, t)``, ``t ≥ T/2``; 0 for a clip of one frame.
    """
    t = pred.shape[2]
    if t < 2:
        return pred.sum() * 0.0
    short = (visibility_mask(grey[:, :, 1:], grey[:, :, :-1], alpha)
             * (pred[:, :, 1:] - pred[:, :, :-1]).abs()).mean()
    if not long_term:
        return short
    far = torch.arange(max(1, t // 2), t)
    first_grey, first_pred = grey[:, :, :1], pred[:, :, :1]
    long = (visibility_mask(grey[:, :, far], first_grey, alpha) * (pred[:, :, far] - first_pred).abs()).mean()
    return short + long


def psnr(pred: torch.Tensor, target: torch.Tensor, *, peak: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per sample, ``10·log10(peak² / MSE)``, ``(n,)``."""
    mse = (pred - target).pow(2).flatten(1).mean(dim=1).clamp_min(1e-10)
    return 10 * torch.log10(peak**2 / mse)
