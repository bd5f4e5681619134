"""Seeded corruption of images in [0, 1] for the denoising autoencoders.

The seed added ``noise_factor * randn`` to raw pixels; here both kinds are defined on [0, 1] and clipped
back into it, so "sigma" means the same thing for every data set.
"""

from __future__ import annotations

import numpy as np

NOISE_KINDS = ("gaussian", "speckle")


def add_noise(images: np.ndarray, kind: str, sigma: float, seed: int) -> np.ndarray:
    """Gaussian ``x + sigma*n`` or speckle ``x + x*sigma*n`` with ``n ~ N(0, 1)``, clipped to [0, 1]."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise must be one of {NOISE_KINDS}, got {kind!r}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    x = np.asarray(images, dtype=np.float32)
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        raise ValueError("images must be scaled to [0, 1] before adding noise")
    n = np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32) * sigma
    noisy = x + n if kind == "gaussian" else x + x * n
    return np.clip(noisy, 0.0, 1.0)
