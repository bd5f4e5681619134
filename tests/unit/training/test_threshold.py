from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from training.threshold import f1_best_threshold, quantile_threshold


@pytest.mark.parametrize("fpr", [0.01, 0.05, 0.2])
def test_quantile_threshold_is_the_tightest_that_meets_the_rate(fpr: float) -> None:
    scores = np.random.default_rng(1).gamma(2.0, size=1000)
    t = quantile_threshold(scores, fpr)
    assert (scores > t.value).mean() <= fpr
    below = np.sort(scores)[np.sort(scores) < t.value]
    assert (scores > below[-1]).mean() > fpr, "a lower threshold would also meet the rate"
    assert t.method == "normal-validation-quantile"
    assert t.target_fpr == fpr


def test_quantile_threshold_rejects_bad_rates() -> None:
    with pytest.raises(ValueError, match="must be in"):
        quantile_threshold(np.ones(5), 1.5)
    with pytest.raises(ValueError, match="zero normal scores"):
        quantile_threshold(np.array([]), 0.01)


def test_f1_best_matches_brute_force() -> None:
    rng = np.random.default_rng(2)
    labels = rng.random(300) < 0.3
    scores = rng.normal(size=300) + labels * 1.2
    threshold, f1 = f1_best_threshold(scores, labels)
    brute = max(f1_score(labels, scores > t) for t in np.r_[scores, scores.min() - 1])
    assert f1 == pytest.approx(brute)
    assert f1_score(labels, scores > threshold.value) == pytest.approx(brute)
