"""Per-device adaptation with the shipped population model: enrol without labels, then judge.

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
from ecgwatch.detection.adaptation import DeviceModel, Rhythm, Rules
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
    rhythm = Rhythm()
    rr = np.array([rhythm.terms(b.rr_s, b.rr_next_s) for b in beats])
    later = keep & (t >= 120) & (streamed.annotation >= 0)
    x = adaptation.prepare(device, windows[later], window.margin)
    recon, embedding = model(x)
    terms = adaptation.terms(device, x, recon, embedding, (rr[later, 0], rr[later, 1]), Rules.window)
    score, _rhythm, from_model = terms.score(Rules())
    return {"device": device, "score": score, "pvc": streamed.pvc[later], "enrol_pvc": streamed.pvc[enrol],
            "terms": terms, "threshold": loaded.threshold, "model_part": from_model}  # fmt: skip


def test_an_enrolment_full_of_pvcs_still_learns_the_normal_beat(scored) -> None:
    assert scored["enrol_pvc"].mean() > 0.15  # 106's first two minutes: a PVC in more than one beat in seven
    pvc, score, threshold = scored["pvc"], scored["score"], scored["threshold"]
    assert roc_auc_score(pvc, score) > 0.97
    assert (score[pvc] > threshold).mean() > 0.85
    assert (score[~pvc] > threshold).mean() < 0.02


def test_the_model_alone_cannot_raise_an_alarm(scored) -> None:
    assert scored["model_part"].max() <= Rules().ae_clip[1] < scored["threshold"]
    terms = scored["terms"]
    assert np.median(terms.morphology[scored["pvc"]]) > 2 * np.median(terms.morphology[~scored["pvc"]])


def test_a_device_model_is_small_and_survives_json(scored) -> None:
    device: DeviceModel = scored["device"]
    text = json.dumps(device.to_dict())
    assert len(text) < 60_000
    again = DeviceModel.from_dict(json.loads(text))
    np.testing.assert_allclose(again.template, device.template, rtol=1e-6)
    assert again.amplitude == pytest.approx(device.amplitude)


def test_prematurity_and_pause() -> None:
    rhythm = Rhythm()
    for _ in range(16):
        assert rhythm.terms(1.0, 1.0) == (0.0, 0.0)
    premature, pause = rhythm.terms(0.6, 1.4)  # 40% early, then a compensatory pause
    assert premature == pytest.approx(0.4)
    assert pause == pytest.approx(np.log(1.4 / 0.6))
    assert rhythm.terms(None, 1.0) == (0.0, 0.0)
