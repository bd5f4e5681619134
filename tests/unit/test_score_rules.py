"""Choosing the score kind on validation: the scaled kinds must win where normal beats have a noisy region."""

from __future__ import annotations

import numpy as np

from training.ecg_pipeline import Reconstructed, choose_score_kind, score_kinds, score_rules


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
    embedding = rng.normal(size=(len(val), 4))  # uninformative here: the fused kind gains nothing
    rules = score_rules(Reconstructed(np.zeros_like(train), train, rng.normal(size=(len(train), 4))))
    kind, aurocs = choose_score_kind(rules, Reconstructed(np.zeros_like(val), val, embedding), is_anomaly)
    assert set(aurocs) == {k.name for k in score_kinds(140)}
    assert kind == "max-window-scaled-absolute-error"
    assert aurocs[kind] > 0.99
    assert aurocs["max-window-mean-absolute-error"] < 0.9  # the edge error drowns the raw score


def test_fused_kind_wins_when_only_the_embedding_tells_anomalies_apart() -> None:
    """Anomalies reconstructed as well as normal beats, but embedded far from them: only the fused kind sees it."""
    rng = np.random.default_rng(1)
    train = rng.uniform(0.0, 0.1, size=(300, 140))
    val = rng.uniform(0.0, 0.1, size=(200, 140))
    is_anomaly = np.repeat([False, True], 100)
    train_embedding = rng.normal(size=(300, 4))
    val_embedding = rng.normal(size=(200, 4)) + np.where(is_anomaly, 4.0, 0.0)[:, None]
    rules = score_rules(Reconstructed(np.zeros_like(train), train, train_embedding))
    kind, aurocs = choose_score_kind(rules, Reconstructed(np.zeros_like(val), val, val_embedding), is_anomaly)
    assert kind == "fused-scaled-window-and-latent-distance"
    assert aurocs[kind] > 0.95
    assert max(v for k, v in aurocs.items() if k != kind) < 0.7
