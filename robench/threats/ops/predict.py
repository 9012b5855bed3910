"""Classify every image under each of its own K transforms, a bounded number of images per forward.

Not geometry (the transform is any callable: an affine warp, an integer shift) and not the threat
contract of :mod:`robench.threats.base`: it is the loop that spatial_random, translation_sweep and
consistency share to turn N images x K per-image transforms into N x K predictions without holding
N*K transformed images in memory.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def predict_under(
    model,
    x: torch.Tensor,
    params: torch.Tensor,
    transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch_size: int,
) -> torch.Tensor:
    """Top-1 predictions [N, K] of every image under each of its own K transforms.

    ``params[n, k]`` parametrises the k-th transform of image n and ``transform(images, params)`` applies
    one parameter row per image. The N*K (image, transform) pairs are classified ``batch_size`` at a time,
    so memory stays bounded whatever K is.
    """
    n, k = params.shape[:2]
    flat = params.reshape(n * k, *params.shape[2:])
    out = torch.empty(n * k, dtype=torch.long, device=x.device)
    with torch.inference_mode():
        for lo in range(0, n * k, batch_size):
            pairs = torch.arange(lo, min(n * k, lo + batch_size))
            images = transform(x[(pairs // k).to(x.device)], flat[pairs.to(flat.device)])
            out[lo : lo + len(pairs)] = model(images).argmax(1)
    return out.view(n, k)
