"""An MQTT broker for the demo: an existing one, a private Mosquitto, or amqtt embedded in-process."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    protocol: str  # "5" or "3.1.1": what the daemon should speak to it
    kind: str
    pid: int | None = None  # our own Mosquitto's process, for CPU accounting in benchmarks


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_accepting(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        time.sleep(0.05)
    raise RuntimeError(f"broker did not start listening on 127.0.0.1:{port} within {timeout}s")


@contextlib.contextmanager
def mosquitto(binary: str) -> Iterator[BrokerAddress]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ecgwatch-demo-") as tmp:
        config = Path(tmp) / "mosquitto.conf"
        config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n")
        process = subprocess.Popen([binary, "-c", str(config)], stderr=subprocess.DEVNULL)  # noqa: S603 - our own config
        try:
            _wait_accepting(port, 10)
            yield BrokerAddress("127.0.0.1", port, "5", "mosquitto", process.pid)
        finally:
            process.terminate()
            process.wait(10)


@contextlib.contextmanager
def embedded() -> Iterator[BrokerAddress]:
    """amqtt in a background event loop: pure Python, MQTT 3.1.1 only."""
    try:
        from amqtt.broker import Broker
    except ImportError as exc:
        raise RuntimeError("no broker: install mosquitto, pip install 'ecgwatch[demo]', or pass --broker") from exc
    port = free_port()
    loop = asyncio.new_event_loop()
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    broker = Broker(config, loop=loop)
    thread = threading.Thread(target=loop.run_forever, name="embedded-broker", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(broker.start(), loop).result(10)
    try:
        yield BrokerAddress("127.0.0.1", port, "3.1.1", "embedded amqtt")
    finally:
        asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@contextlib.contextmanager
def demo_broker(address: str | None, force_embedded: bool = False) -> Iterator[BrokerAddress]:
    """``host:port`` if given, else a private Mosquitto if installed, else the embedded broker."""
    if address:
        host, _, port = address.rpartition(":")
        yield BrokerAddress(host or "localhost", int(port), "5", "external")
        return
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if force_embedded:
        binary = None
    with mosquitto(binary) if binary else embedded() as broker:
        yield broker
