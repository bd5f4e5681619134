"""The documented, seeded train/validation/test split used for training, calibration and evaluation.

Normal beats go 80/10/10 to train/validation/test; anomalous beats 50/50 to validation/test, so the model
never sees an anomaly while fitting, and the threshold is calibrated on normal validation beats only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ecgwatch.datasets.ecg5000 import Beats

NORMAL_FRACTIONS = (0.8, 0.1, 0.1)
ANOMALY_VAL_FRACTION = 0.5


@dataclass(frozen=True)
class Split:
    train: Beats
    val: Beats
    test: Beats
    seed: int
    index: dict[str, np.ndarray]


def split_indices(is_anomaly: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Row indices of each part; sorted, disjoint, and a pure function of the labels and the seed."""
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(~is_anomaly))
    anomalous = rng.permutation(np.flatnonzero(is_anomaly))
    n_train = round(NORMAL_FRACTIONS[0] * len(normal))
    n_val = round(NORMAL_FRACTIONS[1] * len(normal))
    a_val = round(ANOMALY_VAL_FRACTION * len(anomalous))
    parts = {
        "train": normal[:n_train],
        "val": np.concatenate([normal[n_train : n_train + n_val], anomalous[:a_val]]),
        "test": np.concatenate([normal[n_train + n_val :], anomalous[a_val:]]),
    }
    return {name: np.sort(idx) for name, idx in parts.items()}


def make_split(beats: Beats, seed: int = 0) -> Split:
    index = split_indices(beats.is_anomaly, seed)
    return Split(
        train=beats.subset(index["train"]),
        val=beats.subset(index["val"]),
        test=beats.subset(index["test"]),
        seed=seed,
        index=index,
    )
