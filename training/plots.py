"""PNG figures for the evaluation report; each function writes one file and returns its path."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from training.metrics import roc_points


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def loss_curves(train_loss: list[float], val_loss: list[float], best_epoch: int, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(train_loss, label="train (normal beats)")
    ax.plot(val_loss, label="validation (normal beats)")
    ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch {best_epoch}")
    ax.set(xlabel="epoch", ylabel="mean L1 reconstruction loss", title="Training loss")
    ax.legend()
    return _save(fig, path)


def score_distributions(scores: np.ndarray, labels: np.ndarray, threshold: float, kind: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, np.quantile(scores, 0.995), 60).tolist()
    ax.hist(scores[labels == 1], bins=bins, alpha=0.6, density=True, label="normal")
    ax.hist(scores[labels != 1], bins=bins, alpha=0.6, density=True, label="anomalous")
    ax.axvline(threshold, color="red", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set(xlabel=f"anomaly score ({kind})", ylabel="density", title="Test-split score distributions")
    ax.legend()
    return _save(fig, path)


def roc_curves(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path: Path) -> Path:
    """``curves``: name -> (scores, labels, auroc)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for name, (scores, labels, auroc) in curves.items():
        fpr, tpr = roc_points(scores, labels)
        for ax in axes:
            ax.plot(fpr, tpr, label=f"{name} (AUROC {auroc:.4f})")
    axes[0].set(xlabel="false-alarm rate", ylabel="recall", title="ROC, test split")
    axes[1].set(xlabel="false-alarm rate", ylabel="recall", title="ROC, false-alarm rate <= 10%", xlim=(0, 0.1))
    axes[0].legend(loc="lower right")
    return _save(fig, path)


def reconstructions(
    x: np.ndarray, recon: np.ndarray, scores: np.ndarray, labels: np.ndarray, threshold: float, path: Path, n: int = 6
) -> Path:
    """The seed's grid: a row of normal beats, a row of anomalies, true vs reconstructed, each titled with its score."""
    rows = [np.flatnonzero(labels == 1)[:n], np.flatnonzero(labels != 1)[:n]]
    fig, axes = plt.subplots(2, n, figsize=(3 * n, 5.5), sharey=True)
    for r, (row_name, idx) in enumerate(zip(("normal", "anomalous"), rows, strict=True)):
        for c, i in enumerate(idx):
            ax = axes[r, c]
            ax.plot(x[i], label="true")
            ax.plot(recon[i], label="reconstructed")
            flag = "ANOMALY" if scores[i] > threshold else "ok"
            ax.set_title(f"{row_name}: {scores[i]:.3f} ({flag})", fontsize=9)
    axes[0, 0].legend(fontsize=8)
    return _save(fig, path)


def sweep(model: dict[str, dict[int, dict[str, float]]], baselines: dict[str, dict[str, float]], path: Path) -> Path:
    """Test AUROC mean +- std per embedding size; baselines (no E) as horizontal bands."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, by_e in model.items():
        es = sorted(by_e)
        means = [by_e[e]["mean"] for e in es]
        ax.errorbar(es, means, yerr=[by_e[e]["std"] for e in es], marker="o", label=name, capsize=3)
        ax.set_xticks(es, [str(e) for e in es])
    for name, stat in baselines.items():
        line = ax.axhline(stat["mean"], linestyle="--", label=f"{name} {stat['mean']:.4f}")
        ax.axhspan(stat["mean"] - stat["std"], stat["mean"] + stat["std"], color=line.get_color(), alpha=0.1)
    ax.set(xscale="log", xlabel="embedding size E", ylabel="test AUROC (mean ± std over split seeds)")
    ax.set_title("Embedding-size sweep")
    ax.legend(fontsize=8)
    return _save(fig, path)
