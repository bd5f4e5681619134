"""A scoring thread that dies must stop the daemon with an error, not leave it looking healthy and idle."""

from __future__ import annotations

import threading

import numpy as np

from ecgwatch.config import Settings
from ecgwatch.service import Service
from tests.mqtt_harness import Publisher, wait_for


def test_a_crashing_scorer_stops_the_daemon_with_exit_code_1(broker, tmp_path, ecg_beats, monkeypatch) -> None:
    settings = Settings(
        mqtt={"host": "127.0.0.1", "port": broker.port, "client_id": "crash-test"},
        metrics={"enabled": False},
        model={"watch": False},
        grace_period_s=5,
    )
    service = Service(settings)

    def broken(_batch: object) -> None:
        raise RuntimeError("simulated scorer bug")

    monkeypatch.setattr(service, "_score_batch", broken)
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
