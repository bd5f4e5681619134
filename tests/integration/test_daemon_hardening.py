"""Hostile and unlucky inputs against the daemon and a real Mosquitto: poison messages, refused publishes,
overload, a second SIGTERM, retained beats, a broker that forgets our session."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecgwatch.demo.brokers import Mosquitto
from tests.factories import make_model
from tests.integration.harness import Collector, Daemon, Publisher, wait_for


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return make_model(tmp_path / "model", "hardening-model")


@pytest.fixture
def running() -> Iterator[list[object]]:
    """Everything a test starts (daemons, brokers, clients), stopped or closed afterwards in reverse order."""
    started: list[object] = []
    yield started
    for thing in reversed(started):
        for method in ("stop", "close"):
            if hasattr(thing, method):
                getattr(thing, method)()


def start(running: list[object], thing: object) -> object:
    running.append(thing)
    return thing


def test_poison_messages_are_dead_lettered_and_scoring_goes_on(broker, running, model, tmp_path, ecg_beats) -> None:
    collector = start(running, Collector(broker.port))
    publisher = start(running, Publisher(broker.port))
    daemon = start(running, Daemon(broker.port, model, tmp_path / "d.log")).start()
    beat = ecg_beats.x[0].round(4).tolist()
    poison = [
        ("ecg/w/beat", b"[" * 1100 + b"]" * 1100, "not_json"),
        ("ecg/w/beat", json.dumps({"seq": 1, "ts": 10**400, "samples": beat}).encode(), "bad_ts"),
        ("ecg/w/beat", json.dumps({"seq": 2**64, "samples": beat}).encode(), "bad_seq"),
        ("ecg/" + "d" * 65526 + "/beat", json.dumps({"seq": 1, "samples": beat}).encode(), "bad_topic"),
        ("ecg/" + "é" * 200 + "/beat", json.dumps({"seq": 1, "samples": beat}).encode(), "bad_topic"),
    ]
    for i, (topic, payload, _) in enumerate(poison):
        publisher.raw(topic, payload)
        publisher.beat("good", i, beat)
    wait_for(lambda: len(collector.on("/deadletter")) >= len(poison), 30, "dead letters")
    wait_for(lambda: len(collector.on("/score")) >= len(poison), 30, "valid beats scored")
    assert [d["reason"] for d in collector.on("/deadletter")] == [reason for _, _, reason in poison]
    assert daemon.health() == 200
    publisher.beat("good", 99, beat)  # and it still listens
    wait_for(lambda: 99 in {e["seq"] for e in collector.on("/score")}, 30, "a beat after the poison")


ACL_DENY = """user scorer
topic read ecg/+/beat
topic write ecgwatch/+/status
user test
topic readwrite #
"""
ACL_ALLOW = ACL_DENY.replace("topic write ecgwatch/+/status", "topic write ecgwatch/#\ntopic write ecg/#")


def test_refused_publishes_are_not_acked_and_are_scored_once_allowed(running, model, tmp_path, ecg_beats) -> None:
    acl, passwords = tmp_path / "acl", tmp_path / "passwd"
    acl.write_text(ACL_DENY)
    for user in ("scorer", "test"):
        subprocess.run(["mosquitto_passwd", "-b", *(["-c"] if user == "scorer" else []), str(passwords), user, "pw"])
    broker = start(
        running, Mosquitto(tmp_path / "broker", f"allow_anonymous false\npassword_file {passwords}\nacl_file {acl}\n")
    )
    broker.start()
    password_file = tmp_path / "scorer.pw"
    password_file.write_text("pw\n")
    password_file.chmod(0o600)
    auth = {"username": "test", "password": "pw"}
    collector = start(running, Collector(broker.port, **auth))
    publisher = start(running, Publisher(broker.port, **auth))
    env = {"ECGWATCH_MQTT__USERNAME": "scorer", "ECGWATCH_MQTT__PASSWORD_FILE": str(password_file)}
    daemon = start(running, Daemon(broker.port, model, tmp_path / "d1.log", **env)).start()
    n = 20
    for i in range(n):
        publisher.beat("w1", i, ecg_beats.x[i].tolist())
    publisher.raw("ecg/w1/beat", b"not json")
    failures = 'ecgwatch_publish_failures_total{kind="score",reason="Not authorized"}'
    wait_for(lambda: daemon.metrics().get(failures) == n, 30, "every score refused")
    letters = 'ecgwatch_publish_failures_total{kind="deadletter",reason="Not authorized"}'
    wait_for(lambda: daemon.metrics().get(letters) == 1, 30, "the dead letter refused")
    assert daemon.health() == 503, "refused publishes must show in /healthz"
    assert collector.on("/score") == []
    refusals = [e for e in daemon.log_entries() if e["msg"].startswith("the broker refused a publish")]
    assert {"score", "deadletter"} <= {e["kind"] for e in refusals}
    # The operator fixes the ACL; the refused beats were never acknowledged, so the next session gets them.
    acl.write_text(ACL_ALLOW)
    broker.process.send_signal(signal.SIGHUP)
    daemon.stop()
    start(running, Daemon(broker.port, model, tmp_path / "d2.log", **env)).start()
    wait_for(lambda: len({e["seq"] for e in collector.on("/score")}) == n, 30, "every refused beat scored")
    wait_for(lambda: len(collector.on("/deadletter")) == 1, 30, "the refused dead letter delivered")


def test_overload_holds_at_most_queue_size_and_loses_nothing(broker, running, model, tmp_path, ecg_beats) -> None:
    collector = start(running, Collector(broker.port, topics=("ecg/+/score",)))
    publisher = start(running, Publisher(broker.port))
    limit = 32
    env = {"ECGWATCH_BATCH__QUEUE_SIZE": str(limit), "ECGWATCH_MQTT__PUBLISH_ANOMALIES": "false"}
    daemon = start(running, Daemon(broker.port, model, tmp_path / "d.log", **env)).start()
    n = 1500
    payloads = [json.dumps({"seq": i, "samples": ecg_beats.x[i % 500].round(4).tolist()}) for i in range(n)]
    for payload in payloads:  # as fast as the broker takes them, far beyond the daemon's speed
        publisher.client.publish("ecg/w1/beat", payload, qos=1)
    held_seen = []
    deadline = time.monotonic() + 180
    while len(collector.on("/score")) < n:  # scrape as often as we can while the backlog clears
        m = daemon.metrics()
        held_seen.append(m["ecgwatch_beats_received_total"] - m['ecgwatch_messages_published_total{kind="score"}'])
        assert m["ecgwatch_beats_held"] <= limit
        assert m["ecgwatch_beats_held_limit"] == limit
        assert time.monotonic() < deadline, "the overload did not clear"
    assert max(held_seen) <= limit, f"held {max(held_seen)} beats with a limit of {limit}"
    assert max(held_seen) >= limit // 2, "the test must actually overload the daemon"
    assert {e["seq"] for e in collector.on("/score")} == set(range(n))


def test_a_second_sigterm_exits_at_once_with_code_1(broker, running, model, tmp_path, ecg_beats) -> None:
    publisher = start(running, Publisher(broker.port))
    env = {"ECGWATCH_BATCH__MAX_SIZE": "1", "ECGWATCH_GRACE_PERIOD_S": "120"}
    daemon = start(running, Daemon(broker.port, model, tmp_path / "d.log", **env)).start()
    for i in range(600):
        publisher.client.publish("ecg/w1/beat", json.dumps({"seq": i, "samples": ecg_beats.x[i].tolist()}), qos=1)
    wait_for(lambda: daemon.metrics()["ecgwatch_beats_held"] >= 100, 30, "a backlog to drain")
    daemon.signal(signal.SIGTERM)
    wait_for(lambda: daemon.health() == 503, 10, "the drain to begin")
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 1  # not -6 (SIGABRT from unwinding under torch's threads)
    assert time.monotonic() - started < 5
    assert any(e["msg"].startswith("second signal") for e in daemon.log_entries())


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_retained_beats_are_not_scored_again_on_reconnect(
    broker, running, model, tmp_path, ecg_beats, protocol: str
) -> None:
    collector = start(running, Collector(broker.port, topics=("ecg/+/score",)))
    publisher = start(running, Publisher(broker.port))
    for device in range(20):
        publisher.beat(f"w{device}", 0, ecg_beats.x[device].tolist(), retain=True)
    env = {"ECGWATCH_MQTT__PROTOCOL": protocol}
    for run in range(3):
        daemon = start(running, Daemon(broker.port, model, tmp_path / f"d{run}.log", **env)).start()
        publisher.beat("marker", run, ecg_beats.x[0].tolist())  # live beats still flow
        wait_for(lambda r=run: any(e["seq"] == r for e in collector.on("/score")), 30, "the marker's score")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait(20) == 0
    scored = [e for e in collector.on("/score") if e["device_id"] != "marker"]
    assert scored == [], f"{len(scored)} retained beats were scored"


def test_a_broker_that_forgot_our_session_is_flagged(running, model, tmp_path, ecg_beats) -> None:
    broker = start(running, Mosquitto(tmp_path / "broker", persistence=False))
    broker.start()
    daemon = start(running, Daemon(broker.port, model, tmp_path / "d.log")).start()
    assert daemon.metrics()["ecgwatch_mqtt_sessions_lost_total"] == 0
    broker.restart(down_for=0.2)
    wait_for(lambda: daemon.metrics()["ecgwatch_mqtt_sessions_lost_total"] == 1, 30, "the lost session counted")
    warnings = [e for e in daemon.log_entries() if e["level"] == "warning" and "did not keep our session" in e["msg"]]
    assert len(warnings) == 1
