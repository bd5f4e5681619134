"""``ecgwatch simulate --strips``: watches streaming MIT-BIH records as 10-30 s strips, as real watches do.

Watch i plays record ``i mod len(records)`` from a random offset, with its own gain, baseline offset and
(optionally) a different sampling rate, cut into consecutive strips of random length. Artifacts (noise at a
given SNR, baseline wander, mains, EMG bursts, motion, electrode pops, a reversed lead) can be laid on a
share of the strips. Strips go out in real time (each when its last sample would have been recorded) or as
fast as the broker takes them. The labels file says which record and samples each strip carries, so the
events can be joined with the cardiologists' annotations afterwards.
"""

from __future__ import annotations

import csv
import heapq
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy import signal as sps
from tqdm import tqdm

from ecgwatch.datasets import ecg_artifacts
from ecgwatch.datasets.mitbih import Record
from ecgwatch.demo.simulator import connect
from ecgwatch.serve.config import MqttSettings


@dataclass(frozen=True)
class StripSimulation:
    mqtt: MqttSettings
    devices: int = 10
    seconds: float = 60.0  # of signal per watch
    strip_seconds: tuple[float, float] = (10.0, 30.0)
    fs: float | None = None  # resample the records to this rate (None: keep 360 Hz)
    artifacts: tuple[tuple[str, float | None], ...] = ()
    artifact_share: float = 1.0
    fast: bool = False
    seed: int = 0
    topic: str = "ecg/{device}/strip"
    client_id: str = "ecgwatch-strip-simulator"


@dataclass(frozen=True)
class SentStrip:
    due: float  # seconds after the start when its last sample is recorded
    device_id: str
    seq: int
    record: str
    start: int  # first sample in the record (at the record's own rate)
    length: int
    artifacts: str
    payload: bytes


def _watch(record: Record, fs: float) -> np.ndarray:
    if fs == record.fs:
        return record.signal
    ratio = Fraction(fs / record.fs).limit_denominator(1000)
    return np.asarray(sps.resample_poly(record.signal, ratio.numerator, ratio.denominator))


def strips_of_watch(sim: StripSimulation, device: int, record: Record, t0: float) -> Iterator[SentStrip]:
    rng = np.random.default_rng([sim.seed, device])
    fs = sim.fs or record.fs
    signal = _watch(record, fs)
    gain, offset = rng.uniform(0.5, 2.0), rng.uniform(-1.0, 1.0)
    length = int(sim.seconds * fs)
    start = int(rng.uniform(0, max(1, len(signal) - length)))
    position, seq = start, 0
    while position < start + length:
        size = int(rng.uniform(*sim.strip_seconds) * fs)
        samples = signal[position : position + size] * gain + offset
        applied = []
        if sim.artifacts and rng.random() < sim.artifact_share:
            for kind, level in sim.artifacts:
                samples = ecg_artifacts.apply(kind, samples, fs, rng, level)
                applied.append(kind)
        elapsed = (position - start) / fs
        body = {"seq": seq, "ts": round(t0 + elapsed, 4), "fs": fs, "samples": samples.round(5).tolist()}
        due = elapsed + len(samples) / fs
        origin = round(position * record.fs / fs)
        yield SentStrip(
            due,
            f"watch-{device:04d}",
            seq,
            record.name,
            origin,
            len(samples),
            "+".join(applied),
            json.dumps(body).encode(),
        )
        position, seq = position + size, seq + 1


def strip_stream(sim: StripSimulation, records: list[Record], t0: float) -> Iterator[SentStrip]:
    """Every watch's strips, merged in the order they would be sent."""
    watches = [strips_of_watch(sim, d, records[d % len(records)], t0) for d in range(sim.devices)]
    yield from heapq.merge(*watches, key=lambda s: s.due)


def run_strips(
    sim: StripSimulation, records: list[Record], labels_file: Path | None = None, progress: bool = True
) -> dict[str, float]:
    client = connect(sim.mqtt, sim.client_id)
    started, t0 = time.monotonic(), time.time()
    sent = samples = 0
    last = None
    handle = labels_file.open("w", newline="") if labels_file else None
    writer = csv.writer(handle) if handle else None
    if writer:
        writer.writerow(["device_id", "seq", "record", "start", "length", "artifacts"])
    bar = tqdm(total=sim.devices * sim.seconds, unit="s", desc="simulate strips", disable=not progress)
    try:
        for strip in strip_stream(sim, records, t0):
            if not sim.fast:
                time.sleep(max(0.0, started + strip.due - time.monotonic()))
            last = client.publish(sim.topic.format(device=strip.device_id), strip.payload, qos=1)
            if writer:
                writer.writerow([strip.device_id, strip.seq, strip.record, strip.start, strip.length, strip.artifacts])
            sent += 1
            samples += strip.length
            bar.update(strip.length / (sim.fs or records[0].fs))
        if last is not None:
            last.wait_for_publish(60)
    finally:
        bar.close()
        client.loop_stop()
        client.disconnect()
        if handle:
            handle.close()
    elapsed = time.monotonic() - started
    return {"strips": sent, "seconds": round(elapsed, 2), "strips_per_second": round(sent / elapsed, 2)}
