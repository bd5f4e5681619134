"""Episodes through a real Mosquitto: a person in bigeminy streams in, one bigeminy episode comes out.

Record 106 from minute 10 to minute 16.7: two minutes of enrolment, then the annotated bigeminy from 746 s to
890 s and normal rhythm after it. One bigeminy episode must come out for that stretch (not one per broken
pair), its start and end must agree, and its counts must be the beats the cardiologists annotated in it. The
gap is shortened to 30 s so the episode ends within the excerpt; the summary is retained for late subscribers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ecgwatch.artifact import POPULATION_MODEL_DIR
from ecgwatch.datasets.mitbih import Record, load_record
from ecgwatch.demo.brokers import Mosquitto
from tests.integration.harness import Collector, Daemon, Publisher, wait_for

FS = 360
STRIP = 10 * FS
FIRST, LAST = 60, 100  # strips: 600 s to 1000 s of the record
T0 = 1_800_000_000.0


@pytest.fixture(scope="module")
def record(data_root: Path) -> Record:
    return load_record(data_root / "mitbih", "106")


def test_one_bigeminy_episode_per_annotated_stretch_with_its_beats(
    broker: Mosquitto, tmp_path: Path, record: Record
) -> None:
    collector = Collector(broker.port, topics=("ecg/+/episode", "ecg/+/score"))
    publisher = Publisher(broker.port)
    daemon = Daemon(
        broker.port, POPULATION_MODEL_DIR, tmp_path / "d.log", client_id="episodes",
        ECGWATCH_EPISODES__GAP_S='{"bigeminy": 30, "trigeminy": 30, "frequent_ectopy": 30}',
    )  # fmt: skip
    try:
        daemon.start()
        for seq in range(FIRST, LAST):
            samples = record.signal[seq * STRIP : (seq + 1) * STRIP].round(4).tolist()
            payload = {"seq": seq, "ts": T0 + seq * 10, "fs": FS, "samples": samples}
            publisher.raw("ecg/w106/strip", json.dumps(payload).encode())

        def bigeminy() -> list[dict]:
            return [e for e in collector.on("/episode") if e["kind"] == "bigeminy"]

        wait_for(lambda: any(e["type"] == "end" for e in bigeminy()), 180, "the bigeminy episode's end")
        wait_for(lambda: any(e["t"] - T0 > (LAST - 1) * 10 for e in collector.on("/score")), 60, "every strip")
        events = bigeminy()
        starts = [e for e in events if e["type"] == "start"]
        ends = [e for e in events if e["type"] == "end"]
        assert len(starts) == 1, events  # one episode for the one annotated stretch
        assert len(ends) == 1
        start, end = starts[0], ends[0]
        assert start["id"] == end["id"]
        assert start["started"] == end["started"]
        assert start["severity"] == "info"
        begun, ended = start["started"] - T0, end["ended"] - T0
        assert abs(begun - 746) < 20, begun  # the annotated stretch: 746 s to 890 s
        assert abs(ended - 890) < 30, ended  # within a 30 s gap of it
        assert end["duration_s"] == pytest.approx(ended - begun, abs=0.01)
        inside = (record.beats >= begun * FS) & (record.beats <= ended * FS)
        assert end["beats"] == pytest.approx(inside.sum(), rel=0.05)
        assert end["anomalous"] == pytest.approx((record.pvc & inside).sum(), rel=0.1)
        assert start["beats"] <= end["beats"]

        late = Collector(broker.port, topics=("ecg/+/summary",))  # subscribes after the fact
        try:
            wait_for(lambda: late.on("/summary"), 30, "the retained summary")
            summary = late.on("/summary")[-1]
            assert summary["device_id"] == "w106"
            assert summary["enrolled"] is True
            assert 0.1 < summary["pvc_burden"] < 0.6
            assert 40 < summary["heart_rate_bpm"] < 120
        finally:
            late.close()
    finally:
        daemon.stop()
        collector.close()
        publisher.close()


def test_annotated_counts_are_what_the_episode_claims(record: Record) -> None:
    """The annotated stretch itself holds what the test above expects (a guard on the data, not the daemon)."""
    inside = (record.beats >= 746 * FS) & (record.beats <= 890 * FS)
    assert 150 < inside.sum() < 250
    assert 0.35 < np.mean(record.pvc[inside]) < 0.55
