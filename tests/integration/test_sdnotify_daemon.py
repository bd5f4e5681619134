"""systemd readiness: the daemon, run under a fake NOTIFY_SOCKET, sends READY=1, WATCHDOG=1 and STOPPING=1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ecgwatch.demo.brokers import Mosquitto, free_port
from tests.factories import make_model


def test_daemon_notifies_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    sock_path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(sock_path)
    listener.settimeout(0.5)
    env = {
        **os.environ,
        "NOTIFY_SOCKET": sock_path,
        "WATCHDOG_USEC": "2000000",
        "ECGWATCH_MQTT__HOST": "127.0.0.1",
        "ECGWATCH_MQTT__PORT": str(broker.port),
        "ECGWATCH_MQTT__CLIENT_ID": "notify-test",
        "ECGWATCH_METRICS__PORT": str(free_port()),
        "ECGWATCH_MODEL__PATH": str(make_model(tmp_path / "model", "notify-test")),
    }
    process = subprocess.Popen([sys.executable, "-m", "ecgwatch", "serve"], env=env, stderr=subprocess.DEVNULL)
    received: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not ("READY=1" in received and received.count("WATCHDOG=1") >= 2):
            try:
                received.extend(listener.recv(4096).decode().splitlines())
            except TimeoutError:
                continue
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        while True:
            try:
                received.extend(listener.recv(4096).decode().splitlines())
            except TimeoutError:
                break
    finally:
        if process.poll() is None:
            process.kill()
        listener.close()
        broker.stop()
    assert "READY=1" in received
    assert any(line.startswith("STATUS=serving notify-test") for line in received)
    assert received.count("WATCHDOG=1") >= 2
    assert "STOPPING=1" in received
    assert received.index("READY=1") < received.index("STOPPING=1")
