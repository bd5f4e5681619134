"""The shipped detector (population autoencoder + beat classifier) on whole MIT-BIH people, as the daemon runs it.

The shipped classifier was fitted on these people (every shared record trains it): these tests hold its
behaviour, the leave-one-person-out figures are in docs/crossperson.md.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from ecgwatch import artifact
from ecgwatch.datasets.mitbih import load_record
from ecgwatch.serve.devices import DeviceState
from training import aami
from training.beat_classifier import Run, detect
from training.mitbih_eval import stream_record


@pytest.fixture(scope="module")
def loaded() -> artifact.LoadedModel:
    return artifact.load(artifact.POPULATION_MODEL_DIR)


@pytest.fixture(scope="module")
def runs(loaded, data_root: Path) -> dict[str, tuple[Run, aami.Detections]]:
    out = {}
    for name in ("119", "201"):
        streamed = stream_record(load_record(data_root / "mitbih", name), loaded.window)
        result = detect(streamed, loaded, 120.0)
        classes = np.array([v.beat_class for v in result.verdicts], dtype=object)
        out[name] = (result, aami.Detections(np.array([b.t for b in streamed.beats]), classes))
    return out


def test_bigeminy_and_trigeminy_pvcs_are_called_v_and_normal_beats_are_not(runs) -> None:
    result, detections = runs["119"]
    r = aami.rates(aami.score(result.streamed.record, detections))
    assert r["veb_se"] > 0.95
    assert r["veb_pp"] > 0.95
    assert r["n_false_alarms"] < 0.005


def test_atrial_fibrillation_is_found_and_prematurity_does_not_flag_its_beats(runs) -> None:
    result, detections = runs["201"]
    record = result.streamed.record
    r = aami.rates(aami.score(record, detections))
    assert r["n_false_alarms_af"] < 0.02
    t = np.array([b.t for b in result.streamed.beats])
    in_af = np.isin(record.rhythm_at(np.round(t * record.fs).astype(int)), aami.FIBRILLATION)
    state = np.array([v.fibrillation for v in result.verdicts])
    later = t > 300
    assert state[later & in_af].mean() > 0.8
    # 201 is the hardest case: its "normal" stretches are full of APCs, nodal beats and trigeminy (AF +P on DS1:
    # docs/crossperson.md)
    assert state[later & ~in_af].mean() < 0.35


def test_a_device_read_back_from_its_saved_state_judges_the_next_beats_alike(loaded, runs) -> None:
    """The daemon persists a device between strips: the detector must carry on exactly where it was."""
    result, _ = runs["119"]
    state = DeviceState()
    _, detector = state.for_model(loaded.version, loaded.window)
    beats = result.streamed.beats
    for beat in beats[:800]:
        detector.step(beat, None, None)
    saved = json.loads(json.dumps(state.to_dict()))
    again = DeviceState.from_dict(saved)
    assert again.detector is not None
    twin = copy.deepcopy(detector)
    ae = (2.0, 3.0)
    for beat in beats[800:900]:
        a = twin.step(beat, ae, loaded.classifiers)
        b = again.detector.step(beat, ae, loaded.classifiers)
        assert (a.beat_class, a.fibrillation) == (b.beat_class, b.fibrillation)
        if a.probability is not None:
            assert a.probability == pytest.approx(b.probability, abs=1e-5)
    assert len(json.dumps(saved)) < 40_000
