"""``ecgwatch simulate``: smartwatches publishing ECG5000 beats over MQTT, with the true labels on the side.

Each device sends about one beat a second with jitter (or as fast as the broker takes them, for load tests).
Beats get a per-device gain and baseline offset, as raw sensor values would, so the daemon's per-beat
normalisation is exercised. The labels file lets a run be scored afterwards (see ``ecgwatch demo``).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from tqdm import tqdm

from ecgwatch import artifact
from ecgwatch.datasets import Beats, load_ecg5000, make_split
from ecgwatch.serve.config import MqttSettings
from ecgwatch.serve.mqtt_session import secure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimulationConfig:
    mqtt: MqttSettings  # broker address, credentials and TLS: the daemon's own settings section
    devices: int = 10
    count: int = 100
    rate_hz: float = 1.0
    jitter: float = 0.1
    fast: bool = False
    topic: str = "ecg/{device}/beat"
    seed: int = 0
    client_id: str = "ecgwatch-simulator"


@dataclass(frozen=True)
class SentBeat:
    device_id: str
    seq: int
    row: int
    label: int
    payload: bytes


def pick_beats(beats: Beats, split: str, split_seed: int) -> Beats:
    """``test`` keeps to beats the shipped model never trained on, so a demo report is honest."""
    if split == "all":
        return beats
    if split != "test":
        raise ValueError(f"split must be 'test' or 'all', got {split!r}")
    return make_split(beats, split_seed).test


def beat_stream(beats: Beats, config: SimulationConfig) -> Iterator[SentBeat]:
    """``config.count`` beats round-robin over the devices, drawn at random, each with its device's gain."""
    rng = np.random.default_rng(config.seed)
    gains = rng.uniform(0.5, 2.0, config.devices)
    offsets = rng.uniform(-1.0, 1.0, config.devices)
    for n in range(config.count):
        device = n % config.devices
        row = int(rng.integers(len(beats)))
        samples = beats.x[row] * gains[device] + offsets[device]
        seq = n // config.devices
        payload = json.dumps({"seq": seq, "ts": round(time.time(), 3), "samples": samples.round(5).tolist()})
        yield SentBeat(f"watch-{device:04d}", seq, row, int(beats.y[row]), payload.encode())


def connect(settings: MqttSettings, client_id: str) -> mqtt.Client:
    """A publishing client for a simulator, with the daemon's credentials and TLS settings."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{client_id}-{int(time.time() * 1e3)}")
    client.max_inflight_messages_set(1000)
    secure(client, settings)
    client.connect(settings.host, settings.port)
    client.loop_start()
    return client


def run(
    config: SimulationConfig, beats: Beats, labels_file: Path | None = None, progress: bool = True
) -> dict[str, float]:
    """Publish the beats, pacing each device at ``rate_hz`` unless ``fast``; returns a summary."""
    client = connect(config.mqtt, config.client_id)
    writer_file = labels_file.open("w", newline="") if labels_file else None
    writer = csv.writer(writer_file) if writer_file else None
    if writer:
        writer.writerow(["device_id", "seq", "row", "label"])
    rng = np.random.default_rng(config.seed + 1)
    started = time.monotonic()
    last = None
    anomalies = 0
    bar = tqdm(total=config.count, unit="beat", desc="simulate", disable=not progress)
    try:
        for i, beat in enumerate(beat_stream(beats, config)):
            if not config.fast:
                _pace(i % config.devices, i // config.devices, config, rng, started)
            last = client.publish(config.topic.format(device=beat.device_id), beat.payload, qos=1)
            anomalies += beat.label != 1
            if writer:
                writer.writerow([beat.device_id, beat.seq, beat.row, beat.label])
            bar.update()
        if last is not None:
            last.wait_for_publish(30)
    finally:
        bar.close()
        client.loop_stop()
        client.disconnect()
        if writer_file:
            writer_file.close()
    elapsed = time.monotonic() - started
    summary = {
        "beats": config.count,
        "anomalous": anomalies,
        "seconds": round(elapsed, 2),
        "beats_per_second": round(config.count / elapsed, 1) if elapsed else 0.0,
    }
    log.info("simulation finished", extra=summary)
    return summary


def _pace(device: int, round_: int, config: SimulationConfig, rng: np.random.Generator, started: float) -> None:
    """Sleep until this device's next beat: one per 1/rate seconds, jittered, devices staggered over a period."""
    period = 1.0 / config.rate_hz
    due = started + (round_ + device / config.devices) * period + rng.uniform(-config.jitter, config.jitter) * period
    delay = due - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def load_beats(data: str | None, split: str, split_seed: int) -> Beats:
    return pick_beats(load_ecg5000(data), split, split_seed)


def held_out_split_seed(model_dir: Path) -> int:
    """The split seed a model was trained with, so that "test" beats are ones *that* model never saw."""
    return int(artifact.read_metadata(model_dir).get("data", {}).get("split_seed", 0))
