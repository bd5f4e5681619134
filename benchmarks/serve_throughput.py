"""End-to-end serving throughput through Mosquitto vs the raw batched model and a naive consumer.

Run: ECGWATCH_DATA_DIR=../shared/data python -m benchmarks.serve_throughput [--beats 4000]

All three are measured in this one run on the same machine and printed with their ratios. The daemon is a
real ``ecgwatch serve`` process (its peak resident memory is read from /proc); publisher and collector run
in this process and share the CPU with it, as they would on a small edge box.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import torch

from benchmarks._common import report
from ecgwatch import artifact
from ecgwatch.brokers import BrokerAddress, free_port, mosquitto
from ecgwatch.datasets import load_ecg5000
from ecgwatch.scorer import Scorer


class Counter:
    def __init__(self, broker: BrokerAddress, expected: int) -> None:
        self.expected = expected
        self.latencies: list[float] = []
        self.done = threading.Event()
        self.last_arrival = 0.0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-counter-{free_port()}")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe("ecg/+/score", qos=1)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        now = time.time()
        self.latencies.append(now - json.loads(message.payload)["received_at"])
        self.last_arrival = time.monotonic()
        if len(self.latencies) >= self.expected:
            self.done.set()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def payloads(beats: np.ndarray, n: int) -> list[tuple[str, bytes]]:
    return [
        (
            f"ecg/watch-{i % 50}/beat",
            json.dumps({"seq": i, "samples": beats[i % len(beats)].round(5).tolist()}).encode(),
        )
        for i in range(n)
    ]


def blast(broker: BrokerAddress, messages: list[tuple[str, bytes]], counter: Counter, timeout: float) -> float:
    """Publish everything as fast as possible; seconds from first publish to last score received."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{free_port()}")
    client.max_inflight_messages_set(0)  # paho rescans in-flight messages per PUBACK when limited
    client.connect(broker.host, broker.port)
    client.loop_start()
    started = time.monotonic()
    for topic, payload in messages:
        client.publish(topic, payload, qos=1)
    if not counter.done.wait(timeout):
        raise RuntimeError(f"only {len(counter.latencies)} of {counter.expected} scores arrived in {timeout}s")
    elapsed = counter.last_arrival - started
    client.loop_stop()
    client.disconnect()
    return elapsed


def raw_model_rate(scorer: Scorer, beats: np.ndarray, batch: int) -> float:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        for i in range(0, len(beats), batch):
            scorer.score(beats[i : i + batch])
        times.append(time.perf_counter() - started)
    return len(beats) / statistics.median(times)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def daemon_run(broker: BrokerAddress, messages: list[tuple[str, bytes]], args: argparse.Namespace) -> dict[str, float]:
    metrics_port = free_port()
    env = {
        **os.environ,
        "ECGWATCH_MQTT__HOST": broker.host,
        "ECGWATCH_MQTT__PORT": str(broker.port),
        "ECGWATCH_MQTT__CLIENT_ID": f"bench-daemon-{free_port()}",
        "ECGWATCH_METRICS__PORT": str(metrics_port),
        "ECGWATCH_BATCH__MAX_SIZE": str(args.batch),
        "ECGWATCH_BATCH__THREADS": str(args.threads),
        "ECGWATCH_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, "-m", "ecgwatch", "serve"], env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/healthz", timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        counter = Counter(broker, len(messages))
        elapsed = blast(broker, messages, counter, timeout=600)
        counter.close()
        latencies = np.array(counter.latencies)
        return {
            "rate": len(messages) / elapsed,
            "p50": float(np.percentile(latencies, 50)),
            "p99": float(np.percentile(latencies, 99)),
            "rss_mb": peak_rss_mb(process.pid),
        }
    finally:
        process.terminate()
        process.wait(30)


def naive_run(broker: BrokerAddress, messages: list[tuple[str, bytes]], scorer: Scorer) -> float:
    """One message at a time in on_message: parse, score at batch 1, publish -- the obvious first version."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-naive-{free_port()}")

    def on_message(c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        body = json.loads(message.payload)
        received = time.time()
        score = float(scorer.score(np.asarray([body["samples"]], dtype=np.float64)).scores[0])
        device = message.topic.split("/")[1]
        c.publish(
            f"ecg/{device}/score", json.dumps({"seq": body["seq"], "score": score, "received_at": received}), qos=1
        )

    client.on_message = on_message
    client.connect(broker.host, broker.port)
    client.subscribe("ecg/+/beat", qos=1)
    client.loop_start()
    counter = Counter(broker, len(messages))
    try:
        return len(messages) / blast(broker, messages, counter, timeout=900)
    finally:
        counter.close()
        client.loop_stop()
        client.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--beats", type=int, default=4000)
    parser.add_argument("--naive-beats", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    beats = load_ecg5000().x
    scorer = Scorer(artifact.load(artifact.REFERENCE_MODEL_DIR), torch.device("cpu"))
    raw = raw_model_rate(scorer, beats[: args.beats], args.batch)
    with mosquitto("/usr/sbin/mosquitto") as broker:
        served = daemon_run(broker, payloads(beats, args.beats), args)
        naive = naive_run(broker, payloads(beats, args.naive_beats), scorer)
    print(f"model {scorer.loaded.version}, {args.threads} threads, batch {args.batch}, {args.beats} beats")
    report(f"raw batched model (batch {args.batch})", raw, "beats/s")
    report("daemon end to end through Mosquitto", served["rate"], "beats/s")
    report("naive one-message-at-a-time consumer", naive, "beats/s")
    report("end to end / raw batched model", served["rate"] / raw, "x")
    report("end to end / naive consumer", served["rate"] / naive, "x")
    report("end-to-end latency p50 (receive -> score arrives)", served["p50"] * 1000, "ms")
    report("end-to-end latency p99", served["p99"] * 1000, "ms")
    report("daemon peak resident memory (VmHWM)", served["rss_mb"], "MB")


if __name__ == "__main__":
    main()
