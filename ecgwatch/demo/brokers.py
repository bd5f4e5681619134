"""An MQTT broker for the demo: an existing one, a private Mosquitto, or amqtt embedded in-process."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
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


def _accepting(port: int) -> bool:
    with contextlib.suppress(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    return False


def _wait_accepting(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _accepting(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"broker did not start listening on 127.0.0.1:{port} within {timeout}s")


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


class Mosquitto:
    """A private Mosquitto on a free port of 127.0.0.1: the one launcher the demo, tests and benchmarks use.

    ``listener`` holds the listener's options (default: anonymous; TLS, password files and ACLs go here).
    With ``persistence``, a restart keeps sessions and queued messages, as a real deployment does.
    """

    def __init__(
        self,
        directory: Path,
        listener: str = "allow_anonymous true\n",
        persistence: bool = False,
        binary: str | None = None,
        max_queued: int = 100000,
    ) -> None:
        found = binary or mosquitto_binary()
        if found is None:
            raise RuntimeError("mosquitto is not installed")
        self.binary = found
        self.port = free_port()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.config = directory / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n{listener}persistence {str(persistence).lower()}\n"
            f"user {getpass.getuser()}\npersistence_location {directory}/\n"
            f"max_queued_messages {max_queued}\nmax_inflight_messages 0\nlog_dest file {directory}/mosquitto.log\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> BrokerAddress:
        return BrokerAddress("127.0.0.1", self.port, "5", "mosquitto", self.process.pid if self.process else None)

    def start(self) -> Mosquitto:
        self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stderr=subprocess.DEVNULL)  # noqa: S603
        _wait_accepting(self.port, 10)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: mosquitto saves its persistence file
            self.process.wait(10)

    def restart(self, down_for: float = 1.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


@contextlib.contextmanager
def mosquitto(binary: str | None = None, max_queued: int = 100000) -> Iterator[BrokerAddress]:
    """A private Mosquitto for the life of the block; ``max_queued`` per client (0: no limit)."""
    with tempfile.TemporaryDirectory(prefix="ecgwatch-broker-") as tmp:
        broker = Mosquitto(Path(tmp), binary=binary, max_queued=max_queued).start()
        try:
            yield broker.address
        finally:
            broker.stop()


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
    binary = None if force_embedded else mosquitto_binary()
    with mosquitto(binary) if binary else embedded() as broker:
        yield broker
