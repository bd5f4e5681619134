"""Batched reconstruction scoring: the one place that turns beats into anomaly scores.

Training, evaluation and the daemon all call this, so an offline score and a served score for the same
beat are the same number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ecgwatch.artifact import ArtifactError, LoadedModel
from ecgwatch.models.recurrent import ARCHITECTURE
from ecgwatch.preprocess import EPS, zscore

PRECISIONS = ("fp32", "bf16")
# Events always say where in the beat the error is largest, over this many samples, whatever the score kind.
LOCATION_WINDOW = 20


@dataclass(frozen=True)
class BatchScores:
    """Per-beat anomaly score, the reconstruction, and the sample range the score comes from."""

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


def check_precision(model: torch.nn.Module, seq_len: int, device: torch.device, precision: str) -> None:
    """Fail at start-up, not on the first beat, when this machine cannot run ``precision``.

    oneDNN has bf16 LSTM kernels only for CPUs with AVX-512 (or AMX); on an AVX2-only CPU autocast fails.
    """
    try:
        reconstruct(model, np.zeros((1, seq_len)), device, precision)
    except RuntimeError as exc:
        raise ValueError(
            f"precision {precision} is not supported on this {device.type} (oneDNN: {str(exc).splitlines()[0]}); "
            "set model.precision = fp32"
        ) from None


def error_scale(x: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """Per-position RMS reconstruction error over normal beats ``(N, T)``: what "a usual error" is, sample by sample.

    A normal beat's error is not uniform: the sharp R peak and the beat's edges are reconstructed less
    well than the flat stretches. Dividing by this scale makes an error count by how unusual it is at its
    position, which lifted the share of anomalies caught at a 1% false-alarm rate (see the model's report).
    """
    error = np.abs(np.asarray(recon, dtype=np.float64) - x)
    return np.maximum(np.sqrt((error**2).mean(axis=0)), EPS)


def cumulative_error(x: np.ndarray, recon: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """Running sum of |x - recon| (divided by ``scale`` when given) along each beat, with a leading zero.

    With the leading zero any window's mean is two lookups.
    """
    error = np.abs(np.asarray(recon, dtype=np.float64) - x)
    if scale is not None:
        error = error / scale
    return np.concatenate([np.zeros((error.shape[0], 1)), np.cumsum(error, axis=1)], axis=1)


def worst_window(cumulative: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean error over the worst ``window``-sample stretch of each beat, and where that stretch starts."""
    window = max(1, min(window, cumulative.shape[1] - 1))
    window_means = (cumulative[:, window:] - cumulative[:, :-window]) / window
    start = window_means.argmax(axis=1)
    return window_means[np.arange(len(start)), start], start


def window_scores(
    x: np.ndarray, recon: np.ndarray, window: int, scale: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per beat: the mean absolute error over the worst ``window``-sample stretch, and where it starts.

    With ``window`` equal to the beat length this is the seed's beat-wide mean error. A short window
    keeps a short malformed complex (a PVC's QRS) from being diluted by well-reconstructed samples;
    which a model uses, and whether errors are divided by a per-position ``scale`` (see
    :func:`error_scale`), is chosen on validation data and recorded in its artifact.
    """
    return worst_window(cumulative_error(x, recon, scale), window)


def scale_of(loaded: LoadedModel) -> np.ndarray | None:
    """The artifact's per-position error scale, if its score uses one; a malformed one stops loading."""
    values = loaded.metadata["score"].get("error_scale")
    if values is None:
        return None
    try:
        scale = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        scale = np.empty(0)
    if scale.shape != (loaded.seq_len,) or not (np.isfinite(scale) & (scale > 0)).all():
        raise ArtifactError(
            f"{loaded.path}: score.error_scale must be {loaded.seq_len} positive numbers, one per sample; "
            "retrain or restore model.json"
        )
    return scale


class Scorer:
    """A loaded model plus the preprocessing its artifact names."""

    def __init__(self, loaded: LoadedModel, device: torch.device, precision: str = "fp32") -> None:
        if loaded.metadata["architecture"] != ARCHITECTURE:
            raise ArtifactError(
                f"{loaded.path}: a {loaded.metadata['architecture']!r} model cannot score ECG beats; "
                f"the daemon needs a {ARCHITECTURE!r} artifact"
            )
        self.loaded = loaded
        self.device = device
        self.precision = precision
        self.model = loaded.model.to(device).eval()
        if precision != "fp32":  # fp32 runs everywhere; only bf16 needs the probe at start-up and on reload
            check_precision(self.model, loaded.seq_len, device, precision)
        self.ddof = int(loaded.metadata["input"]["zscore_ddof"])
        self.window = int(loaded.metadata["score"]["window"])
        self.scale = scale_of(loaded)

    def prepare(self, beats: np.ndarray) -> np.ndarray:
        return zscore(beats, ddof=self.ddof)

    def score(self, beats: np.ndarray) -> BatchScores:
        x = self.prepare(beats)
        recon = reconstruct(self.model, x, self.device, self.precision)
        cumulative = cumulative_error(x, recon, self.scale)
        scores = worst_window(cumulative, self.window)[0]
        start = worst_window(cumulative, LOCATION_WINDOW)[1]
        return BatchScores(scores=scores, reconstruction=recon, peak_start=start, peak_end=start + LOCATION_WINDOW)
