"""Image quality and regulariser metrics for the autoencoder report (numpy/scipy, no extra dependencies)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def psnr(reference: np.ndarray, test: np.ndarray, data_range: float = 1.0) -> float:
    """Mean over images of 10 log10(range^2 / MSE), in dB."""
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    err = np.mean((ref - np.asarray(test, np.float64).reshape(len(reference), -1)) ** 2, axis=1)
    return float(np.mean(10 * np.log10(data_range**2 / np.maximum(err, 1e-12))))


def ssim(reference: np.ndarray, test: np.ndarray, data_range: float = 1.0, sigma: float = 1.5) -> float:
    """Mean SSIM (Wang et al. 2004) with an 11-tap Gaussian window (sigma 1.5), averaged over images."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    x = np.asarray(reference, np.float64).reshape(-1, 28, 28)
    y = np.asarray(test, np.float64).reshape(-1, 28, 28)

    def blur(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, sigma=(0, sigma, sigma), truncate=3.5)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    index = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(index.mean())


def median_filter(images: np.ndarray, size: int = 3) -> np.ndarray:
    return ndimage.median_filter(np.asarray(images).reshape(-1, 28, 28), size=(1, size, size))


def gaussian_filter(images: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    return ndimage.gaussian_filter(np.asarray(images, np.float64).reshape(-1, 28, 28), sigma=(0, sigma, sigma))


def sparsity(codes: np.ndarray, tolerance: float = 1e-2) -> dict[str, float]:
    """Mean activation and the fraction of activations within ``tolerance`` of zero."""
    codes = np.abs(np.asarray(codes))
    return {"mean_activation": float(codes.mean()), "fraction_near_zero": float((codes < tolerance).mean())}
