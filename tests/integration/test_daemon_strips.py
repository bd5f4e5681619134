"""Strips from watches through a real Mosquitto: beats found and scored once, quality, episodes, no loss."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ecgwatch.datasets.mitbih import Record, load_record
from ecgwatch.demo.brokers import Mosquitto
from ecgwatch.detection.segmentation import Strip, Window, push
from tests.factories import make_model
from tests.integration.harness import Collector, Daemon, Publisher, wait_for

FS = 360
STRIP = 10 * FS
T0 = 1_800_000_000.0


@pytest.fixture(scope="module")
def record(data_root: Path) -> Record:
    return load_record(data_root / "mitbih", "106")


@pytest.fixture
def running(broker: Mosquitto, tmp_path: Path) -> Iterator[dict]:
    parts: dict = {"collector": Collector(broker.port, topics=("ecg/+/score", "ecg/+/episode", "ecgwatch/#"))}
    parts["publisher"] = Publisher(broker.port)
    parts["daemons"] = []
    yield parts
    for daemon in parts["daemons"]:
        daemon.stop()
    parts["collector"].close()
    parts["publisher"].close()


def daemon(parts: dict, broker: Mosquitto, tmp_path: Path, model: Path, **env: str) -> Daemon:
    d = Daemon(broker.port, model, tmp_path / f"d{len(parts['daemons'])}.log", client_id="strips", **env)
    parts["daemons"].append(d)
    return d.start()


def strip_payload(seq: int, samples: np.ndarray, fs: float = FS) -> bytes:
    return json.dumps(
        {"seq": seq, "ts": T0 + seq * len(samples) / fs, "fs": fs, "samples": samples.round(4).tolist()}
    ).encode()


def send(publisher: Publisher, device: str, seqs: list[int], signal_: np.ndarray) -> None:
    for seq in seqs:
        publisher.raw(f"ecg/{device}/strip", strip_payload(seq, signal_[seq * STRIP : (seq + 1) * STRIP]))


def expected_ids(device: str, signal_: np.ndarray, n_strips: int) -> set[str]:
    """The beats an uninterrupted stream yields, computed offline with the same segmentation."""
    track, ids = None, set()
    for seq in range(n_strips):
        result = push(track, Strip(seq, T0 + seq * 10, FS, signal_[seq * STRIP : (seq + 1) * STRIP]), Window())
        track = result.track
        ids |= {f"{device}/strip/{b.strip_seq}/{b.sample}" for b in result.beats}
    return ids


def beats_of(collector: Collector, device: str) -> list[dict]:
    return [e for e in collector.on("/score") if e["device_id"] == device]


@pytest.fixture
def model(tmp_path: Path, record: Record) -> Path:
    return make_model(tmp_path / "model", "strip-model", threshold=1e9)  # nothing anomalous unless a test says


def test_a_record_as_strips_gives_one_score_per_annotated_beat(broker, running, tmp_path, model, record) -> None:
    d = daemon(running, broker, tmp_path, model)
    n = 18  # three minutes
    send(running["publisher"], "w106", list(range(n)), record.signal)
    expected = expected_ids("w106", record.signal, n)
    wait_for(lambda: {e["id"] for e in beats_of(running["collector"], "w106")} >= expected, 60, "every beat's score")
    events = beats_of(running["collector"], "w106")
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), "a beat scored twice"
    found = np.array(sorted(round((e["t"] - T0) * FS) for e in events))
    annotated = record.beats[(record.beats < n * STRIP - 2 * FS)]
    hits = sum(np.min(np.abs(found - a)) <= 0.15 * FS for a in annotated)
    assert hits / len(annotated) >= 0.995
    assert np.min(np.diff(found)) >= 0.2 * FS
    event = next(e for e in events if e["quality"] == "ok" and e["rr_s"] is not None)
    for key in ("t", "strip_seq", "sample", "rr_s", "score", "threshold", "anomaly", "quality", "model", "id"):
        assert key in event, key
    assert event["anomaly"] is False
    assert event["peak_error_samples"][0] >= 0
    metrics = d.metrics()
    assert metrics['ecgwatch_strips_total{outcome="next"}'] == n - 1
    assert metrics["ecgwatch_beats_detected_total"] == len(events)


def test_kill_9_mid_stream_loses_no_beat_and_invents_none(broker, running, tmp_path, model, record) -> None:
    d = daemon(running, broker, tmp_path, model, ECGWATCH_BATCH__MAX_SIZE="4")
    n = 30
    send(running["publisher"], "w106", list(range(n)), record.signal)
    wait_for(lambda: len(beats_of(running["collector"], "w106")) >= 50, 60, "scoring to start")
    d.signal(signal.SIGKILL)
    d.wait(10)
    assert len(beats_of(running["collector"], "w106")) < 2000, "the kill must land mid-stream"
    daemon(running, broker, tmp_path, model, ECGWATCH_BATCH__MAX_SIZE="4")
    expected = expected_ids("w106", record.signal, n)
    wait_for(lambda: {e["id"] for e in beats_of(running["collector"], "w106")} >= expected, 90, "every beat")
    assert {e["id"] for e in beats_of(running["collector"], "w106")} == expected  # none invented


def test_unreadable_signal_is_quality_not_anomaly_and_opens_signal_lost(
    broker, running, tmp_path, record, ecg_beats
) -> None:
    model = make_model(tmp_path / "model", "everything-anomalous", threshold=-1.0)
    quick = '{"signal_lost": 5, "frequent_ectopy": 0}'
    d = daemon(
        running, broker, tmp_path, model, ECGWATCH_EPISODES__GAP_S=quick, ECGWATCH_EPISODES__MIN_DURATION_S=quick
    )
    rng = np.random.default_rng(0)
    clean = record.signal[: 3 * STRIP]
    noisy = record.signal[3 * STRIP : 5 * STRIP] + rng.normal(0, 3 * record.signal.std(), 2 * STRIP)
    flat = np.full(4 * STRIP, 0.25)
    stream = np.concatenate([clean, noisy, flat, record.signal[9 * STRIP : 11 * STRIP]])
    send(running["publisher"], "w1", list(range(11)), stream)
    collector = running["collector"]
    wait_for(lambda: any(e["type"] == "end" and e["kind"] == "signal_lost" for e in collector.on("/episode")), 60,
             "signal lost to open and close")  # fmt: skip
    beats = beats_of(collector, "w1")
    unreadable = [e for e in beats if e["quality"] != "ok"]
    assert unreadable, "the noisy strips' beats must say so"
    assert all(e["anomaly"] is False and e["score"] is None for e in unreadable)
    assert any(e["anomaly"] for e in beats if e["quality"] == "ok")  # threshold -1: readable beats are anomalous
    episodes = collector.on("/episode")
    kinds = {(e["kind"], e["type"]) for e in episodes}
    # Every readable beat anomalous at a normal rate is frequent ectopy (not a tachycardia: the rate is too low).
    assert {("signal_lost", "start"), ("signal_lost", "end"), ("frequent_ectopy", "start")} <= kinds
    lost = [e for e in episodes if e["kind"] == "signal_lost"]
    assert lost[0]["id"] == lost[-1]["id"]
    metrics = d.metrics()
    assert metrics['ecgwatch_strips_unreadable_total{reason="leads_off"}'] >= 3
    assert metrics['ecgwatch_episodes_total{kind="signal_lost",type="start"}'] == 1


def test_late_duplicate_and_restart_keep_the_stream_straight(broker, running, tmp_path, model, record) -> None:
    d = daemon(running, broker, tmp_path, model)
    publisher, collector = running["publisher"], running["collector"]
    send(publisher, "w7", [0, 1, 3], record.signal)  # 2 is late
    wait_for(lambda: any(e["strip_seq"] == 3 for e in beats_of(collector, "w7")), 30, "strip 3's beats")
    send(publisher, "w7", [2], record.signal)
    wait_for(lambda: any(e["strip_seq"] == 2 for e in beats_of(collector, "w7")), 30, "the late strip's beats")
    assert all(e.get("late") for e in beats_of(collector, "w7") if e["strip_seq"] == 2)
    assert not any(e.get("late") for e in beats_of(collector, "w7") if e["strip_seq"] != 2)
    send(publisher, "w7", [1], record.signal)  # a duplicate of an acknowledged strip
    wait_for(lambda: d.metrics()['ecgwatch_strips_total{outcome="duplicate"}'] == 1, 30, "the duplicate noticed")
    before = len(beats_of(collector, "w7"))
    d.signal(signal.SIGTERM)
    assert d.wait(30) == 0
    d2 = daemon(running, broker, tmp_path, model)
    send(publisher, "w7", [4], record.signal)  # continues strip 3, across the restart
    wait_for(lambda: any(e["strip_seq"] == 4 for e in beats_of(collector, "w7")), 30, "strip 4's beats")
    assert d2.metrics()['ecgwatch_strips_total{outcome="next"}'] == 1
    assert len(beats_of(collector, "w7")) > before
    straddling = [e for e in beats_of(collector, "w7") if e["strip_seq"] == 3]
    assert straddling[-1]["quality"] != "incomplete"  # its next R peak came after the restart


def test_a_seq_jump_to_the_largest_seq_is_a_gap_not_a_crash(broker, running, tmp_path, model, record) -> None:
    """Before: seq 0 then 2**53 - 1 made a list of every missing seq (MemoryError), crash-looping the daemon."""
    d = daemon(running, broker, tmp_path, model)
    publisher = running["publisher"]
    publisher.raw("ecg/jump/strip", strip_payload(0, record.signal[:STRIP]))
    last = 2**53 - 1
    body = json.loads(strip_payload(1, record.signal[STRIP : 2 * STRIP]))
    publisher.raw("ecg/jump/strip", json.dumps({**body, "seq": last}).encode())
    wait_for(
        lambda: any(e["strip_seq"] == last for e in beats_of(running["collector"], "jump")), 60, "the jump's beats"
    )
    assert d.health() == 200
    assert d.metrics()['ecgwatch_strips_total{outcome="gap"}'] >= 1


def test_a_watch_that_restarts_its_numbering_is_heard(broker, running, tmp_path, model, record) -> None:
    """Before: after a reboot (seq back to 0, new signal) every strip was dropped as a duplicate, silently."""
    d = daemon(running, broker, tmp_path, model)
    publisher = running["publisher"]
    send(publisher, "reboot", [0, 1, 2, 3], record.signal)
    wait_for(lambda: d.metric("ecgwatch_device_state_bytes_count") == 4, 60, "four strips committed")
    send(publisher, "reboot", [1], record.signal)  # a true duplicate (old seq, old signal) is still dropped
    wait_for(lambda: d.metrics()['ecgwatch_strips_total{outcome="duplicate"}'] == 1, 30, "the duplicate dropped")
    later = {"seq": 0, "ts": T0 + 100, "fs": FS, "samples": record.signal[10 * STRIP : 11 * STRIP].round(4).tolist()}
    publisher.raw("ecg/reboot/strip", json.dumps(later).encode())
    wait_for(
        lambda: any(e["t"] > T0 + 100 for e in beats_of(running["collector"], "reboot")), 60, "the new run's beats"
    )
    assert d.metrics()['ecgwatch_strips_total{outcome="duplicate"}'] == 1
