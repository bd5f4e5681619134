"""Poison messages through a real Mosquitto: malformed payloads interleaved with valid beats.

Run: ECGWATCH_DATA_DIR=../shared/data python -m benchmarks.poison [--malformed 2000]

Every malformed payload must come back as a dead letter, every valid beat as a score, and the daemon must
stay healthy throughout. The payloads are drawn (seeded) from the shapes that took the daemon down or
slipped through before: deep nesting, huge numbers, wrong types, truncation, random bytes, bad device ids.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import paho.mqtt.client as mqtt

from benchmarks._common import report
from benchmarks.serve_throughput import serving_daemon
from ecgwatch.datasets import load_ecg5000
from ecgwatch.demo.brokers import mosquitto


def malformed_payloads(rng: random.Random, beat: list[float]) -> list[Callable[[], tuple[str, bytes]]]:
    valid = json.dumps({"seq": 1, "samples": beat}).encode()

    def on(payload: bytes, device: str = "fuzz") -> tuple[str, bytes]:
        return f"ecg/{device}/beat", payload

    return [
        lambda: on(b"[" * rng.randint(500, 5000) + b"]" * rng.randint(0, 5000)),
        lambda: on(b'{"a":' * rng.randint(500, 3000) + b"1" + b"}" * rng.randint(0, 3000)),
        lambda: on(json.dumps({"seq": 1, "ts": 10 ** rng.randint(309, 2000), "samples": beat}).encode()),
        lambda: on(json.dumps({"seq": 2 ** rng.randint(54, 400), "samples": beat}).encode()),
        lambda: on(json.dumps({"seq": -rng.randint(1, 10**6), "samples": beat}).encode()),
        lambda: on(json.dumps({"seq": 1, "samples": [10 ** rng.randint(10, 400)] * 140}).encode()),
        lambda: on(json.dumps({"seq": 1, "samples": rng.choice(["x", None, {}, [[1.0]], True])}).encode()),
        lambda: on(valid[: rng.randint(0, len(valid) - 1)]),
        lambda: on(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))),
        lambda: on(json.dumps({"seq": 1, "samples": [1.0] * rng.choice([0, 1, 10, 1001, 5000])}).encode()),
        lambda: on(b'{"seq": 1, "samples": [NaN' + b", 1.0" * 139 + b"]}"),
        lambda: on(valid, "d" * rng.randint(257, 65400)),  # wildcards and control characters in a topic the
        lambda: on(valid, "é" * rng.randint(129, 2000)),  # broker itself refuses, so they cannot reach us here
        lambda: on(b" " * rng.randint(70_000, 200_000)),
    ]


class Collector:
    def __init__(self, host: str, port: int) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.reasons: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="poison-collector")
        self.client.on_connect = lambda c, *_: c.subscribe([("ecg/+/score", 1), ("ecgwatch/deadletter", 1)])
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        ready.wait(10)

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        body = json.loads(message.payload)
        with self.lock:
            if message.topic == "ecgwatch/deadletter":
                self.counts["deadletter"] += 1
                self.reasons[body["reason"]] += 1
            else:
                self.counts["score"] += 1


def health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--malformed", type=int, default=2000)
    parser.add_argument("--valid-every", type=int, default=4, help="one valid beat after this many malformed")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.batch, args.threads = 64, 1
    rng = random.Random(args.seed)
    beats = load_ecg5000().x
    makers = malformed_payloads(rng, beats[0].round(4).tolist())
    with mosquitto("/usr/sbin/mosquitto") as broker, serving_daemon(broker, args) as daemon:
        collector = Collector(broker.host, broker.port)
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="poison-publisher")
        publisher.max_inflight_messages_set(100)
        publisher.connect(broker.host, broker.port)
        publisher.loop_start()
        valid = unhealthy = 0
        for i in range(args.malformed):
            topic, payload = rng.choice(makers)()
            publisher.publish(topic, payload, qos=1).wait_for_publish(30)
            if i % args.valid_every == 0:
                beat = json.dumps({"seq": valid, "samples": beats[valid % len(beats)].round(4).tolist()})
                publisher.publish("ecg/good/beat", beat, qos=1).wait_for_publish(30)
                valid += 1
            if i % 100 == 0:
                unhealthy += health(daemon.metrics_port) != 200
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (
            collector.counts["deadletter"] < args.malformed or collector.counts["score"] < valid
        ):
            time.sleep(0.2)
        final_health = health(daemon.metrics_port)
        alive = daemon.process.poll() is None
    report("malformed payloads sent", args.malformed, "messages")
    report("dead letters received", collector.counts["deadletter"], "messages")
    report("valid beats sent", valid, "beats")
    report("valid beats scored", collector.counts["score"], "beats")
    report("health checks not 200 during the run", unhealthy, f"of {args.malformed // 100}")
    report("health at the end (200 = ok)", final_health, f"daemon {'running' if alive else 'EXITED'}")
    for reason, count in sorted(collector.reasons.items()):
        report(f"  dead letters: {reason}", count, "messages")


if __name__ == "__main__":
    main()
