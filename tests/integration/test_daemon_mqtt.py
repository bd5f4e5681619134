"""The daemon end to end against a real Mosquitto: scoring, dead letters, no loss, drain, metrics, scale-out."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from ecgwatch import artifact
from ecgwatch.demo.brokers import Mosquitto
from ecgwatch.scorer import Scorer
from tests.factories import make_model
from tests.integration.harness import Collector, Daemon, Publisher, wait_for


@pytest.fixture
def model_dir(tmp_path: Path, ecg_beats) -> Path:
    # Threshold in the middle of real scores, so both score and anomaly topics carry traffic.
    path = make_model(tmp_path / "model", "test-model-a")
    scores = Scorer(artifact.load(path), torch.device("cpu")).score(ecg_beats.x[:200]).scores
    meta = json.loads((path / "model.json").read_text())
    meta["threshold"]["value"] = float(np.median(scores))
    (path / "model.json").write_text(json.dumps(meta))
    return path


@pytest.fixture
def harness(broker: Mosquitto, tmp_path: Path) -> Iterator[tuple[Collector, Publisher]]:
    collector, publisher = Collector(broker.port), Publisher(broker.port)
    yield collector, publisher
    collector.close()
    publisher.close()


@pytest.fixture
def daemons(broker: Mosquitto, model_dir: Path, tmp_path: Path) -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()


def new_daemon(daemons: list[Daemon], broker: Mosquitto, model: Path, tmp_path: Path, **kw: str) -> Daemon:
    daemon = Daemon(broker.port, model, tmp_path / f"daemon{len(daemons)}.log", **kw)
    daemons.append(daemon)
    return daemon.start()


def publish_beats(publisher: Publisher, beats: np.ndarray, device: str = "watch-1", first_seq: int = 0) -> None:
    for i, beat in enumerate(beats):
        publisher.beat(device, first_seq + i, beat.round(6).tolist())


def test_scores_equal_offline_scores(broker, harness, daemons, model_dir, tmp_path, ecg_beats) -> None:
    collector, publisher = harness
    new_daemon(daemons, broker, model_dir, tmp_path)
    beats = ecg_beats.x[::50][:60] * 2.5 + 0.3  # raw amplitudes: the daemon must z-normalise like training
    publish_beats(publisher, beats)
    wait_for(lambda: len(collector.on("/score")) >= len(beats), 30, "every beat's score")
    events = {e["seq"]: e for e in collector.on("/score")}
    offline = Scorer(artifact.load(model_dir), torch.device("cpu")).score(beats.round(6)).scores
    served = np.array([events[i]["score"] for i in range(len(beats))])
    assert np.abs(served - offline).max() <= 1e-4
    anomalies = collector.on("/anomaly")
    assert {e["seq"] for e in anomalies} == {s for s, e in events.items() if e["anomaly"]}
    assert 0 < len(anomalies) < len(beats)
    event = events[0]
    assert event["device_id"] == "watch-1"
    assert event["model"] == "test-model-a"
    assert event["threshold"] == pytest.approx(
        json.loads((model_dir / "model.json").read_text())["threshold"]["value"], abs=1e-6
    )
    start, end = event["peak_error_samples"]
    assert 0 <= start < end <= 140
    assert event["inference_s"] > 0
    assert ("ecgwatch/ecgwatch-test/status", "online") in collector.messages


MALFORMED = [
    (b"not json at all", "not_json"),
    (b"\xff\xfe\x00", "not_json"),
    (b"[1, 2, 3]", "not_an_object"),
    (json.dumps({"seq": 1}).encode(), "bad_samples"),
    (json.dumps({"seq": 1, "samples": "1,2,3"}).encode(), "bad_samples"),
    (json.dumps({"seq": 1, "samples": [1.0, "x"] * 70}).encode(), "bad_samples"),
    (json.dumps({"seq": 1, "samples": [1.0, float("nan")] * 70}).encode(), "non_finite"),
    (json.dumps({"seq": 1, "samples": [1.0, float("inf")] * 70}).encode(), "non_finite"),
    (json.dumps({"seq": 1, "samples": [1.0] * 10}).encode(), "length_out_of_bounds"),
    (json.dumps({"seq": 1, "samples": [1.0] * 5000}).encode(), "length_out_of_bounds"),
    (json.dumps({"seq": 1, "samples": [1.0] * 20000}).encode(), "too_large"),
    (json.dumps({"seq": -1, "samples": [1.0] * 140}).encode(), "bad_seq"),
    (json.dumps({"seq": True, "samples": [1.0] * 140}).encode(), "bad_seq"),
    (json.dumps({"seq": 1, "ts": "yesterday", "samples": [1.0] * 140}).encode(), "bad_ts"),
]


def test_malformed_payloads_are_dead_lettered_while_valid_beats_flow(
    broker, harness, daemons, model_dir, tmp_path, ecg_beats
) -> None:
    collector, publisher = harness
    daemon = new_daemon(daemons, broker, model_dir, tmp_path)
    for i, (payload, _) in enumerate(MALFORMED):
        publisher.raw("ecg/bad-watch/beat", payload)
        publisher.beat("good-watch", i, ecg_beats.x[i].tolist())
    publisher.raw("ecg/extra/level/beat", json.dumps({"seq": 1, "samples": [0.0] * 140}).encode())  # not subscribed
    wait_for(lambda: len(collector.on("/deadletter")) >= len(MALFORMED), 30, "dead letters")
    wait_for(lambda: len(collector.on("/score")) >= len(MALFORMED), 30, "valid beats")
    letters = collector.on("/deadletter")
    assert [d["reason"] for d in letters] == [reason for _, reason in MALFORMED]
    assert all(d["topic"] == "ecg/bad-watch/beat" for d in letters)
    assert letters[0]["payload"] == "not json at all"
    assert letters[1]["payload"] == {"base64": "//4A"}
    assert sorted(e["seq"] for e in collector.on("/score")) == list(range(len(MALFORMED)))
    metrics = daemon.metrics()
    assert metrics['ecgwatch_beats_invalid_total{reason="non_finite"}'] == 2
    assert metrics['ecgwatch_messages_published_total{kind="deadletter"}'] == len(MALFORMED)


def test_metrics_agree_with_counts(broker, harness, daemons, model_dir, tmp_path, ecg_beats) -> None:
    collector, publisher = harness
    daemon = new_daemon(daemons, broker, model_dir, tmp_path)
    publish_beats(publisher, ecg_beats.x[:40])
    publisher.raw("ecg/watch-1/beat", b"{}")
    wait_for(lambda: len(collector.on("/score")) >= 40 and collector.on("/deadletter"), 30, "all events")
    wait_for(lambda: daemon.metrics()["ecgwatch_end_to_end_latency_seconds_count"] >= 40, 10, "latency samples")
    m = daemon.metrics()
    anomalies = len(collector.on("/anomaly"))
    assert m["ecgwatch_beats_received_total"] == 41
    assert m["ecgwatch_beats_scored_total"] == 40
    assert m["ecgwatch_beats_anomalous_total"] == anomalies
    assert m['ecgwatch_messages_published_total{kind="score"}'] == 40
    assert m['ecgwatch_messages_published_total{kind="anomaly"}'] == anomalies
    assert m['ecgwatch_beats_invalid_total{reason="bad_seq"}'] == 1
    assert m["ecgwatch_batch_size_sum"] == 40
    assert m["ecgwatch_mqtt_connected"] == 1
    assert m["ecgwatch_queue_depth"] == 0
    assert m['ecgwatch_model_info{device="cpu",version="test-model-a"}'] == 1
    assert m["ecgwatch_threshold"] > 0


def test_kill_9_mid_stream_then_restart_loses_nothing(broker, harness, daemons, model_dir, tmp_path, ecg_beats) -> None:
    collector, publisher = harness
    daemon = new_daemon(daemons, broker, model_dir, tmp_path, ECGWATCH_BATCH__MAX_SIZE="4")
    n = 400
    publish_beats(publisher, ecg_beats.x[:n])
    wait_for(lambda: len(collector.scored_seqs()) >= 20, 30, "scoring to start")
    daemon.signal(signal.SIGKILL)
    daemon.wait(10)
    assert len(collector.scored_seqs()) < n, "the kill must land mid-stream for this test to mean anything"
    new_daemon(daemons, broker, model_dir, tmp_path, ECGWATCH_BATCH__MAX_SIZE="4")
    wait_for(lambda: len(collector.scored_seqs()) == n, 60, "every beat scored after restart")


def test_broker_restart_mid_stream_loses_nothing(broker, harness, daemons, model_dir, tmp_path, ecg_beats) -> None:
    collector, publisher = harness
    daemon = new_daemon(daemons, broker, model_dir, tmp_path, ECGWATCH_BATCH__MAX_SIZE="4")
    publish_beats(publisher, ecg_beats.x[:300])
    wait_for(lambda: len(collector.scored_seqs()) >= 20, 30, "scoring to start")
    broker.restart()
    wait_for(lambda: daemon.metrics()["ecgwatch_mqtt_connected"] == 1, 30, "the daemon to reconnect")
    late = Publisher(broker.port)
    publish_beats(late, ecg_beats.x[300:400], first_seq=300)
    late.close()
    # The collector's persistent session survives the restart too, so a score the daemon published while the
    # collector was reconnecting is queued for it, not lost to the test.
    wait_for(lambda: len(collector.scored_seqs()) == 400, 60, "every beat scored across the restart")
    metrics = daemon.metrics()
    assert metrics['ecgwatch_mqtt_reconnects_total{link="intake"}'] == 1
    assert metrics['ecgwatch_mqtt_reconnects_total{link="publisher"}'] == 1
    lost = [entry for entry in daemon.log_entries() if entry["msg"] == "mqtt disconnected"]
    assert all(entry["instance"] == "ecgwatch-test" and entry["time"].endswith("Z") for entry in lost)
    # A lost broker is news to the operator: one warning for each of the two connections.
    assert sorted((entry["link"], entry["level"]) for entry in lost) == [
        ("intake", "warning"),
        ("publisher", "warning"),
    ]


def test_without_its_broker_the_daemon_is_not_ready_but_alive(broker, daemons, model_dir, tmp_path) -> None:
    """Readiness takes it out of rotation; liveness must not restart it, which would not bring the broker back."""
    daemon = new_daemon(daemons, broker, model_dir, tmp_path)
    assert daemon.health("/livez") == 200
    broker.stop()
    wait_for(lambda: daemon.health() == 503, 30, "readiness to fail")
    assert daemon.health("/livez") == 200
    broker.start()
    wait_for(lambda: daemon.health() == 200, 30, "readiness to return")


def test_sigterm_drains_and_exits_zero(broker, harness, daemons, model_dir, tmp_path, ecg_beats) -> None:
    collector, publisher = harness
    daemon = new_daemon(daemons, broker, model_dir, tmp_path, ECGWATCH_BATCH__MAX_SIZE="2")
    n = 200
    publish_beats(publisher, ecg_beats.x[:n])
    wait_for(lambda: collector.on("/score"), 30, "scoring to start")
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(20) == 0
    assert time.monotonic() - started < 15
    wait_for(lambda: ("ecgwatch/ecgwatch-test/status", "offline") in collector.messages, 5, "offline status")
    log = daemon.log_entries()
    assert any(entry["msg"] == "stopped" for entry in log)
    # A stop the operator asked for is not a problem: nothing in its log may page anyone.
    assert [entry for entry in log if entry["level"] in ("warning", "error")] == []
    # Whatever it had not taken in, the broker kept: a restart scores the rest, none lost.
    new_daemon(daemons, broker, model_dir, tmp_path)
    wait_for(lambda: len(collector.scored_seqs()) == n, 60, "all beats scored")


def test_two_instances_in_a_shared_group_split_the_load(
    broker, harness, daemons, model_dir, tmp_path, ecg_beats
) -> None:
    collector, publisher = harness
    group = {"ECGWATCH_MQTT__SHARED_GROUP": "scorers"}
    a = new_daemon(daemons, broker, model_dir, tmp_path, client_id="scorer-a", **group)
    b = new_daemon(daemons, broker, model_dir, tmp_path, client_id="scorer-b", **group)
    n = 200
    for i in range(n):
        publisher.beat(f"watch-{i % 7}", i, ecg_beats.x[i].tolist())
    wait_for(lambda: len(collector.on("/score")) >= n, 60, "all scores")
    time.sleep(0.5)
    events = collector.on("/score")
    assert len(events) == n, "each beat scored exactly once"
    assert len({(e["device_id"], e["seq"]) for e in events}) == n
    counts = [d.metrics()["ecgwatch_beats_scored_total"] for d in (a, b)]
    assert sum(counts) == n
    assert min(counts) > 0.1 * n, f"load not split: {counts}"


def test_a_member_that_stops_or_is_killed_strands_no_beat(
    broker, harness, daemons, model_dir, tmp_path, ecg_beats
) -> None:
    """Before: of 200 beats sent after one of two members stopped, 100 waited in its session until it returned."""
    collector, publisher = harness
    group = {"ECGWATCH_MQTT__SHARED_GROUP": "scorers"}
    a = new_daemon(daemons, broker, model_dir, tmp_path, client_id="member-a", **group)
    b = new_daemon(daemons, broker, model_dir, tmp_path, client_id="member-b", **group)
    a.signal(signal.SIGTERM)
    assert a.wait(30) == 0
    assert any(e["msg"] == "left the shared group" for e in a.log_entries())
    for i in range(200):
        publisher.beat("watch-1", i, ecg_beats.x[i % 100].tolist())
    wait_for(lambda: len(collector.scored_seqs()) == 200, 60, "every beat scored by the member still running")
    # Now kill -9 the other mid-stream; the same member back (a StatefulSet pod's fixed id) scores the rest.
    for i in range(200, 400):
        publisher.beat("watch-1", i, ecg_beats.x[i % 100].tolist())
    b.signal(signal.SIGKILL)
    b.wait(10)
    new_daemon(daemons, broker, model_dir, tmp_path, client_id="member-b", **group)
    wait_for(lambda: len(collector.scored_seqs()) == 400, 60, "every beat scored after the restart")
    assert collector.scored_seqs() == {("watch-1", i) for i in range(400)}


def test_hot_reload_switches_model_without_dropping_beats(
    broker, harness, daemons, model_dir, tmp_path, ecg_beats
) -> None:
    collector, publisher = harness
    daemon = new_daemon(daemons, broker, model_dir, tmp_path, ECGWATCH_MODEL__WATCH="false")
    publish_beats(publisher, ecg_beats.x[:50])
    wait_for(lambda: len(collector.on("/score")) >= 50, 30, "first model's scores")
    # Broken candidate first: the daemon must keep serving the old model and count the failure.
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"garbage")
    swap(broken, model_dir)
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: daemon.metrics()['ecgwatch_model_reloads_total{result="failure"}'] == 1, 10, "failed reload")
    publish_beats(publisher, ecg_beats.x[50:60], first_seq=50)
    wait_for(lambda: len(collector.on("/score")) >= 60, 30, "scores after failed reload")
    assert {e["model"] for e in collector.on("/score")} == {"test-model-a"}
    swap(make_model(tmp_path / "candidate", "test-model-b", seed=1), model_dir)
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: daemon.metrics()['ecgwatch_model_reloads_total{result="success"}'] == 1, 10, "reload")
    publish_beats(publisher, ecg_beats.x[60:100], first_seq=60)
    wait_for(lambda: len(collector.scored_seqs()) >= 100, 30, "all scores")
    versions = {e["seq"]: e["model"] for e in collector.on("/score")}
    assert sorted(versions) == list(range(100))
    assert {versions[s] for s in range(60, 100)} == {"test-model-b"}


def test_changed_model_file_is_picked_up(broker, harness, daemons, model_dir, tmp_path, ecg_beats) -> None:
    collector, publisher = harness
    daemon = new_daemon(daemons, broker, model_dir, tmp_path)
    swap(make_model(tmp_path / "candidate", "test-model-c", seed=2), model_dir)
    wait_for(lambda: daemon.metrics()['ecgwatch_model_reloads_total{result="success"}'] == 1, 10, "watch reload")
    publish_beats(publisher, ecg_beats.x[:5])
    wait_for(lambda: len(collector.on("/score")) >= 5, 30, "scores")
    assert {e["model"] for e in collector.on("/score")} == {"test-model-c"}


def swap(source: Path, target: Path) -> None:
    """Install a model the way operators should: files renamed into place, model.json last."""
    for name in ("model.safetensors", "model.json"):
        tmp = target / f".{name}.new"
        shutil.copyfile(source / name, tmp)
        os.replace(tmp, target / name)
    os.utime(target / "model.json", ns=(time.time_ns(), time.time_ns() + 1))


def test_bad_model_stops_start_up_with_a_message(tmp_path) -> None:
    env = {**os.environ, "ECGWATCH_MODEL__PATH": str(tmp_path / "missing")}
    result = subprocess.run(
        [sys.executable, "-m", "ecgwatch", "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "model directory does not exist" in result.stderr
