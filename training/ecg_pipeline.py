"""Train -> calibrate -> evaluate -> write artifact, for one split seed: the unit the CLI and sweeps repeat."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score

from ecgwatch import artifact
from ecgwatch.datasets import Beats, Split, make_split
from ecgwatch.models import RecurrentAutoencoder
from ecgwatch.preprocess import ZSCORE, zscore
from ecgwatch.score_rules import LatentGaussian, ScoreRule, error_scale, window_scores
from ecgwatch.scorer import reconstruct_and_embed
from training.ecg_trainer import CHECKPOINT_FILE, History, TrainConfig, Trainer
from training.metrics import detection_metrics
from training.threshold import f1_best_threshold, quantile_threshold

log = logging.getLogger(__name__)
ZSCORE_DDOF = 1
SCORE_WINDOW = 20


@dataclass
class TrainedRun:
    model: torch.nn.Module
    metadata: dict[str, Any]
    history: History
    split: Split
    scores: dict[str, np.ndarray]


def prepared(beats: Beats) -> np.ndarray:
    """The serving preprocessing, applied to training data too (a near no-op on ECG5000, by design)."""
    return zscore(beats.x, ddof=ZSCORE_DDOF)


@dataclass(frozen=True)
class Reconstructed:
    """Beats with a model's reconstructions and embeddings: everything any score kind needs."""

    x: np.ndarray
    recon: np.ndarray
    embedding: np.ndarray

    def score(self, rule: ScoreRule) -> np.ndarray:
        return rule.scores(self.x, self.recon, self.embedding)


def reconstructed(model: RecurrentAutoencoder, x: np.ndarray, device: torch.device) -> Reconstructed:
    return Reconstructed(x, *reconstruct_and_embed(model, x, device))


@dataclass(frozen=True)
class ScoreKind:
    """A way to turn a beat's reconstruction into one score; see :mod:`ecgwatch.score_rules`."""

    name: str
    window: int
    scaled: bool
    fused: bool = False

    def rule(self, train: Reconstructed, train_scale: np.ndarray) -> ScoreRule:
        """This kind's rule, with what it needs to know of "usual" fitted on the normal training beats
        (``train_scale``: their :func:`~ecgwatch.score_rules.error_scale`, used by the scaled kinds)."""
        scale = train_scale if self.scaled else None
        if not self.fused:
            return ScoreRule(self.window, scale)
        lw = LedoitWolf().fit(train.embedding)  # shrinkage: a 64x64 covariance from ~2,300 beats is noisy
        latent = LatentGaussian(lw.location_, lw.precision_)
        window_median = float(np.median(window_scores(train.x, train.recon, self.window, scale)[0]))
        latent_median = float(np.median(latent.distance(train.embedding)))
        return ScoreRule(self.window, scale, latent, (window_median, latent_median))


def score_kinds(seq_len: int) -> tuple[ScoreKind, ...]:
    """The scores chosen between on validation: worst short window or whole beat (the seed's), raw or
    scaled, and the scaled window fused with the embedding's distance from the normal beats'."""
    return (
        ScoreKind("max-window-mean-absolute-error", SCORE_WINDOW, scaled=False),
        ScoreKind("beat-mean-absolute-error", seq_len, scaled=False),
        ScoreKind("max-window-scaled-absolute-error", SCORE_WINDOW, scaled=True),
        ScoreKind("beat-mean-scaled-absolute-error", seq_len, scaled=True),
        ScoreKind("fused-scaled-window-and-latent-distance", SCORE_WINDOW, scaled=True, fused=True),
    )


def score_rules(train: Reconstructed) -> dict[str, ScoreRule]:
    """Every score kind's rule for one model (or PCA), fitted on its normal training beats."""
    scale = error_scale(train.x, train.recon)
    return {kind.name: kind.rule(train, scale) for kind in score_kinds(train.x.shape[1])}


def auroc_by_score_kind(rules: dict[str, ScoreRule], part: Reconstructed, is_anomaly: np.ndarray) -> dict[str, float]:
    return {name: float(roc_auc_score(is_anomaly, part.score(rule))) for name, rule in rules.items()}


def choose_score_kind(
    rules: dict[str, ScoreRule], val: Reconstructed, is_anomaly: np.ndarray
) -> tuple[str, dict[str, float]]:
    """The score kind with the best validation AUROC; the same rule is applied to the PCA baseline."""
    aurocs = auroc_by_score_kind(rules, val, is_anomaly)
    return max(aurocs, key=lambda name: aurocs[name]), aurocs


def fit_score(
    train: Reconstructed, val: Reconstructed, val_is_anomaly: np.ndarray
) -> tuple[str, ScoreRule, dict[str, float]]:
    """Fit every kind on the training beats and keep the one with the best validation AUROC."""
    rules = score_rules(train)
    kind, val_aurocs = choose_score_kind(rules, val, val_is_anomaly)
    return kind, rules[kind], val_aurocs


def calibrate(
    model: RecurrentAutoencoder, beats: Beats, split_seed: int, target_fpr: float, device: torch.device
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Score kind, threshold and metrics for a trained model: everything in the artifact but the recipe."""
    split = make_split(beats, split_seed)
    parts = {name: reconstructed(model, prepared(getattr(split, name)), device) for name in ("train", "val", "test")}
    kind, rule, val_aurocs = fit_score(parts["train"], parts["val"], split.val.is_anomaly)
    scores = {name: parts[name].score(rule) for name in ("val", "test")}
    threshold = quantile_threshold(scores["val"][~split.val.is_anomaly], target_fpr)
    f1_threshold, f1_val = f1_best_threshold(scores["val"], split.val.is_anomaly)
    metadata = {
        "input": {
            "seq_len": int(beats.x.shape[1]),
            "n_features": 1,
            "preprocessing": ZSCORE,
            "zscore_ddof": ZSCORE_DDOF,
            "resample": "linear",
            "sample_dtype": "float32",
        },
        "score": {
            "kind": kind,
            **rule.to_metadata(),
            "fitted_on": "normal training beats",
            "predict": "score > threshold",
            "chosen_by": "validation AUROC",
            "validation_auroc_by_kind": val_aurocs,
        },
        "threshold": {
            **threshold.to_dict(),
            "calibrated_on": "normal validation beats",
            "f1_best_for_comparison": {"value": f1_threshold.value, "validation_f1": f1_val},
        },
        "data": {
            "dataset": "ECG5000",
            "sha256": beats.sha256(),
            "n_beats": len(beats),
            "split_seed": split_seed,
            "split": {k: len(v) for k, v in split.index.items()},
        },
        "metrics": {
            "test": detection_metrics(scores["test"], split.test.y, threshold.value),
            "validation": detection_metrics(scores["val"], split.val.y, threshold.value),
        },
    }
    return metadata, scores


def train_and_calibrate(
    beats: Beats,
    config: TrainConfig,
    split_seed: int,
    target_fpr: float,
    device: torch.device,
    checkpoint_dir: Path | None = None,
    on_epoch: Callable[[int, RecurrentAutoencoder], None] | None = None,
) -> TrainedRun:
    split = make_split(beats, split_seed)
    val_normal = split.val.subset(~split.val.is_anomaly)
    trainer = Trainer(config, seq_len=beats.x.shape[1], n_train=len(split.train), device=device)
    checkpoint = checkpoint_dir / CHECKPOINT_FILE if checkpoint_dir else None
    history = trainer.fit(prepared(split.train), prepared(val_normal), checkpoint, on_epoch)
    model = trainer.model.eval()
    metadata, scores = calibrate(model, beats, split_seed, target_fpr, device)
    metadata["version"] = version_string(config, metadata["data"]["sha256"], split_seed)
    metadata["training"] = {
        **config.to_dict(),
        "best_epoch": history.best_epoch,
        "epochs_run": len(history.train_loss),
        "best_val_loss": history.best_val_loss,
        "loss": "l1",
        "optimizer": "adam",
        "seconds": float(sum(history.epoch_seconds)),
        "device": str(device),
    }
    return TrainedRun(model=model, metadata=metadata, history=history, split=split, scores=scores)


def version_string(config: TrainConfig, data_sha256: str, split_seed: int) -> str:
    """Readable and unique per recipe+data+seed: ``ecg-lstm-ae-e32-s0-fdb1165b``."""
    return f"ecg-lstm-ae-e{config.embedding_dim}-s{split_seed}-{data_sha256[:8]}"


def write_artifact(run: TrainedRun, out: Path) -> Path:
    metadata = {**run.metadata, "history": run.history.to_dict()}
    return artifact.save(run.model, metadata, out, stamp_version=True)


def recalibrate_artifact(path: Path, beats: Beats, target_fpr: float, device: torch.device) -> dict[str, Any]:
    """Re-run calibration on a saved model (no retraining), keeping its recipe and history."""
    loaded = artifact.load(path)
    metadata, _ = calibrate(loaded.recurrent(), beats, int(loaded.metadata["data"]["split_seed"]), target_fpr, device)
    keep: dict[str, Any] = {k: loaded.metadata[k] for k in ("version", "training", "history") if k in loaded.metadata}
    artifact.save(loaded.model, {**keep, **metadata}, path)
    return {**keep, **metadata}
