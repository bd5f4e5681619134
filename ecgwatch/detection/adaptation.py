"""The autoencoder's part in judging a beat: how unusual the beat is *for this wearer*, learnt from their own
first minutes (no labels).

A model fitted on some people's normal beats leaves no margin between another person's normal beats and
their PVCs. So each device enrols first and its beats are then measured against its own usual ones:

- **template and amplitude**: the device's dominant beat (median of the half of its enrolment beats closest
  to their median: a device with a PVC every third beat still enrols on its normal ones) and its amplitude
  scale (the median per-beat standard deviation); each later beat is re-aligned to the template (within
  :data:`ALIGN_SAMPLES`) and divided by that scale, so a PVC's larger amplitude stays visible;
- **morphology**: the worst :data:`WINDOW`-sample stretch of the beat's reconstruction residual, against the
  device's usual residual and its per-position spread, in multiples of its usual value;
- **embedding**: the Mahalanobis distance of the beat's embedding from the device's dominant beats
  (Ledoit-Wolf), in multiples of its usual value.

Both terms are features of the beat classifier (:mod:`ecgwatch.detection.features`); every event reports them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ecgwatch.score_rules import worst_window

ALIGN_SAMPLES = 6
WINDOW = 20  # samples of the worst residual stretch
MIN_ENROLMENT_BEATS = 30
Model = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # prepared beats -> (reconstructions, embeddings)


@dataclass
class DeviceModel:
    """A device's usual beat, fitted at the end of its enrolment (about 1,000 numbers)."""

    template: np.ndarray  # (T,) on the amplitude-scaled beat
    amplitude: float
    residual_median: np.ndarray  # (T,)
    residual_scale: np.ndarray  # (T,)
    embedding_mean: np.ndarray  # (E,)
    embedding_precision: np.ndarray  # (E, E)
    morphology_median: float
    embedding_median: float

    def to_dict(self) -> dict[str, Any]:
        return {k: v.astype(np.float32).tolist() if isinstance(v, np.ndarray) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> DeviceModel:
        arrays = ("template", "residual_median", "residual_scale", "embedding_mean", "embedding_precision")
        fields: dict[str, Any] = {k: np.asarray(v, dtype=np.float64) if k in arrays else v for k, v in state.items()}
        return cls(**fields)


def center(windows: np.ndarray, margin: int) -> np.ndarray:
    """The middle ``T`` samples of windows cut with ``margin`` samples each side."""
    return windows[:, margin : windows.shape[1] - margin] if margin else windows


def align(windows: np.ndarray, template: np.ndarray, margin: int) -> np.ndarray:
    """Each window re-cut at the offset (within the margin) where it correlates best with the template.

    Segmentation jitter of a few samples otherwise looks abnormal against a device's sharp usual residual:
    3-5 samples of shift raised the morphology term's false alarms from 1% to 25% without this.
    """
    length = windows.shape[1] - 2 * margin
    candidates = np.stack([windows[:, k : k + length] for k in range(2 * margin + 1)])  # (C, N, T)
    centred = candidates - candidates.mean(axis=2, keepdims=True)
    reference = template - template.mean()
    norms = np.linalg.norm(centred, axis=2) * np.linalg.norm(reference) + 1e-12
    best = ((centred @ reference) / norms).argmax(axis=0)
    return candidates[best, np.arange(windows.shape[0])]


def scaled(x: np.ndarray, amplitude: float) -> np.ndarray:
    """Mean removed, divided by the device's amplitude scale (not the beat's own: amplitude is evidence)."""
    return (x - x.mean(axis=1, keepdims=True)) / amplitude


def amplitude_of(windows: np.ndarray) -> float:
    return float(max(np.median(windows.std(axis=1, ddof=1)), 1e-9))


def dominant_half(x: np.ndarray, anchor: np.ndarray | None = None) -> np.ndarray:
    """The half of the beats closest to their median (or to ``anchor``): the device's usual morphology."""
    distance = np.abs(x - (np.median(x, axis=0) if anchor is None else anchor)).mean(axis=1)
    return np.asarray(distance <= np.median(distance))


def fit(windows: np.ndarray, margin: int, model: Model) -> DeviceModel:
    """Fit a device from its enrolment windows (cut with ``margin``), using ``model`` on its usual beats."""
    from sklearn.covariance import LedoitWolf

    if len(windows) < MIN_ENROLMENT_BEATS:
        raise ValueError(f"enrolment needs at least {MIN_ENROLMENT_BEATS} beats, got {len(windows)}")
    amplitude = amplitude_of(center(windows, margin))
    first = scaled(center(windows, margin), amplitude)
    template = np.median(first[dominant_half(first)], axis=0)
    x = scaled(align(windows, template, margin), amplitude)
    usual = dominant_half(x, template)
    recon, embedding = model(x[usual])
    residual = x[usual] - recon
    median = np.median(residual, axis=0)
    spread = np.maximum(1.4826 * np.median(np.abs(residual - median), axis=0), 0.05)
    covariance = LedoitWolf().fit(embedding)
    device = DeviceModel(
        template=np.median(x[usual], axis=0),
        amplitude=amplitude,
        residual_median=median,
        residual_scale=spread,
        embedding_mean=covariance.location_,
        embedding_precision=covariance.precision_,
        morphology_median=1.0,
        embedding_median=1.0,
    )
    morphology, _ = _morphology(device, x[usual], recon, WINDOW)
    device.morphology_median = float(max(np.median(morphology), 1e-9))
    device.embedding_median = float(max(np.median(_embedding_distance(device, embedding)), 1e-9))
    return device


def prepare(device: DeviceModel, windows: np.ndarray, margin: int) -> np.ndarray:
    """Beats as the model sees them for this device: aligned to its template and amplitude-scaled."""
    return scaled(align(windows, device.template, margin), device.amplitude)


def _morphology(device: DeviceModel, x: np.ndarray, recon: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    deviation = np.abs(x - recon - device.residual_median) / device.residual_scale
    cumulative = np.concatenate([np.zeros((len(x), 1)), np.cumsum(deviation, axis=1)], axis=1)
    return worst_window(cumulative, window)


def _embedding_distance(device: DeviceModel, embedding: np.ndarray) -> np.ndarray:
    d = np.asarray(embedding, dtype=np.float64) - device.embedding_mean
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, device.embedding_precision, d), 0.0))


@dataclass(frozen=True)
class Terms:
    """Per beat: the autoencoder's two terms, and where in the beat the residual is worst."""

    morphology: np.ndarray  # x usual
    embedding: np.ndarray  # x usual
    where: np.ndarray  # start of the worst morphology stretch (sample of the model's window)


def terms(device: DeviceModel, x: np.ndarray, recon: np.ndarray, embedding: np.ndarray) -> Terms:
    morphology, where = _morphology(device, x, recon, WINDOW)
    distance = _embedding_distance(device, embedding)
    return Terms(morphology / device.morphology_median, distance / device.embedding_median, where)
