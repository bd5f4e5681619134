"""Anomaly threshold calibration.

The shipped threshold needs no labels: it is the score quantile of normal validation beats that lets
through the target false-alarm rate. The F1-best threshold uses labels and is reported for comparison
only, because tuning on anomalies we happen to have overfits to them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Threshold:
    value: float
    method: str
    target_fpr: float | None = None

    def to_dict(self) -> dict[str, float | str | None]:
        return asdict(self)


def quantile_threshold(normal_scores: np.ndarray, target_fpr: float = 0.01) -> Threshold:
    """Smallest threshold at which at most ``target_fpr`` of the normal scores lie strictly above it."""
    if not 0.0 < target_fpr < 1.0:
        raise ValueError(f"target false-alarm rate must be in (0, 1), got {target_fpr}")
    scores = np.asarray(normal_scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("cannot calibrate a threshold on zero normal scores")
    allowed_above = int(np.floor(target_fpr * scores.size + 1e-9))
    value = float(np.sort(scores)[scores.size - 1 - allowed_above])
    return Threshold(value=value, method="normal-validation-quantile", target_fpr=target_fpr)


def f1_best_threshold(scores: np.ndarray, is_anomaly: np.ndarray) -> tuple[Threshold, float]:
    """The threshold (predict ``score > t``) with the best F1 on labelled scores, and that F1."""
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    labels = np.asarray(is_anomaly, dtype=bool)[order]
    tp = np.cumsum(labels)
    fp = np.cumsum(~labels)
    positives = labels.sum()
    # Cut only between distinct scores: predicting the first k as anomalies.
    last_of_run = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    f1 = np.where(last_of_run, 2 * tp / (tp + fp + positives), -1.0)
    k = int(np.argmax(f1))
    below = sorted_scores[k + 1] if k + 1 < len(sorted_scores) else sorted_scores[k] - 1.0
    value = float((sorted_scores[k] + below) / 2)
    return Threshold(value=value, method="validation-f1-best"), float(f1[k])
