"""A real broker per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ecgwatch.demo.brokers import Mosquitto, mosquitto_binary

if mosquitto_binary() is None:
    pytest.fail("mosquitto is not installed; `make test` installs it (Debian package)", pytrace=False)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private Mosquitto with persistence, so a restart keeps sessions like a real deployment; stopped after."""
    b = Mosquitto(tmp_path / "broker", persistence=True).start()
    yield b
    b.stop()
