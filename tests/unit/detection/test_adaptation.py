"""The autoencoder's per-device terms with the shipped population model: enrol without labels, then measure.

Record 106 (PVC in about a quarter of its beats, bigeminy) is the hard case for an unlabelled enrolment.
The shipped model saw 106 in training; the leave-one-person-out figures are in docs/crossperson.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from ecgwatch import artifact
from ecgwatch.datasets.mitbih import load_record
from ecgwatch.detection import adaptation
from ecgwatch.detection.adaptation import DeviceModel
from ecgwatch.scorer import Scorer
from training.mitbih_eval import stream_record


@pytest.fixture(scope="module")
def scored(data_root: Path) -> dict:
    loaded = artifact.load(artifact.POPULATION_MODEL_DIR)
    scorer = Scorer(loaded, torch.device("cpu"))
    window = loaded.window
    streamed = stream_record(load_record(data_root / "mitbih", "106"), window)
    beats = streamed.beats
    keep = np.array([b.window is not None and b.quality == "ok" for b in beats])
    t = np.array([b.t for b in beats])

    def model(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        part = scorer.reconstruct(x)
        return part.reconstruction, part.embedding

    windows = np.stack([b.window if b.window is not None else np.zeros(window.length) for b in beats])
    enrol = keep & (t < 120)
    device = adaptation.fit(windows[enrol], window.margin, model)
    later = keep & (t >= 120) & (streamed.annotation >= 0)
    x = adaptation.prepare(device, windows[later], window.margin)
    recon, embedding = model(x)
    terms = adaptation.terms(device, x, recon, embedding)
    return {"device": device, "pvc": streamed.pvc[later], "enrol_pvc": streamed.pvc[enrol], "terms": terms}


def test_an_enrolment_full_of_pvcs_still_learns_the_normal_beat(scored) -> None:
    assert scored["enrol_pvc"].mean() > 0.15  # 106's first two minutes: a PVC in more than one beat in seven
    terms, pvc = scored["terms"], scored["pvc"]
    assert np.median(terms.morphology[~pvc]) < 2.0  # "usual" was learnt on the normal beats, not the PVCs
    assert roc_auc_score(pvc, terms.morphology) > 0.95
    assert roc_auc_score(pvc, terms.embedding) > 0.95


def test_the_worst_stretch_is_where_a_pvc_differs(scored) -> None:
    terms, pvc = scored["terms"], scored["pvc"]
    assert np.median(terms.morphology[pvc]) > 2 * np.median(terms.morphology[~pvc])
    assert ((terms.where >= 0) & (terms.where <= 140 - adaptation.WINDOW)).all()


def test_a_device_model_is_small_and_survives_json(scored) -> None:
    device: DeviceModel = scored["device"]
    text = json.dumps(device.to_dict())
    assert len(text) < 60_000
    again = DeviceModel.from_dict(json.loads(text))
    np.testing.assert_allclose(again.template, device.template, rtol=1e-6)
    assert again.amplitude == pytest.approx(device.amplitude)
