"""Per-device state that must survive a restart: the stream's track, open episodes, skipped strips.

A device's state is written when one of its strips is acknowledged (after every event that strip caused is
confirmed), never before, so a crash leaves the state of the last acknowledged strip and the broker
redelivers the rest: processing them again from that state yields the same beats.

- :class:`SqliteStore`: one file in the state directory, for a single instance (the default).
- :class:`RedisStore`: shared by the N members of one shared-subscription group, so that whichever member
  gets a device's next strip continues where another left off.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Protocol

from ecgwatch.serve.config import StateSettings


class DeviceStore(Protocol):
    shared: bool  # other instances write it too: reload a device's state before each strip

    def load(self, device: str) -> bytes | None: ...

    def save(self, device: str, state: bytes) -> None: ...

    def close(self) -> None: ...


class SqliteStore:
    shared = False

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # saves come from paho's thread, loads from the segmenting thread
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process crash
        self._db.execute("CREATE TABLE IF NOT EXISTS devices (id TEXT PRIMARY KEY, state BLOB NOT NULL)")

    def load(self, device: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT state FROM devices WHERE id = ?", (device,)).fetchone()
        return None if row is None else bytes(row[0])

    def save(self, device: str, state: bytes) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO devices (id, state) VALUES (?, ?)", (device, state))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RedisStore:
    shared = True
    PREFIX = "ecgwatch:device:"

    def __init__(self, url: str) -> None:
        import redis  # only for the redis backend

        self._redis = redis.Redis.from_url(url)
        self._redis.ping()  # a wrong URL stops start-up, not the first strip

    def load(self, device: str) -> bytes | None:
        value = self._redis.get(self.PREFIX + device)
        return None if value is None else bytes(value)  # type: ignore[arg-type]

    def save(self, device: str, state: bytes) -> None:
        self._redis.set(self.PREFIX + device, state)

    def close(self) -> None:
        self._redis.close()


def open_store(settings: StateSettings) -> DeviceStore:
    if settings.backend == "redis":
        return RedisStore(settings.redis_url)
    return SqliteStore(settings.path)
