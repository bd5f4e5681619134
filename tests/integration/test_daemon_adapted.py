"""The shipped population model through a real Mosquitto: a device enrols, then its PVCs page and say why.

Record 106 (a person with ~500 PVCs in 30 minutes) streams as 10 s strips. For its first minute the device
enrols: its beats are published with ``"enrolling": true`` and no score. From then on each beat is classified
against the device's own beats and rhythm; a PVC must be flagged ``"beat_class": "V"`` with what decided it.
The record is one the shipped model was trained on, so this checks the daemon's wiring, not how the model
generalises (that is ``ecgwatch-train crossperson``, leave one person out).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ecgwatch.artifact import POPULATION_MODEL_DIR, REFERENCE_MODEL_DIR, read_metadata
from ecgwatch.datasets.mitbih import Record, load_record
from ecgwatch.demo.brokers import Mosquitto
from tests.integration.harness import Collector, Daemon, Publisher, wait_for

FS = 360
STRIP = 10 * FS
T0 = 1_800_000_000.0
ENROL_S = 60


@pytest.fixture(scope="module")
def record(data_root: Path) -> Record:
    return load_record(data_root / "mitbih", "106")


def annotated_pvc(record: Record, event: dict) -> bool | None:
    """Whether the annotated beat nearest the event is a PVC; None when no annotation is within 150 ms."""
    sample = round((event["t"] - T0) * FS)
    nearest = int(np.argmin(np.abs(record.beats - sample)))
    return bool(record.pvc[nearest]) if abs(record.beats[nearest] - sample) <= 0.15 * FS else None


def test_device_enrols_then_its_pvcs_page_as_ventricular_with_what_decided_it(
    broker: Mosquitto, tmp_path: Path, record: Record, ecg_beats
) -> None:
    collector = Collector(broker.port, topics=("ecg/+/score", "ecgwatch/#"))
    publisher = Publisher(broker.port)
    daemon = Daemon(
        broker.port, POPULATION_MODEL_DIR, tmp_path / "d.log", client_id="adapted", ECGWATCH_MODEL__ENROLMENT_S="60"
    )
    try:
        daemon.start()
        n = 18  # three minutes: one enrolling, two judged
        for seq in [*range(10), *range(11, n), 10]:  # strip 10 arrives late, in the same burst
            samples = record.signal[seq * STRIP : (seq + 1) * STRIP].round(4).tolist()
            payload = {"seq": seq, "ts": T0 + seq * 10, "fs": FS, "samples": samples}
            publisher.raw("ecg/w106/strip", json.dumps(payload).encode())
        publisher.beat("beat-device", 0, ecg_beats.x[0].tolist())

        def strip_scores() -> list[dict]:
            return [e for e in collector.on("/score") if e["device_id"] == "w106"]

        wait_for(lambda: any(e["t"] - T0 > (n - 1) * 10 for e in strip_scores()), 120, "the last strip's beats")
        wait_for(lambda: any(e["device_id"] == "beat-device" for e in collector.on("/score")), 60, "the beat")
        wait_for(lambda: any(e.get("late") for e in strip_scores()), 60, "the late strip's beats")
        events = strip_scores()
        enrolling = [e for e in events if e.get("enrolling")]
        judged = [e for e in events if e["score"] is not None]
        assert enrolling
        assert all(e["t"] - T0 < ENROL_S + 10 for e in enrolling)
        assert all(e["score"] is None and e["anomaly"] is False for e in enrolling)
        assert len(judged) > 100  # every beat after enrolment, even those sent in the same burst
        late = [e for e in events if e.get("late")]
        assert late, "strip 10 was late"
        assert not [e for e in late if e.get("enrolling")], "a late strip after enrolment is judged too"
        assert daemon.metric("ecgwatch_devices_enrolled_total") == 1

        in_order = [e for e in judged if not e.get("late")]  # a late strip is scored alone: no rhythm
        pvcs = [e for e in in_order if annotated_pvc(record, e) is True]
        normals = [e for e in in_order if annotated_pvc(record, e) is False]
        assert len(pvcs) >= 20, "record 106 has PVCs in these minutes"
        recall = np.mean([e["anomaly"] for e in pvcs])
        false_alarms = np.mean([e["anomaly"] for e in normals])
        assert recall >= 0.8, recall
        assert false_alarms <= 0.02, false_alarms
        assert all(e["beat_class"] == "V" for e in pvcs if e["anomaly"])
        assert all(e["beat_class"] == "N" for e in normals if not e["anomaly"])
        flagged = next(e for e in pvcs if e["anomaly"])
        assert flagged["fired"] == "morphology"
        assert flagged["score"] > flagged["threshold"]
        assert flagged["terms"]["correlation"] < 0.95 or flagged["terms"]["width"] > 1.2
        assert set(flagged["terms"]) >= {"premature", "pause", "ae_morphology", "ae_embedding", "irregularity"}
        start, end = flagged["peak_error_s"]
        assert -0.25 <= start < end <= 0.45
        assert flagged["model"] == read_metadata(POPULATION_MODEL_DIR)["version"]

        beat_event = next(e for e in collector.on("/score") if e["device_id"] == "beat-device")
        assert beat_event["model"] == read_metadata(REFERENCE_MODEL_DIR)["version"]
        assert beat_event["score"] is not None
    finally:
        daemon.stop()
        collector.close()
        publisher.close()
