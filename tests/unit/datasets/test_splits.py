from __future__ import annotations

import numpy as np

from ecgwatch.datasets import make_split
from ecgwatch.datasets.splits import split_indices


def test_split_is_disjoint_complete_and_has_documented_proportions(ecg_beats) -> None:
    split = make_split(ecg_beats, seed=3)
    parts = [split.index[k] for k in ("train", "val", "test")]
    joined = np.concatenate(parts)
    assert len(joined) == len(ecg_beats) == len(np.unique(joined))
    assert not split.train.is_anomaly.any(), "training must see normal beats only"
    n_normal = int((~ecg_beats.is_anomaly).sum())
    assert len(split.train) == round(0.8 * n_normal)
    assert (~split.val.is_anomaly).sum() == round(0.1 * n_normal)
    n_anom = int(ecg_beats.is_anomaly.sum())
    assert split.val.is_anomaly.sum() == round(0.5 * n_anom)
    assert split.test.is_anomaly.sum() == n_anom - round(0.5 * n_anom)


def test_split_is_reproducible_and_seed_dependent(ecg_beats) -> None:
    a, b, c = (split_indices(ecg_beats.is_anomaly, s) for s in (7, 7, 8))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["test"], c["test"])
