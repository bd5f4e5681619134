"""Batched reconstruction scoring: the one place that turns beats into anomaly scores.

Training, evaluation and the daemon all call this, so an offline score and a served score for the same
beat are the same number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ecgwatch.artifact import LoadedModel
from ecgwatch.preprocess import zscore

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class BatchScores:
    """Per-beat mean absolute reconstruction error, and where in the beat the error is largest."""

    scores: np.ndarray
    reconstruction: np.ndarray
    peak_start: np.ndarray
    peak_end: np.ndarray


def reconstruct(
    model: torch.nn.Module, x: np.ndarray, device: torch.device, precision: str = "fp32", batch_size: int = 512
) -> np.ndarray:
    """Reconstruct preprocessed beats ``(N, T)`` in inference mode; bf16 uses CPU/CUDA autocast."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    outputs = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        for start in range(0, len(x), batch_size):
            chunk = torch.as_tensor(x[start : start + batch_size], dtype=torch.float32, device=device).unsqueeze(-1)
            outputs.append(model(chunk).float().squeeze(-1).cpu().numpy())
    if not outputs:
        return np.empty((0, x.shape[1] if x.ndim == 2 else 0), dtype=np.float32)
    return np.concatenate(outputs)


def peak_error_window(error: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample range ``[start, end)`` of the ``width``-sample window with the largest summed error, per beat.

    Tells an on-call reader *where* the beat differs from normal (e.g. the QRS complex or the T wave).
    """
    width = max(1, min(width, error.shape[1]))
    cumulative = np.concatenate([np.zeros((error.shape[0], 1)), np.cumsum(error, axis=1)], axis=1)
    window_sums = cumulative[:, width:] - cumulative[:, :-width]
    start = window_sums.argmax(axis=1)
    return start, start + width


class Scorer:
    """A loaded model plus the preprocessing its artifact names."""

    def __init__(self, loaded: LoadedModel, device: torch.device, precision: str = "fp32") -> None:
        self.loaded = loaded
        self.device = device
        self.precision = precision
        self.model = loaded.model.to(device).eval()
        self.ddof = int(loaded.metadata["input"].get("zscore_ddof", 1))

    def prepare(self, beats: np.ndarray) -> np.ndarray:
        return zscore(beats, ddof=self.ddof)

    def score(self, beats: np.ndarray, window: int = 20) -> BatchScores:
        x = self.prepare(beats)
        recon = reconstruct(self.model, x, self.device, self.precision)
        error = np.abs(recon - x)
        start, end = peak_error_window(error, window)
        return BatchScores(scores=error.mean(axis=1), reconstruction=recon, peak_start=start, peak_end=end)
