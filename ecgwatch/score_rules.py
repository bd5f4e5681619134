"""How reconstruction errors (and embeddings) become one anomaly score per beat: the rule a model's
``model.json`` names under ``score``, shared by training, evaluation and the daemon.

Kinds of score, picked per model on validation data by the training pipeline:
- the mean absolute error over the worst ``window`` samples (the whole beat: the seed's score);
- the same after dividing each sample's error by the usual error at that position (``error_scale``);
- *fused*: that scaled window score plus the Mahalanobis distance of the beat's embedding from the
  normal training beats' embeddings, each divided by its median on those beats so the two count equally.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ecgwatch.artifact import ArtifactError
from ecgwatch.preprocess import EPS


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


@dataclass(frozen=True)
class LatentGaussian:
    """The normal training beats' embeddings as a Gaussian (mean, inverse of a shrunk covariance).

    A premature beat can be reconstructed well yet land far from where normal beats sit in the embedding
    space; the distance catches some of what the reconstruction error misses.
    """

    mean: np.ndarray  # (E,)
    precision: np.ndarray  # (E, E)

    def distance(self, embedding: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each embedding ``(N, E)`` from the normal beats'."""
        d = np.asarray(embedding, dtype=np.float64) - self.mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, self.precision, d), 0.0))


@dataclass(frozen=True)
class ScoreRule:
    """One model's scoring: window, optional per-position ``scale``, optional ``latent`` term (fused kind).

    Fused: ``window score / divisors[0] + latent distance / divisors[1]``.
    """

    window: int
    scale: np.ndarray | None = None
    latent: LatentGaussian | None = None
    divisors: tuple[float, float] = field(default=(1.0, 1.0))

    def scores(self, x: np.ndarray, recon: np.ndarray, embedding: np.ndarray | None = None) -> np.ndarray:
        return self.scores_from(cumulative_error(x, recon, self.scale), embedding)

    def scores_from(self, cumulative: np.ndarray, embedding: np.ndarray | None = None) -> np.ndarray:
        """Scores from :func:`cumulative_error` (taken with this rule's ``scale``), which callers reuse."""
        score = worst_window(cumulative, self.window)[0]
        if self.latent is None:
            return score
        if embedding is None:
            raise ValueError("a fused score needs the beats' embeddings")
        return score / self.divisors[0] + self.latent.distance(embedding) / self.divisors[1]

    def to_metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {"window": self.window}
        if self.scale is not None:
            out["error_scale"] = self.scale.tolist()
        if self.latent is not None:
            out["latent"] = {
                "mean": self.latent.mean.tolist(),
                "precision": self.latent.precision.tolist(),
                "reconstruction_divisor": self.divisors[0],
                "latent_divisor": self.divisors[1],
            }
        return out

    @classmethod
    def from_metadata(cls, score: dict[str, Any], seq_len: int, embedding_dim: int, where: str) -> ScoreRule:
        """Parse and check model.json's ``score`` section; anything malformed stops loading with a reason."""
        window = score.get("window")
        if type(window) is not int or not 1 <= window <= seq_len:
            raise ArtifactError(f"{where}: score.window must be an integer in 1..{seq_len}, got {window!r}")
        scale = None
        if "error_scale" in score:
            scale = _array(score["error_scale"], (seq_len,), f"{where}: score.error_scale", positive=True)
        latent = score.get("latent")
        if latent is None:
            return cls(window, scale)
        if not isinstance(latent, dict):
            raise ArtifactError(f"{where}: score.latent must be an object with mean, precision and divisors")
        e = embedding_dim
        mean = _array(latent.get("mean"), (e,), f"{where}: score.latent.mean")
        precision = _array(latent.get("precision"), (e, e), f"{where}: score.latent.precision")
        divisors = _array(
            [latent.get("reconstruction_divisor"), latent.get("latent_divisor")],
            (2,),
            f"{where}: score.latent.reconstruction_divisor and latent_divisor",
            positive=True,
        )
        return cls(window, scale, LatentGaussian(mean, precision), (float(divisors[0]), float(divisors[1])))


def _array(values: Any, shape: tuple[int, ...], name: str, positive: bool = False) -> np.ndarray:
    """``values`` as a float array of ``shape``, finite (and > 0 if ``positive``), or an ArtifactError."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        array = np.empty(0)
    if array.shape != shape or not np.isfinite(array).all() or (positive and not (array > 0).all()):
        size = "x".join(map(str, shape))
        kind = "positive numbers" if positive else "finite numbers"
        raise ArtifactError(f"{name} must be {size} {kind}; retrain or restore model.json")
    return array
