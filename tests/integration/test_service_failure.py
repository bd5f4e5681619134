"""A scoring or publishing thread that dies must stop the daemon with an error, not leave it looking healthy."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from ecgwatch.serve.config import Settings
from ecgwatch.serve.service import Service
from tests.integration.harness import Publisher, wait_for


@pytest.mark.parametrize("stage", ["_score_batch", "_publish_batch"])
def test_a_crashing_worker_stops_the_daemon_with_exit_code_1(broker, ecg_beats, monkeypatch, stage: str) -> None:
    settings = Settings(
        mqtt={"host": "127.0.0.1", "port": broker.port, "client_id": f"crash-test{stage}"},
        metrics={"enabled": False},
        model={"watch": False},
        grace_period_s=5,
    )
    service = Service(settings)

    def broken(_batch: object) -> None:
        raise RuntimeError(f"simulated bug in {stage}")

    monkeypatch.setattr(service.pipeline, stage, broken)
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(service.run(install_signals=False)))
    runner.start()
    wait_for(service.mqtt.connected.is_set, 10, "the daemon to connect")
    publisher = Publisher(broker.port)
    publisher.beat("w1", 0, np.asarray(ecg_beats.x[0]).tolist())
    runner.join(20)
    publisher.close()
    assert result == [1]
    assert service.healthy() == (False, "scoring failed")
