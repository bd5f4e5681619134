"""Shared fixtures: the real data directory (CI sets ECGWATCH_DATA_DIR to ../shared/data).

Everything under ``tests/integration/`` starts a real broker or server and is marked ``integration``
(``pytest -m "not integration"`` runs the fast unit tests alone).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from ecgwatch.datasets import Beats, load_ecg5000

INTEGRATION = Path(__file__).parent / "integration"
# Daemons built in-process keep device state under $XDG_STATE_HOME: never the developer's own.
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="ecgwatch-test-state-")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = Path(os.environ.get("ECGWATCH_DATA_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    if not (root / "ecg5000").is_dir():
        pytest.fail(f"ECG5000 not found under {root}; set ECGWATCH_DATA_DIR to the shared data directory")
    return root


@pytest.fixture(scope="session")
def ecg_beats(data_root: Path) -> Beats:
    return load_ecg5000(str(data_root))
