"""The MQTT contract (docs/asyncapi.yaml, ecgwatch/serve/schemas) checked on payloads a real daemon published
through Mosquitto: every score, episode and dead letter validates, and MQTT 5 properties name the content."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
import pytest

from ecgwatch.artifact import POPULATION_MODEL_DIR
from ecgwatch.datasets.mitbih import load_record
from ecgwatch.demo.brokers import Mosquitto, free_port
from ecgwatch.serve.messages import SCHEMA_VERSION
from tests.integration.harness import Daemon, Publisher, wait_for

SCHEMAS = Path(__file__).resolve().parents[2] / "ecgwatch" / "serve" / "schemas"
FS = 360


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{name}.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


class Capture:
    """Every message with its MQTT 5 properties (the harness's Collector keeps only bodies)."""

    def __init__(self, port: int) -> None:
        self.messages: list[tuple[str, bytes, Any]] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"capture-{free_port()}", protocol=mqtt.MQTTv5
        )
        self.client.on_connect = lambda c, *_: c.subscribe(
            [("ecg/+/score", 1), ("ecg/+/episode", 1), ("ecg/+/summary", 1), ("ecgwatch/deadletter", 1)]
        )
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload, message.properties))

    def on(self, suffix: str) -> list[tuple[str, bytes, Any]]:
        with self.lock:
            return [m for m in self.messages if m[0].endswith(suffix)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.mark.parametrize("name", ["beat", "strip", "score", "episode", "summary", "deadletter"])
def test_schemas_are_valid_json_schema(name: str) -> None:
    validator(name)


def test_payloads_from_a_running_daemon_match_the_contract(
    broker: Mosquitto, tmp_path: Path, data_root: Path, ecg_beats
) -> None:
    record = load_record(data_root / "mitbih", "106")
    capture = Capture(broker.port)
    publisher = Publisher(broker.port)
    daemon = Daemon(
        broker.port,
        POPULATION_MODEL_DIR,
        tmp_path / "d.log",
        ECGWATCH_MODEL__ENROLMENT_S="20",
        ECGWATCH_EPISODES__MIN_DURATION_S='{"bigeminy": 0, "trigeminy": 0, "frequent_ectopy": 0}',
    )
    sent: list[tuple[str, dict[str, Any]]] = []
    try:
        daemon.start()
        for seq in range(12):
            strip = {
                "seq": seq,
                "ts": 1.8e9 + seq * 10,
                "fs": FS,
                "samples": record.signal[seq * 3600 : (seq + 1) * 3600].round(4).tolist(),
            }
            sent.append(("strip", strip))
            publisher.raw("ecg/w106/strip", json.dumps(strip).encode())
        beat = {"seq": 0, "ts": 1.8e9, "samples": ecg_beats.x[0].tolist()}
        sent.append(("beat", beat))
        publisher.raw("ecg/w1/beat", json.dumps(beat).encode())
        publisher.raw("ecg/w1/beat", json.dumps({"seq": "one", "samples": [0.0] * 140}).encode())
        publisher.raw("ecg/w1/beat", b"\xff\xfe")
        wait_for(lambda: len(capture.on("/deadletter")) == 2, 60, "two dead letters")
        wait_for(
            lambda: any(json.loads(p).get("t", 0) > 1.8e9 + 110 for _, p, _ in capture.on("/score")),
            120,
            "the strips' beats",
        )
        wait_for(lambda: any(json.loads(p).get("seq") == 0 for _, p, _ in capture.on("/score")), 60, "the beat")
    finally:
        daemon.stop()
        capture.close()
        publisher.close()
    for kind, payload in sent:
        validator(kind).validate(payload)
    with pytest.raises(jsonschema.ValidationError):
        validator("beat").validate({"seq": "one", "samples": [0.0] * 140})
    events = {
        name: [json.loads(p) for _, p, _ in capture.on(suffix)]
        for name, suffix in (
            ("score", "/score"), ("episode", "/episode"), ("summary", "/summary"), ("deadletter", "/deadletter")
        )
    }  # fmt: skip
    assert any(e.get("enrolling") for e in events["score"])
    assert any(e.get("fired") for e in events["score"])
    assert events["episode"], "record 106 opens an episode within two minutes"
    assert events["summary"], "and its device has a summary"
    for name, payloads in events.items():
        for payload in payloads:
            validator(name).validate(payload)
            assert payload["schema_version"] == SCHEMA_VERSION
    for _topic, _payload, properties in capture.messages:
        assert properties.ContentType == "application/json"
        assert properties.PayloadFormatIndicator == 1
        user = dict(properties.UserProperty)
        assert user["schema_version"] == str(SCHEMA_VERSION)
        assert user["model"].startswith("ecg-population")
