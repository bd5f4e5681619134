"""Classical baselines scored on the same split, so "the autoencoder beats PCA" is a measurement."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest

from ecgwatch.score_rules import ScoreRule
from training.ecg_pipeline import Reconstructed, auroc_by_score_kind, score_rules

PCA_COMPONENTS = (2, 3, 5, 8, 12, 16, 24, 32)


@dataclass
class PCABaseline:
    """Reconstruction error from a k-component PCA, scored with the same score kinds as the autoencoder."""

    pca: PCA
    kind: str
    rules: dict[str, ScoreRule]  # every kind's rule, fitted on the training beats; ``kind`` picks one

    @property
    def k(self) -> int:
        return int(self.pca.n_components_)

    def reconstructed(self, x: np.ndarray) -> Reconstructed:
        """The PCA scores play the embedding's part in the fused kind (Hotelling's T^2, in effect)."""
        return pca_reconstructed(self.pca, x)

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.reconstructed(x).score(self.rules[self.kind])


def pca_reconstructed(pca: PCA, x: np.ndarray) -> Reconstructed:
    embedding = pca.transform(x)
    return Reconstructed(x, pca.inverse_transform(embedding), embedding)


def select_pca(
    train_x: np.ndarray, val_x: np.ndarray, val_is_anomaly: np.ndarray, seed: int = 0
) -> tuple[PCABaseline, dict[str, float]]:
    """Pick k and the score kind by validation AUROC (the test split is never looked at)."""
    aurocs: dict[str, float] = {}
    best: PCABaseline | None = None
    best_auroc = -1.0
    for k in PCA_COMPONENTS:
        pca = PCA(n_components=k, random_state=seed).fit(train_x)
        rules = score_rules(pca_reconstructed(pca, train_x))
        for name, auroc in auroc_by_score_kind(rules, pca_reconstructed(pca, val_x), val_is_anomaly).items():
            aurocs[f"k={k} {name}"] = auroc
            if auroc > best_auroc:
                best, best_auroc = PCABaseline(pca, name, rules), auroc
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
