"""Builders shared by the tests: small real models written as real artifacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ecgwatch import artifact
from ecgwatch.models import RecurrentAEConfig, RecurrentAutoencoder


def make_model(
    directory: Path, version: str, seed: int = 0, threshold: float = 1.0, score: dict[str, Any] | None = None
) -> Path:
    """A small (E=8), untrained, seeded LSTM autoencoder saved as a servable artifact."""
    torch.manual_seed(seed)
    model = RecurrentAutoencoder(RecurrentAEConfig(embedding_dim=8)).eval()
    meta = {
        "version": version,
        "input": {"seq_len": 140, "zscore_ddof": 1, "preprocessing": "zscore-per-beat"},
        "score": score or {"kind": "max-window-mean-absolute-error", "window": 20},
        "threshold": {"value": threshold, "method": "test"},
    }
    return artifact.save(model, meta, directory)


def load_model_with_score(directory: Path, score: dict[str, Any]) -> artifact.LoadedModel:
    """That model with a given ``score`` section, loaded back through the artifact checks."""
    return artifact.load(make_model(directory, "t", score=score))
