from __future__ import annotations

import numpy as np
import pytest

from ecgwatch.preprocess import resample_linear, zscore


def test_zscore_matches_ecg5000_convention(ecg_beats) -> None:
    # ECG5000 was z-normalised with the sample std (ddof=1): re-normalising must change nothing.
    np.testing.assert_allclose(zscore(ecg_beats.x[:50], ddof=1), ecg_beats.x[:50], atol=1e-6)
    assert not np.allclose(zscore(ecg_beats.x[:50], ddof=0), ecg_beats.x[:50], atol=1e-4)


def test_zscore_flat_beat_is_zero_not_nan() -> None:
    np.testing.assert_array_equal(zscore(np.full((1, 10), 3.0)), np.zeros((1, 10)))


def test_resample_keeps_endpoints_and_linear_shape() -> None:
    beat = np.linspace(-1, 1, 70)
    out = resample_linear(beat, 140)
    assert out.shape == (140,)
    np.testing.assert_allclose(out, np.linspace(-1, 1, 140))
    np.testing.assert_array_equal(resample_linear(np.arange(140.0), 140), np.arange(140.0))  # already the length


def test_resample_rejects_degenerate_input() -> None:
    with pytest.raises(ValueError, match="at least 2 samples"):
        resample_linear(np.array([1.0]), 140)
