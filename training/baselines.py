"""Classical baselines scored on the same split, so "the autoencoder beats PCA" is a measurement."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest

from ecgwatch.scorer import error_scale
from training.ecg_pipeline import ScoreKind, auroc_by_score_kind, score_kinds

PCA_COMPONENTS = (2, 3, 5, 8, 12, 16, 24, 32)


@dataclass
class PCABaseline:
    """Reconstruction error from a k-component PCA, scored with the same score kinds as the autoencoder."""

    pca: PCA
    kind: ScoreKind
    scale: np.ndarray  # per-position RMS error on the training beats, used by the scaled score kinds

    @property
    def k(self) -> int:
        return int(self.pca.n_components_)

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        return self.pca.inverse_transform(self.pca.transform(x))

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.kind.scores(x, self.reconstruct(x), self.scale)


def select_pca(
    train_x: np.ndarray, val_x: np.ndarray, val_is_anomaly: np.ndarray, seed: int = 0
) -> tuple[PCABaseline, dict[str, float]]:
    """Pick k and the score kind by validation AUROC (the test split is never looked at)."""
    aurocs: dict[str, float] = {}
    best: PCABaseline | None = None
    best_auroc = -1.0
    kinds = {kind.name: kind for kind in score_kinds(train_x.shape[1])}
    for k in PCA_COMPONENTS:
        pca = PCA(n_components=k, random_state=seed).fit(train_x)
        scale = error_scale(train_x, pca.inverse_transform(pca.transform(train_x)))
        val_recon = pca.inverse_transform(pca.transform(val_x))
        for name, auroc in auroc_by_score_kind(val_x, val_recon, val_is_anomaly, scale).items():
            aurocs[f"k={k} {name}"] = auroc
            if auroc > best_auroc:
                best, best_auroc = PCABaseline(pca, kinds[name], scale), auroc
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
