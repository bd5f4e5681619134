"""Evaluate a model artifact on its test split beside PCA and IsolationForest, with figures and a report."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecgwatch import artifact
from ecgwatch.datasets import Beats, make_split
from ecgwatch.scorer import Scorer
from training import plots
from training.baselines import IsolationForestBaseline, select_pca
from training.ecg_pipeline import auroc_by_score_kind, prepared, reconstructed, score_rules
from training.metrics import detection_metrics
from training.report import write_markdown
from training.threshold import quantile_threshold

log = logging.getLogger(__name__)


def baseline_metrics(beats: Beats, split_seed: int, target_fpr: float) -> dict[str, Any]:
    """PCA (k chosen on validation) and IsolationForest, thresholds calibrated exactly like the model's."""
    split = make_split(beats, split_seed)
    train_x, val_x, test_x = prepared(split.train), prepared(split.val), prepared(split.test)
    val_normal = ~split.val.is_anomaly
    pca, pca_val_auroc = select_pca(train_x, val_x, split.val.is_anomaly, seed=split_seed)
    forest = IsolationForestBaseline.fit(train_x, seed=split_seed)
    out: dict[str, Any] = {}
    for name, scorer in ((f"PCA (k={pca.k})", pca.score), ("IsolationForest", forest.score)):
        threshold = quantile_threshold(scorer(val_x)[val_normal], target_fpr).value
        test_scores = scorer(test_x)
        out[name] = {"metrics": detection_metrics(test_scores, split.test.y, threshold), "scores": test_scores}
    name = f"PCA (k={pca.k})"
    out[name]["validation_auroc_by_k_and_score"] = pca_val_auroc
    out[name]["test_auroc_by_score_kind"] = auroc_by_score_kind(
        pca.rules, pca.reconstructed(test_x), split.test.is_anomaly
    )
    out[name]["chosen_score_kind"] = pca.kind
    return out


def evaluate(model_dir: Path, beats: Beats, out: Path, device: torch.device) -> dict[str, Any]:
    loaded = artifact.load(model_dir)
    meta = loaded.metadata
    if meta["data"]["sha256"] != beats.sha256():
        log.warning("data sha256 differs from the model's training data: the test split is not the one it was tuned on")
    split_seed = int(meta["data"]["split_seed"])
    target_fpr = float(meta["threshold"].get("target_fpr") or 0.01)
    split = make_split(beats, split_seed)
    test = reconstructed(loaded.recurrent(), prepared(split.test), device)
    scores = test.score(Scorer(loaded, device).rule)
    other_kinds = score_rules(reconstructed(loaded.recurrent(), prepared(split.train), device))
    model_name = f"LSTM-AE (E={meta['hyperparameters']['embedding_dim']})"
    results = {
        model_name: {
            "metrics": detection_metrics(scores, split.test.y, loaded.threshold),
            "scores": scores,
            "test_auroc_by_score_kind": auroc_by_score_kind(other_kinds, test, split.test.is_anomaly),
            "chosen_score_kind": meta["score"]["kind"],
        }
    }
    results.update(baseline_metrics(beats, split_seed, target_fpr))
    out.mkdir(parents=True, exist_ok=True)
    figures = _figures(meta, split.test.y, test.x, test.recon, scores, loaded.threshold, results, out)
    report = {
        "model": {"path": str(model_dir), "version": loaded.version, "threshold": meta["threshold"]},
        "data": {"sha256": beats.sha256(), "split_seed": split_seed, "n_test": len(split.test)},
        "results": {name: {k: v for k, v in r.items() if k != "scores"} for name, r in results.items()},
        "figures": {k: v.name for k, v in figures.items()},
    }
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, out / "report.md")
    return report


def _figures(
    meta: dict[str, Any],
    labels: np.ndarray,
    x: np.ndarray,
    recon: np.ndarray,
    scores: np.ndarray,
    threshold: float,
    results: dict[str, Any],
    out: Path,
) -> dict[str, Path]:
    history = meta.get("history", {})
    figures = {
        "scores": plots.score_distributions(
            scores, labels, threshold, meta["score"]["kind"], out / "score_distributions.png"
        ),
        "roc": plots.roc_curves(
            {name: (r["scores"], labels, r["metrics"]["auroc"]) for name, r in results.items()}, out / "roc.png"
        ),
        "reconstructions": plots.reconstructions(x, recon, scores, labels, threshold, out / "reconstructions.png"),
    }
    if history.get("train_loss"):
        figures["loss"] = plots.loss_curves(
            history["train_loss"], history["val_loss"], history["best_epoch"], out / "loss_curves.png"
        )
    return figures
