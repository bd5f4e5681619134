"""Choosing the score kind on validation: the scaled kinds must win where normal beats have a noisy region."""

from __future__ import annotations

import numpy as np

from ecgwatch.scorer import error_scale
from training.ecg_pipeline import choose_score_kind, score_kinds


def _errors(rng: np.random.Generator, n: int, anomalous: bool) -> np.ndarray:
    """Reconstruction errors: every beat is poorly reconstructed at its start (like a real beat's edge);
    anomalies carry a smaller but unusual error in the middle."""
    error = rng.uniform(0.0, 0.05, size=(n, 140))
    error[:, :20] += rng.uniform(0.0, 2.0, size=(n, 1))
    if anomalous:
        error[:, 60:80] += 0.5
    return error


def test_scaled_kind_wins_when_normal_error_concentrates_where_anomalies_do_not_show() -> None:
    rng = np.random.default_rng(0)
    train = _errors(rng, 200, anomalous=False)
    val = np.concatenate([_errors(rng, 100, anomalous=False), _errors(rng, 100, anomalous=True)])
    is_anomaly = np.repeat([False, True], 100)
    zeros = np.zeros_like(val)
    kind, aurocs = choose_score_kind(zeros, val, is_anomaly, error_scale(np.zeros_like(train), train))
    assert set(aurocs) == {k.name for k in score_kinds(140)}
    assert kind.scaled
    assert aurocs[kind.name] > 0.99
    assert aurocs["max-window-mean-absolute-error"] < 0.9  # the edge error drowns the raw score
