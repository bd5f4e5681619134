"""Input preprocessing that must be identical in training and serving.

ECG5000 beats were resampled to 140 samples by linear interpolation and z-normalised per beat (sample
standard deviation, ddof=1). A live beat goes through exactly the same steps, named in the model artifact.
"""

from __future__ import annotations

import numpy as np

ZSCORE = "zscore-per-beat"
EPS = 1e-8


def zscore(x: np.ndarray, ddof: int = 1) -> np.ndarray:
    """Per-beat z-normalisation over the last axis; a flat beat maps to zeros instead of NaN."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    std = x.std(axis=-1, ddof=ddof, keepdims=True)
    return (x - mean) / np.maximum(std, EPS)


def resample_linear(x: np.ndarray, length: int) -> np.ndarray:
    """Resample one beat to ``length`` samples by linear interpolation over the same time span."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"a beat needs at least 2 samples in one dimension, got shape {x.shape}")
    if x.size == length:
        return x
    return np.interp(np.linspace(0.0, 1.0, length), np.linspace(0.0, 1.0, x.size), x)
