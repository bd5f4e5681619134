"""Real components for integration tests: MQTT clients that collect and publish, the daemon as a process.

Brokers are the project's own launcher, :class:`ecgwatch.demo.brokers.Mosquitto`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from ecgwatch.demo.brokers import free_port


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def client(client_id: str, port: int, clean_session: bool = True, **auth: str) -> mqtt.Client:
    """A paho client; ``auth`` may hold username/password and ca_file/cert_file/key_file for TLS."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)
    if "username" in auth:
        c.username_pw_set(auth["username"], auth.get("password"))
    if "ca_file" in auth:
        c.tls_set(ca_certs=auth["ca_file"], certfile=auth.get("cert_file"), keyfile=auth.get("key_file"))
    c.max_inflight_messages_set(1000)
    c.connect_async("127.0.0.1", port)
    return c


def connack(port: int, timeout: float = 10, **auth: str) -> mqtt.ReasonCode | None:
    """The broker's answer to a connection with ``auth`` (None: no answer within ``timeout``)."""
    answer: list[mqtt.ReasonCode] = []
    answered = threading.Event()
    c = client(f"probe-{free_port()}", port, **auth)

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: mqtt.ReasonCode, _p: Any) -> None:
        answer.append(reason)
        answered.set()

    c.on_connect = on_connect
    c.loop_start()
    answered.wait(timeout)
    c.loop_stop()
    c.disconnect()
    return answer[0] if answer else None


class Collector:
    """Subscribes to what the daemon publishes and keeps every message, decoded."""

    def __init__(
        self, port: int, topics: Iterable[str] = ("ecg/+/score", "ecg/+/anomaly", "ecgwatch/#"), **auth: str
    ) -> None:
        self.messages: list[tuple[str, Any]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        # A persistent session, like a real subscriber's: the broker (persistence on) keeps its subscription and
        # queues scores while it is down or restarting, and paho reconnects by itself.
        self.client = client(f"collector-{free_port()}", port, clean_session=False, **auth)
        self.client.reconnect_delay_set(1, 2)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: [c.subscribe(t, qos=1) for t in topics]
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise AssertionError("the collector could not subscribe")

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        try:
            body: Any = json.loads(message.payload)
        except ValueError:
            body = message.payload.decode(errors="replace")
        with self.lock:
            self.messages.append((message.topic, body))

    def on(self, suffix: str) -> list[Any]:
        with self.lock:
            return [body for topic, body in self.messages if topic.endswith(suffix)]

    def scored_seqs(self) -> set[tuple[str, int]]:
        return {(e["device_id"], e["seq"]) for e in self.on("/score")}

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Publisher:
    def __init__(self, port: int, **auth: str) -> None:
        self.client = client(f"publisher-{free_port()}", port, **auth)
        connected = threading.Event()
        self.client.on_connect = lambda *_: connected.set()
        self.client.loop_start()
        if not connected.wait(10):
            raise AssertionError("the publisher could not connect")

    def beat(self, device: str, seq: int, samples: Iterable[float], retain: bool = False, **extra: Any) -> None:
        payload = json.dumps({"seq": seq, "ts": time.time(), "samples": list(samples), **extra})
        self.raw(f"ecg/{device}/beat", payload.encode(), retain)

    def raw(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Daemon:
    """``ecgwatch serve`` as a real process, configured through environment variables."""

    def __init__(self, broker_port: int, model: Path, log: Path, client_id: str = "ecgwatch-test", **env: str) -> None:
        self.metrics_port = free_port()
        self.log = log
        self.env = {
            **os.environ,
            "ECGWATCH_MQTT__PORT": str(broker_port),
            "ECGWATCH_MQTT__HOST": "127.0.0.1",
            "ECGWATCH_MQTT__CLIENT_ID": client_id,
            "ECGWATCH_MQTT__RECONNECT_MIN_S": "1",
            "ECGWATCH_MQTT__RECONNECT_MAX_S": "2",
            "ECGWATCH_INSTANCE": client_id,
            "ECGWATCH_MODEL__PATH": str(model),
            "ECGWATCH_MODEL__WATCH_INTERVAL_S": "0.5",
            "ECGWATCH_METRICS__PORT": str(self.metrics_port),
            "ECGWATCH_BATCH__THREADS": "1",
            "ECGWATCH_STATE__PATH": str(log.parent / f"{client_id}-state" / "devices.sqlite3"),
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def launch(self) -> Daemon:
        """Start the process without waiting for it to become healthy."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "ecgwatch", "serve"], env=self.env, stderr=log)
        return self

    def start(self) -> Daemon:
        self.launch()
        wait_for(lambda: self.health() == 200, 60, "the daemon to become healthy")
        return self

    def metric(self, name: str) -> float | None:
        """One value from /metrics, or None while the metrics server is not up yet."""
        try:
            return self.metrics().get(name)
        except OSError:
            return None

    def health(self, path: str = "/healthz") -> int | None:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"daemon exited with {self.process.returncode}: {self.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=1) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:  # 503 and friends: the daemon answered
            return int(error.code)
        except OSError:
            return None

    def metrics(self) -> dict[str, float]:
        """Parsed /metrics: ``name{labels}`` -> value."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def log_entries(self) -> list[dict[str, Any]]:
        """The daemon's structured log lines so far (mosquitto's and Python's own lines skipped)."""
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
