"""TLS and authentication to a real Mosquitto: right CA, wrong CA, client certificates, password files."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecgwatch.demo.brokers import Mosquitto
from tests.factories import make_model
from tests.integration.certificates import Pki, make_pki
from tests.integration.harness import Collector, Daemon, Publisher, wait_for


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return make_model(tmp_path / "model", "tls-model")


@pytest.fixture
def running() -> Iterator[list]:
    started: list = []
    yield started
    for thing in reversed(started):
        thing.close() if hasattr(thing, "close") else thing.stop()


def tls_listener(pki: Pki, require_certificate: bool = False, extra: str = "allow_anonymous true\n") -> str:
    return (
        f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
        f"require_certificate {str(require_certificate).lower()}\n{extra}"
    )


def tls_env(ca: Path, **files: Path) -> dict[str, str]:
    env = {"ECGWATCH_MQTT__TLS__CA_FILE": str(ca)}
    env.update({f"ECGWATCH_MQTT__TLS__{name.upper()}": str(path) for name, path in files.items()})
    return env


def scores_one_beat(running: list, broker: Mosquitto, daemon: Daemon, beat: list[float], **auth: str) -> None:
    collector = Collector(broker.port, **auth)
    running.append(collector)
    publisher = Publisher(broker.port, **auth)
    running.append(publisher)
    publisher.beat("tls-watch", 1, beat)
    wait_for(lambda: len(collector.on("/score")) == 1, 30, "the beat's score over TLS")


def start_broker(running: list, directory: Path, listener: str) -> Mosquitto:
    broker = Mosquitto(directory, listener)
    running.append(broker)
    broker.start()
    return broker


def test_the_right_ca_connects_and_scores(running, pki, model, tmp_path, ecg_beats, data_root) -> None:
    broker = start_broker(running, tmp_path / "broker", tls_listener(pki))
    daemon = Daemon(broker.port, model, tmp_path / "d.log", **tls_env(pki.ca))
    running.append(daemon)
    daemon.start()
    scores_one_beat(running, broker, daemon, ecg_beats.x[0].tolist(), ca_file=str(pki.ca))
    # The simulator speaks TLS with the same options.
    collector = Collector(broker.port, topics=("ecg/+/score",), ca_file=str(pki.ca))
    running.append(collector)
    simulate = [sys.executable, "-m", "ecgwatch", "simulate", "--broker", f"127.0.0.1:{broker.port}"]
    options = ["--mqtt-ca-file", str(pki.ca), "--count", "6", "--devices", "2", "--fast", "--data", str(data_root)]
    subprocess.run([*simulate, *options], check=True, capture_output=True, timeout=120)
    wait_for(lambda: len(collector.on("/score")) >= 6, 30, "the simulated beats' scores")


def test_a_wrong_ca_never_connects_and_says_why(running, pki, model, tmp_path) -> None:
    broker = start_broker(running, tmp_path / "broker", tls_listener(pki))
    daemon = Daemon(broker.port, model, tmp_path / "d.log", **tls_env(pki.other_ca))
    running.append(daemon)
    daemon.launch()
    failures = 'ecgwatch_mqtt_connection_failures_total{stage="tls"}'
    wait_for(lambda: (daemon.metric(failures) or 0) >= 2, 30, "repeated attempts (it keeps retrying)")
    assert daemon.health() == 503
    errors = [e for e in daemon.log_entries() if e["level"] == "error"]
    assert any(e["msg"] == "mqtt TLS certificate verification failed" for e in errors), errors


def test_client_certificates_for_a_broker_that_requires_them(running, pki, model, tmp_path, ecg_beats) -> None:
    broker = start_broker(running, tmp_path / "broker", tls_listener(pki, require_certificate=True))
    files = {"cert_file": pki.client_cert, "key_file": pki.client_key}
    daemon = Daemon(broker.port, model, tmp_path / "d.log", **tls_env(pki.ca, **files))
    running.append(daemon)
    daemon.start()
    auth = {"ca_file": str(pki.ca), "cert_file": str(pki.client_cert), "key_file": str(pki.client_key)}
    scores_one_beat(running, broker, daemon, ecg_beats.x[0].tolist(), **auth)
    without = Daemon(broker.port, model, tmp_path / "d2.log", client_id="no-cert", **tls_env(pki.ca))
    running.append(without)
    without.launch()
    failures = 'ecgwatch_mqtt_connection_failures_total{stage="tls"}'
    wait_for(lambda: (without.metric(failures) or 0) >= 1, 30, "the broker to turn it away")
    assert without.health() == 503


def test_password_file_logs_in_and_a_wrong_password_is_refused(running, pki, model, tmp_path, ecg_beats) -> None:
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "scorer", "s3cret"], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(passwords), "test", "pw"], check=True)
    broker = start_broker(
        running, tmp_path / "broker", tls_listener(pki, extra=f"allow_anonymous false\npassword_file {passwords}\n")
    )
    good, bad = tmp_path / "good.pw", tmp_path / "bad.pw"
    good.write_text("s3cret\n")
    bad.write_text("guess\n")
    for file in (good, bad):
        file.chmod(0o600)
    env = {**tls_env(pki.ca), "ECGWATCH_MQTT__USERNAME": "scorer"}
    daemon = Daemon(broker.port, model, tmp_path / "d.log", ECGWATCH_MQTT__PASSWORD_FILE=str(good), **env)
    running.append(daemon)
    daemon.start()
    scores_one_beat(
        running, broker, daemon, ecg_beats.x[0].tolist(), ca_file=str(pki.ca), username="test", password="pw"
    )
    refused = Daemon(broker.port, model, tmp_path / "d2.log", "refused", ECGWATCH_MQTT__PASSWORD_FILE=str(bad), **env)
    running.append(refused)
    refused.launch()
    failures = 'ecgwatch_mqtt_connection_failures_total{stage="refused"}'
    wait_for(lambda: (refused.metric(failures) or 0) >= 2, 30, "repeated refused logins")
    assert refused.health() == 503
    errors = [e for e in refused.log_entries() if e["msg"] == "mqtt connection refused by the broker"]
    assert errors
    assert "s3cret" not in refused.log.read_text()
    assert "guess" not in refused.log.read_text()
