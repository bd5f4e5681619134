"""Two daemons in one shared-subscription group keep one device's stream continuous through a real Redis."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ecgwatch.artifact import POPULATION_MODEL_DIR
from ecgwatch.datasets.mitbih import load_record
from ecgwatch.demo.brokers import free_port
from tests.factories import make_model
from tests.integration.harness import Collector, Daemon, Publisher, wait_for
from tests.integration.test_daemon_strips import STRIP, T0, strip_payload


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; `make test` installs it (Debian package)")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)

    def up() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_for(up, 10, "redis to answer")
    yield url
    client.close()
    process.terminate()
    process.wait(10)


def commits(members: list[Daemon]) -> float:
    return sum(m.metrics()["ecgwatch_device_state_bytes_count"] for m in members)


def test_strips_split_across_a_shared_group_stay_one_stream(broker, redis_url, tmp_path, data_root) -> None:
    record = load_record(data_root / "mitbih", "100")
    model = make_model(tmp_path / "model", "shared", threshold=1e9)
    env = {
        "ECGWATCH_MQTT__SHARED_GROUP": "scorers",
        "ECGWATCH_STATE__BACKEND": "redis",
        "ECGWATCH_STATE__REDIS_URL": redis_url,
    }
    members = [Daemon(broker.port, model, tmp_path / f"{n}.log", client_id=n, **env) for n in ("member-a", "member-b")]
    collector, publisher = Collector(broker.port, topics=("ecg/+/score",)), Publisher(broker.port)
    try:
        for member in members:
            member.start()
        n = 8
        for seq in range(n):  # one at a time, as a watch sends them: each strip done (committed) before the next
            publisher.raw("ecg/w1/strip", strip_payload(seq, record.signal[seq * STRIP : (seq + 1) * STRIP]))
            wait_for(lambda s=seq: commits(members) == s + 1, 30, f"strip {seq} committed")
        wait_for(lambda: sum(m.metrics()["ecgwatch_strips_received_total"] for m in members) == n, 10, "all")
        outcomes = [m.metrics() for m in members]
        assert all(m["ecgwatch_strips_received_total"] > 0 for m in outcomes), "both members took strips"
        assert sum(m['ecgwatch_strips_total{outcome="next"}'] for m in outcomes) == n - 1  # continuous throughout
        incomplete = [e for e in collector.on("/score") if e["quality"] == "incomplete"]
        assert incomplete == []
    finally:
        for member in members:
            member.stop()
        collector.close()
        publisher.close()


def test_a_device_enrols_across_the_members_of_a_shared_group(broker, redis_url, tmp_path, data_root) -> None:
    """Before: each strip reloaded the device's state, which did not hold the enrolment so far: with the redis
    backend no device ever enrolled (every beat "enrolling", forever)."""
    record = load_record(data_root / "mitbih", "100")
    env = {
        "ECGWATCH_MQTT__SHARED_GROUP": "scorers",
        "ECGWATCH_STATE__BACKEND": "redis",
        "ECGWATCH_STATE__REDIS_URL": redis_url,
        "ECGWATCH_MODEL__ENROLMENT_S": "25",
    }
    members = [
        Daemon(broker.port, POPULATION_MODEL_DIR, tmp_path / f"{n}.log", client_id=n, **env) for n in ("pa", "pb")
    ]
    collector, publisher = Collector(broker.port, topics=("ecg/+/score",)), Publisher(broker.port)
    try:
        for member in members:
            member.start()
        n = 6
        for seq in range(n):
            publisher.raw("ecg/w2/strip", strip_payload(seq, record.signal[seq * STRIP : (seq + 1) * STRIP]))
            wait_for(lambda s=seq: commits(members) == s + 1, 30, f"strip {seq} committed")
        assert sum(m.metrics()["ecgwatch_devices_enrolled_total"] for m in members) == 1
        judged = [e for e in collector.on("/score") if e["score"] is not None]
        assert judged, "beats after the enrolment are judged"
        assert all(e["t"] - T0 >= 25 for e in judged)
    finally:
        for member in members:
            member.stop()
        collector.close()
        publisher.close()
