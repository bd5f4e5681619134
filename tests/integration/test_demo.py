"""The one-command demo, through a private Mosquitto and through the embedded broker (MQTT 3.1.1)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ecgwatch.datasets import make_split
from ecgwatch.demo.run import DemoOptions, auroc, run_demo
from tests.factories import make_model


def test_auroc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(300) < 0.4
    scores = np.round(rng.normal(size=300) + labels, 1)  # many ties
    assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))


@pytest.mark.parametrize("embedded", [False, True])
def test_demo_scores_every_beat_and_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_root, ecg_beats, embedded
) -> None:
    model = make_model(tmp_path / "model", "demo-test", threshold=0.9)
    meta = json.loads((model / "model.json").read_text())
    meta["data"] = {"split_seed": 3}
    (model / "model.json").write_text(json.dumps(meta))
    monkeypatch.setenv("ECGWATCH_MODEL__PATH", str(model))
    options = DemoOptions(
        devices=6, seconds=5, fast=True, data=str(data_root), out=tmp_path / "out", embedded_broker=embedded
    )
    report = run_demo(options)
    assert report["beats_sent"] == report["scores_received"] == 30
    assert sum(report["confusion_matrix"].values()) == 30
    assert 0.0 <= report["auroc"] <= 1.0
    assert report["model"] == ["demo-test"]
    assert (tmp_path / "out" / "demo_report.json").is_file()
    with (tmp_path / "out" / "labels.csv").open() as handle:
        sent = [(int(r["row"]), int(r["label"])) for r in csv.DictReader(handle)]
    assert len(sent) == 30
    # Held out from the served model's own split (seed 3), not the shipped model's (seed 0).
    assert all(make_split(ecg_beats, 3).test.y[row] == label for row, label in sent)
    assert any(make_split(ecg_beats, 0).test.y[row] != label for row, label in sent)


def test_demo_with_strips_reports_against_the_annotations(tmp_path: Path, monkeypatch, data_root) -> None:
    monkeypatch.setenv("ECGWATCH_MODEL__PATH", str(make_model(tmp_path / "model", "demo-strips", threshold=1e9)))
    options = DemoOptions(
        devices=2, seconds=40, fast=True, data=str(data_root), out=tmp_path / "out", strips=True, records=("100",)
    )
    report = run_demo(options)
    assert report["beats_matched"] >= 0.95 * report["beats_annotated"] > 60
    assert report["false_alarm_rate"] == 0.0  # threshold 1e9: nothing is anomalous
    assert report["model"] == ["demo-strips"]
    assert (tmp_path / "out" / "demo_report.json").is_file()
