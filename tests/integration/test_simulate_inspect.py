"""The strip simulator and the inspector, as a person runs them, against a daemon and a real Mosquitto."""

from __future__ import annotations

import csv
import subprocess
import sys

from tests.factories import make_model
from tests.integration.harness import Daemon, wait_for


def test_simulated_watches_are_scored_and_a_device_can_be_inspected(broker, tmp_path, data_root) -> None:
    daemon = Daemon(broker.port, make_model(tmp_path / "m", "sim"), tmp_path / "d.log").start()
    address = f"127.0.0.1:{broker.port}"
    picture = tmp_path / "watch-0000.png"
    inspect = [sys.executable, "-m", "ecgwatch", "inspect", "--device", "watch-0000", "--broker", address]
    inspector = subprocess.Popen(
        [*inspect, "--out", str(picture), "--timeout", "90"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert inspector.stderr is not None
        assert "waiting for watch-0000" in inspector.stderr.readline()  # subscribed: now the strips may come
        labels = tmp_path / "labels.csv"
        simulate = [sys.executable, "-m", "ecgwatch", "simulate", "--strips", "--broker", address, "--fast"]
        options = ["--devices", "3", "--seconds", "60", "--records", "100", "106", "--data", str(data_root)]
        artifacts = ["--artifact", "reversed", "--artifact", "noise=20", "--artifact-share", "0.5"]
        subprocess.run([*simulate, *options, *artifacts, "--labels", str(labels)], check=True, capture_output=True)
        _out, err = inspector.communicate(timeout=120)
        assert inspector.returncode == 0, err
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with labels.open() as handle:
            rows = list(csv.DictReader(handle))
        assert {r["device_id"] for r in rows} == {"watch-0000", "watch-0001", "watch-0002"}
        assert {r["record"] for r in rows} == {"100", "106"}
        assert any(r["artifacts"] == "reversed+noise" for r in rows)
        wait_for(lambda: daemon.metrics()["ecgwatch_strips_received_total"] == len(rows), 60, "every strip received")
        assert daemon.metrics()["ecgwatch_beats_detected_total"] > 3 * 60 * 0.8  # about a beat a second
    finally:
        if inspector.poll() is None:
            inspector.kill()
        daemon.stop()
