"""``ecgwatch demo``: broker + daemon + simulated watches in one command, with a live view and a report.

The report is computed only from the score events received over MQTT, joined with the simulator's true
labels: what a subscriber downstream would see, not what the model says offline.
"""

from __future__ import annotations

import csv
import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt

from ecgwatch.datasets import data_dir
from ecgwatch.datasets.mitbih import Record, load_record, records_in
from ecgwatch.demo.brokers import demo_broker, free_port
from ecgwatch.demo.simulator import SimulationConfig, held_out_split_seed, load_beats, run
from ecgwatch.demo.strip_simulator import StripSimulation, run_strips
from ecgwatch.serve import logs
from ecgwatch.serve.config import MqttSettings, load_settings
from ecgwatch.serve.mqtt_session import secure
from ecgwatch.serve.service import Service


@dataclass(frozen=True)
class DemoOptions:
    broker: str | None = None
    embedded_broker: bool = False
    devices: int = 20
    seconds: float = 20.0
    rate_hz: float = 1.0
    fast: bool = False
    data: str | None = None
    out: Path | None = None
    mqtt: dict[str, Any] | None = None  # credentials and TLS for an external broker (MqttSettings fields)
    strips: bool = False  # MIT-BIH records as strips (other people's ECG) instead of ECG5000 beats
    records: tuple[str, ...] = ()  # default: every record in <data>/mitbih
    artifacts: tuple[tuple[str, float | None], ...] = ()
    artifact_share: float = 0.2


class ScoreListener:
    def __init__(self, settings: MqttSettings) -> None:
        self.events: list[dict[str, Any]] = []
        self.episodes: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ecgwatch-demo-view-{free_port()}")
        self.client.on_connect = lambda c, *_: c.subscribe([("ecg/+/score", 1), ("ecg/+/episode", 1)])
        self.client.on_message = self._on_message
        secure(self.client, settings)
        self.client.connect(settings.host, settings.port)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        event = json.loads(message.payload)
        event["arrived"] = time.time()
        with self.lock:
            (self.episodes if message.topic.endswith("/episode") else self.events).append(event)

    def open_episodes(self) -> int:
        with self.lock:
            opened = {e["id"] for e in self.episodes if e["type"] == "start"}
            return len(opened - {e["id"] for e in self.episodes if e["type"] == "end"})

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.events)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney AUROC with tie handling; the runtime package does not depend on scikit-learn."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if not n_pos or not n_neg:
        return float("nan")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def detection_report(events: list[dict[str, Any]], labels_file: Path, sent: int) -> dict[str, Any]:
    with labels_file.open() as handle:
        truth = {(r["device_id"], int(r["seq"])): int(r["label"]) for r in csv.DictReader(handle)}
    joined = [(e["score"], e["anomaly"], truth[(e["device_id"], e["seq"])]) for e in events]
    scores = np.array([j[0] for j in joined])
    predicted = np.array([j[1] for j in joined], dtype=bool)
    actual = np.array([j[2] != 1 for j in joined], dtype=bool)
    latency = np.array([e["arrived"] - e["received_at"] for e in events]) if events else np.zeros(1)
    return {
        "beats_sent": sent,
        "scores_received": len(events),
        "auroc": auroc(scores, actual),
        "confusion_matrix": {
            "tn": int((~predicted & ~actual).sum()),
            "fp": int((predicted & ~actual).sum()),
            "fn": int((~predicted & actual).sum()),
            "tp": int((predicted & actual).sum()),
        },
        "recall": float(predicted[actual].mean()) if actual.any() else float("nan"),
        "false_alarm_rate": float(predicted[~actual].mean()) if (~actual).any() else float("nan"),
        "latency_seconds_p50": float(np.percentile(latency, 50)),
        "latency_seconds_p99": float(np.percentile(latency, 99)),
        "model": sorted({e["model"] for e in events}),
    }


def _live_view(listener: ScoreListener, stop: threading.Event, started: float) -> None:
    while not stop.wait(1.0):
        events = listener.snapshot()
        elapsed = time.monotonic() - started
        recent = [e["arrived"] - e["received_at"] for e in events[-200:]]
        p50 = np.percentile(recent, 50) * 1000 if recent else float("nan")
        anomalies = sum(e["anomaly"] for e in events)
        unreadable = sum(e["quality"] != "ok" for e in events) / max(1, len(events))
        sys.stderr.write(
            f"\r{elapsed:6.1f}s  scored {len(events):6d}  {len(events) / elapsed:7.1f} beats/s  "
            f"anomalies {anomalies:5d}  unreadable {unreadable:5.1%}  open episodes {listener.open_episodes():3d}  "
            f"latency p50 {p50:6.1f} ms "
        )
        sys.stderr.flush()
    sys.stderr.write("\n")


def run_demo(options: DemoOptions) -> dict[str, Any]:
    logs.setup("WARNING", "text")
    out = options.out or Path(tempfile.mkdtemp(prefix="ecgwatch-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    count = int(options.devices * options.seconds * options.rate_hz)
    with demo_broker(options.broker, options.embedded_broker) as broker:
        print(f"broker: {broker.kind} at {broker.host}:{broker.port} (MQTT {broker.protocol})")
        settings = load_settings(
            None,
            {
                "instance": "ecgwatch-demo",
                "mqtt": {
                    **(options.mqtt or {}),
                    "host": broker.host,
                    "port": broker.port,
                    "protocol": broker.protocol,
                    "client_id": f"ecgwatch-demo-{free_port()}",
                },
                "metrics": {"port": free_port()},
                "model": {"watch": False},
            },
        )
        service = Service(settings)
        daemon = threading.Thread(target=service.run, kwargs={"install_signals": False}, daemon=True)
        daemon.start()
        if not service.mqtt.connected.wait(15):
            raise RuntimeError("the daemon could not connect to the broker")
        metrics_url = f"http://{settings.metrics.host}:{settings.metrics.port}/metrics"
        print(f"daemon: model {service.scorer.loaded.version}, metrics at {metrics_url}")
        listener = ScoreListener(settings.mqtt)
        stop_view = threading.Event()
        view = threading.Thread(target=_live_view, args=(listener, stop_view, time.monotonic()), daemon=True)
        view.start()
        labels = out / "labels.csv"
        if options.strips:
            report = _strip_demo(options, settings.mqtt, listener, labels)
        else:
            _beat_demo(options, settings.mqtt, service, labels, count)
            deadline = time.monotonic() + 30
            while len(listener.snapshot()) < count and time.monotonic() < deadline:
                time.sleep(0.1)
            report = detection_report(listener.snapshot(), labels, count)
        stop_view.set()
        view.join()
        report["metrics_url"] = metrics_url
        listener.close()
        service.request_stop()
        daemon.join(15)
    (out / "demo_report.json").write_text(json.dumps(report, indent=2) + "\n")
    _print_report(report, out)
    return report


def _beat_demo(options: DemoOptions, settings: MqttSettings, service: Service, labels: Path, count: int) -> None:
    # Beats the served model never trained on: its own split seed, not the shipped model's.
    beats = load_beats(options.data, "test", held_out_split_seed(service.scorer.loaded.path))
    config = SimulationConfig(
        mqtt=settings, devices=options.devices, count=count, rate_hz=options.rate_hz, fast=options.fast
    )
    run(config, beats, labels, progress=False)


def _strip_demo(options: DemoOptions, settings: MqttSettings, listener: ScoreListener, labels: Path) -> dict[str, Any]:
    folder = data_dir("mitbih", options.data)
    records = {name: load_record(folder, name) for name in (options.records or records_in(folder))}
    simulation = StripSimulation(
        mqtt=settings,
        devices=options.devices,
        seconds=options.seconds,
        artifacts=options.artifacts,
        artifact_share=options.artifact_share,
        fast=options.fast,
    )
    run_strips(simulation, list(records.values()), labels, progress=False)
    settle = time.monotonic() + 30  # strips' beats trail the last strip by its scoring time
    count = -1
    while time.monotonic() < settle and count != len(listener.snapshot()):
        count = len(listener.snapshot())
        time.sleep(2.0)
    return strip_report(listener.snapshot(), listener.episodes, labels, records)


def strip_report(
    events: list[dict[str, Any]], episodes: list[dict[str, Any]], labels_file: Path, records: dict[str, Record]
) -> dict[str, Any]:
    """Join score events with the cardiologists' annotations: beats found, PVCs caught, false alarms."""
    with labels_file.open() as handle:
        strips = {(r["device_id"], int(r["seq"])): r for r in csv.DictReader(handle)}
    found, pvc_hit, pvc_total, false_alarm, normal, enrolling = 0, 0, 0, 0, 0, 0
    annotated = sum(
        int(
            np.sum(
                (records[r["record"]].beats >= int(r["start"]))
                & (records[r["record"]].beats < int(r["start"]) + int(r["length"]))
            )
        )
        for r in strips.values()
    )
    for event in events:
        strip = strips.get((event["device_id"], event["strip_seq"]))
        if strip is None:
            continue
        record = records[strip["record"]]
        position = int(strip["start"]) + event["sample"]
        nearest = int(np.argmin(np.abs(record.beats - position)))
        if abs(record.beats[nearest] - position) > 0.15 * record.fs:
            continue
        found += 1
        if event.get("enrolling"):  # the device's first minutes: not judged yet
            enrolling += 1
            continue
        if record.pvc[nearest]:
            pvc_total += 1
            pvc_hit += event["anomaly"]
        elif event["quality"] == "ok":
            normal += 1
            false_alarm += event["anomaly"]
    return {
        "beats_scored": len(events),
        "beats_annotated": annotated,
        "beats_matched": found,
        "beats_enrolling": enrolling,
        "unreadable_share": sum(e["quality"] != "ok" for e in events) / max(1, len(events)),
        "pvc_recall": pvc_hit / pvc_total if pvc_total else float("nan"),
        "pvc_beats": pvc_total,
        "false_alarm_rate": false_alarm / normal if normal else float("nan"),
        "episodes_started": sorted(e["kind"] for e in episodes if e["type"] == "start"),
        "model": sorted({e["model"] for e in events}),
    }


def _print_report(report: dict[str, Any], out: Path) -> None:
    if "confusion_matrix" not in report:  # strips
        print(
            f"\nbeats scored {report['beats_scored']}, matched to {report['beats_matched']} of "
            f"{report['beats_annotated']} annotated; unreadable {report['unreadable_share']:.1%}"
        )
        print(
            f"PVC recall {report['pvc_recall']:.3f} ({report['pvc_beats']} PVCs), false-alarm rate on readable "
            f"non-PVC beats {report['false_alarm_rate']:.3f}; episodes started: {report['episodes_started']}"
        )
        print(f"metrics were at {report['metrics_url']}; report: {out / 'demo_report.json'}")
        return
    cm = report["confusion_matrix"]
    print(f"\nscores received {report['scores_received']} of {report['beats_sent']} beats sent")
    print(f"AUROC {report['auroc']:.4f}   recall {report['recall']:.3f}   ", end="")
    print(f"false-alarm rate {report['false_alarm_rate']:.3f}")
    print("confusion matrix      predicted normal  predicted anomaly")
    print(f"  actual normal       {cm['tn']:16d}  {cm['fp']:17d}")
    print(f"  actual anomalous    {cm['fn']:16d}  {cm['tp']:17d}")
    print(
        f"end-to-end latency p50 {report['latency_seconds_p50'] * 1000:.1f} ms, "
        f"p99 {report['latency_seconds_p99'] * 1000:.1f} ms"
    )
    print(f"metrics were at {report['metrics_url']}; report: {out / 'demo_report.json'}")
