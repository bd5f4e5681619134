"""Classical baselines scored on the same split, so "the autoencoder beats PCA" is a measurement."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

from ecgwatch.scorer import window_scores
from training.ecg_pipeline import SCORE_WINDOW

PCA_COMPONENTS = (2, 3, 5, 8, 12, 16, 24, 32)


@dataclass
class PCABaseline:
    """Reconstruction error from a k-component PCA, scored exactly like the autoencoder's reconstruction."""

    pca: PCA

    @classmethod
    def fit(cls, train_x: np.ndarray, k: int, seed: int = 0) -> PCABaseline:
        return cls(PCA(n_components=k, random_state=seed).fit(train_x))

    @property
    def k(self) -> int:
        return int(self.pca.n_components_)

    def score(self, x: np.ndarray) -> np.ndarray:
        return window_scores(x, self.pca.inverse_transform(self.pca.transform(x)), SCORE_WINDOW)[0]


def select_pca(
    train_x: np.ndarray, val_x: np.ndarray, val_is_anomaly: np.ndarray, seed: int = 0
) -> tuple[PCABaseline, dict[int, float]]:
    """Pick k by validation AUROC (the test split is never looked at)."""
    aurocs = {}
    best: PCABaseline | None = None
    for k in PCA_COMPONENTS:
        candidate = PCABaseline.fit(train_x, k, seed)
        aurocs[k] = float(roc_auc_score(val_is_anomaly, candidate.score(val_x)))
        if best is None or aurocs[k] > aurocs[best.k]:
            best = candidate
    assert best is not None
    return best, aurocs


@dataclass
class IsolationForestBaseline:
    forest: IsolationForest

    @classmethod
    def fit(cls, train_x: np.ndarray, seed: int = 0) -> IsolationForestBaseline:
        return cls(IsolationForest(n_estimators=300, random_state=seed).fit(train_x))

    def score(self, x: np.ndarray) -> np.ndarray:
        """Higher means more anomalous, like the other scores."""
        return -self.forest.score_samples(x)
