"""Detection metrics for "normal vs the rest", computed the same way for the model and the baselines."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score, roc_curve

from ecgwatch.datasets import CLASS_NAMES


def detection_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    """Threshold-free AUROC/AUPRC, plus everything that depends on predicting ``score > threshold``."""
    is_anomaly = labels != 1
    predicted = scores > threshold
    tn, fp, fn, tp = confusion_matrix(is_anomaly, predicted, labels=[False, True]).ravel()
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    per_class = {CLASS_NAMES[c]: float(predicted[labels == c].mean()) for c in sorted(set(labels.tolist())) if c != 1}
    return {
        "auroc": float(roc_auc_score(is_anomaly, scores)),
        "auprc": float(average_precision_score(is_anomaly, scores)),
        "threshold": float(threshold),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0,
        "false_alarm_rate": float(fp / (fp + tn)) if fp + tn else 0.0,
        "confusion_matrix": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "recall_per_class": per_class,
        "n_normal": int((~is_anomaly).sum()),
        "n_anomalous": int(is_anomaly.sum()),
    }


def roc_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fpr, tpr, _ = roc_curve(labels != 1, scores)
    return fpr, tpr
