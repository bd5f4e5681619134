"""A short real training run on real beats: the loss must fall and the scores must separate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from training.cli import main
from training.ecg_pipeline import train_and_calibrate
from training.ecg_trainer import TrainConfig


def test_short_run_learns(ecg_beats) -> None:
    torch.set_num_threads(2)
    config = TrainConfig(embedding_dim=16, epochs=12, learning_rate=5e-3, patience=20)
    seen: list[tuple[int, bool]] = []
    beats = ecg_beats.subset(np.random.default_rng(0).permutation(len(ecg_beats))[:1500])  # a few seconds
    run = train_and_calibrate(
        beats,
        config,
        split_seed=0,
        target_fpr=0.05,
        device=torch.device("cpu"),
        on_epoch=lambda epoch, model: seen.append((epoch, isinstance(model, torch.nn.Module))),
    )
    assert seen == [(epoch, True) for epoch in range(12)]  # the benchmark's per-epoch hook sees every epoch
    history = run.history
    assert history.val_loss[history.best_epoch] < 0.8 * history.val_loss[0]
    assert run.metadata["metrics"]["test"]["auroc"] > 0.85
    val_normal = run.scores["val"][~run.split.val.is_anomaly]
    assert (val_normal > run.metadata["threshold"]["value"]).mean() <= 0.05


def test_cli_trains_writes_an_artifact_and_resumes(tmp_path: Path, data_root: Path, capsys) -> None:
    out = tmp_path / "model"
    args = ["ecg", "--data", str(data_root), "--out", str(out), "--embedding-dim", "4", "--epochs", "2", "--resume"]
    args += ["--max-beats", "600"]
    assert main(args) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["training"]["epochs_run"] == 2
    assert meta["data"]["split_seed"] == 0
    assert meta["data"]["n_beats"] == 600
    assert len(meta["data"]["sha256"]) == 64
    assert "wrote" in capsys.readouterr().out
    # The checkpoint says all 2 epochs are done: resuming trains nothing more and gives the same model.
    assert main(args) == 0
    assert json.loads((out / "model.json").read_text())["weights"] == meta["weights"]


def test_cli_reports_bad_data_directory(tmp_path: Path, capsys) -> None:
    assert main(["ecg", "--data", str(tmp_path), "--out", str(tmp_path / "m"), "--epochs", "1"]) == 2
    assert "no ECG5000 file found" in capsys.readouterr().err
