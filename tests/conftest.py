"""Shared fixtures: the real data directory (CI sets ECGWATCH_DATA_DIR to ../shared/data) and a real broker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecgwatch.datasets import Beats, load_ecg5000
from tests.mqtt_harness import Broker


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = Path(os.environ.get("ECGWATCH_DATA_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    if not (root / "ecg5000").is_dir():
        pytest.fail(f"ECG5000 not found under {root}; set ECGWATCH_DATA_DIR to the shared data directory")
    return root


@pytest.fixture(scope="session")
def ecg_beats(data_root: Path) -> Beats:
    return load_ecg5000(str(data_root))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A private Mosquitto with persistence, stopped after the test."""
    b = Broker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()
