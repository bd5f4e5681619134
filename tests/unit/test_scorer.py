from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ecgwatch import artifact
from ecgwatch.models import RecurrentAEConfig, RecurrentAutoencoder
from ecgwatch.score_rules import ScoreRule, error_scale, window_scores
from ecgwatch.scorer import LOCATION_WINDOW, Scorer, check_precision, reconstruct, reconstruct_and_embed
from tests.factories import load_model_with_score
from training.ecg_pipeline import prepared


@pytest.mark.parametrize("window", [1, 5, 20, 140])
def test_window_scores_match_brute_force(window: int) -> None:
    rng = np.random.default_rng(window)
    x, recon = rng.normal(size=(6, 140)), rng.normal(size=(6, 140))
    scores, start = window_scores(x, recon, window)
    error = np.abs(recon - x)
    for i in range(6):
        means = [error[i, s : s + window].mean() for s in range(140 - window + 1)]
        assert scores[i] == pytest.approx(max(means))
        assert start[i] == int(np.argmax(means))


def test_window_points_at_the_corrupted_stretch() -> None:
    x = np.zeros((1, 140))
    recon = x.copy()
    recon[0, 90:100] = 3.0
    scores, start = window_scores(x, recon, 20)
    assert 80 <= start[0] <= 90
    assert scores[0] == pytest.approx(10 * 3.0 / 20)


def test_error_scale_is_the_per_position_rms_error_and_scaled_scores_divide_by_it() -> None:
    rng = np.random.default_rng(1)
    x, recon = rng.normal(size=(50, 140)), rng.normal(size=(50, 140))
    scale = error_scale(x, recon)
    for t in (0, 70, 139):
        assert scale[t] == pytest.approx(np.sqrt(np.mean((recon[:, t] - x[:, t]) ** 2)))
    scaled, _ = window_scores(x, recon, 140, scale)
    np.testing.assert_allclose(scaled, (np.abs(recon - x) / scale).mean(axis=1))
    assert (error_scale(x, x) > 0).all()  # a perfect reconstruction must not make a later division blow up


@pytest.mark.parametrize(("window", "scaled"), [(20, False), (140, False), (20, True)])
def test_runtime_scorer_equals_training_score(tmp_path: Path, ecg_beats, window: int, scaled: bool) -> None:
    scale = np.linspace(0.05, 0.4, 140) if scaled else None
    score = {"window": window, **({"error_scale": scale.tolist()} if scaled else {})}
    loaded = load_model_with_score(tmp_path / "m", score)
    beats = ecg_beats.subset(np.arange(40))
    served = Scorer(loaded, torch.device("cpu")).score(beats.x * 7.5 + 3.0)  # raw amplitude and offset
    x = prepared(beats)
    offline = window_scores(x, reconstruct(loaded.model, x, torch.device("cpu")), window, scale)[0]
    np.testing.assert_allclose(served.scores, offline, atol=1e-5)
    assert (served.peak_end - served.peak_start == LOCATION_WINDOW).all()


def _fused_score_section(rng: np.random.Generator, embedding_dim: int) -> dict[str, Any]:
    a = rng.normal(size=(embedding_dim, embedding_dim))
    return {
        "window": 20,
        "error_scale": rng.uniform(0.05, 0.4, 140).tolist(),
        "latent": {
            "mean": rng.normal(size=embedding_dim).tolist(),
            "precision": (a @ a.T + np.eye(embedding_dim)).tolist(),  # symmetric positive definite
            "reconstruction_divisor": 0.7,
            "latent_divisor": 3.0,
        },
    }


def test_fused_score_served_equals_the_rule_applied_offline(tmp_path: Path, ecg_beats) -> None:
    """Daemon and training compute the fused score from the same artifact section: same numbers."""
    section = _fused_score_section(np.random.default_rng(2), embedding_dim=8)
    loaded = load_model_with_score(tmp_path / "m", section)
    beats = ecg_beats.subset(np.arange(30))
    served = Scorer(loaded, torch.device("cpu")).score(beats.x)
    x = prepared(beats)
    recon, embedding = reconstruct_and_embed(loaded.model, x, torch.device("cpu"))
    rule = ScoreRule.from_metadata(section, 140, 8, "test")
    np.testing.assert_allclose(served.scores, rule.scores(x, recon, embedding), atol=1e-5)
    d = embedding.astype(np.float64) - np.asarray(section["latent"]["mean"])
    distance = np.sqrt(np.einsum("ij,jk,ik->i", d, np.asarray(section["latent"]["precision"]), d))
    window = window_scores(x, recon, 20, np.asarray(section["error_scale"]))[0]
    np.testing.assert_allclose(served.scores, window / 0.7 + distance / 3.0, rtol=1e-5)
    np.testing.assert_allclose(recon, reconstruct(loaded.model, x, torch.device("cpu")))  # one pass, same output


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["latent"].update(mean=[0.0] * 7), r"score\.latent\.mean must be 8 finite numbers"),
        (lambda s: s["latent"].update(precision=[[0.0] * 8] * 7), r"score\.latent\.precision must be 8x8"),
        (lambda s: s["latent"]["precision"][0].__setitem__(0, float("inf")), r"precision must be 8x8 finite"),
        (lambda s: s["latent"].update(latent_divisor=0), r"latent_divisor must be 2 positive numbers"),
        (lambda s: s["latent"].pop("reconstruction_divisor"), r"reconstruction_divisor and latent_divisor"),
        (lambda s: s.update(latent="yes"), r"score\.latent must be an object"),
        (lambda s: s.update(window=0), r"score\.window must be an integer in 1\.\.140"),
        (lambda s: s.update(window="20"), r"score\.window must be an integer"),
    ],
)
def test_malformed_fused_score_section_stops_the_scorer(tmp_path: Path, change, message: str) -> None:
    section = _fused_score_section(np.random.default_rng(3), embedding_dim=8)
    change(section)
    loaded = load_model_with_score(tmp_path / "m", section)
    with pytest.raises(artifact.ArtifactError, match=message):
        Scorer(loaded, torch.device("cpu"))


@pytest.mark.parametrize("bad", [[0.1] * 139, [0.1] * 139 + [0.0], [0.1] * 139 + [float("nan")], ["a"] * 140, 0.1])
def test_malformed_error_scale_stops_the_scorer(tmp_path: Path, bad: object) -> None:
    loaded = load_model_with_score(tmp_path / "m", {"window": 20, "error_scale": bad})
    with pytest.raises(artifact.ArtifactError, match=r"score\.error_scale must be 140 positive numbers"):
        Scorer(loaded, torch.device("cpu"))


def test_bf16_path_stays_close_to_fp32_or_is_refused_up_front(ecg_beats) -> None:
    """bf16 LSTM kernels need AVX-512; on other CPUs the scorer must refuse bf16 with a message, not crash later."""
    torch.manual_seed(0)
    model = RecurrentAutoencoder(RecurrentAEConfig(embedding_dim=8)).eval()
    x = ecg_beats.x[:16]
    fp32 = reconstruct(model, x, torch.device("cpu"), "fp32")
    try:
        check_precision(model, x.shape[1], torch.device("cpu"), "bf16")
    except ValueError:
        with pytest.raises(ValueError, match=r"set model\.precision = fp32"):
            check_precision(model, x.shape[1], torch.device("cpu"), "bf16")
        with pytest.raises(RuntimeError):  # the refusal is truthful: the real path fails too
            reconstruct(model, x, torch.device("cpu"), "bf16")
        return
    bf16 = reconstruct(model, x, torch.device("cpu"), "bf16")
    assert fp32.dtype == bf16.dtype == np.float32
    assert np.abs(fp32 - bf16).max() < 0.05
    with pytest.raises(ValueError, match="precision must be one of"):
        reconstruct(model, x, torch.device("cpu"), "fp8")
