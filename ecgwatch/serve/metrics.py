"""Prometheus metrics for the daemon: one registry per service instance (tests make several).

Names follow Prometheus conventions: ``ecgwatch_`` prefix, base units (seconds), ``_total`` counters,
an ``_info`` metric for the model version. No per-device labels: device ids are unbounded.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

from ecgwatch.detection.episodes import KINDS
from ecgwatch.detection.quality import QUALITY_REASONS
from ecgwatch.serve.messages import REASONS

# Inference on CPU takes ~1-50 ms per micro-batch; end-to-end adds the batching wait and MQTT round trips.
INFERENCE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
# Wide and roughly logarithmic: score scales differ by kind (a mean absolute error is ~0.1-1; the fused
# score of the reference model puts normal beats near 2 and its threshold near 12), and a hot reload can
# change the kind while a histogram's buckets are fixed for the life of the process.
# What a strip is to its device's stream (see ecgwatch.serve.strips).
STRIP_OUTCOMES = ("next", "gap", "late", "redelivered", "duplicate")
SCORE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # process_* (CPU, resident memory, open fds, start time) and python_* series, as from any exporter.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.beats_received = Counter("ecgwatch_beats_received", "Beat messages received from MQTT", registry=r)
        self.beats_scored = Counter("ecgwatch_beats_scored", "Beats scored by the model", registry=r)
        self.beats_anomalous = Counter("ecgwatch_beats_anomalous", "Beats scored above the threshold", registry=r)
        self.beats_invalid = Counter(
            "ecgwatch_beats_invalid", "Messages rejected to the dead-letter topic", ["reason"], registry=r
        )
        for reason in REASONS:
            self.beats_invalid.labels(reason=reason)
        self.messages_published = Counter(
            "ecgwatch_messages_published", "Messages confirmed published by the broker", ["kind"], registry=r
        )
        # Bound once: looking a label child up per message costs more than the increment itself.
        self.published = {
            kind: self.messages_published.labels(kind=kind)
            for kind in ("score", "anomaly", "episode", "summary", "deadletter")
        }
        self.publish_failures = Counter(
            "ecgwatch_publish_failures",
            "Publications the broker refused (MQTT 5 reason code); their beats stay unacknowledged",
            ["kind", "reason"],
            registry=r,
        )
        self.beats_skipped = Counter(
            "ecgwatch_beats_skipped",
            "Messages acknowledged without scoring (retained: old beats)",
            ["reason"],
            registry=r,
        )
        self.beats_skipped.labels(reason="retained")
        self.beats_held = Gauge(
            "ecgwatch_beats_held", "Beats received and not yet acknowledged (queued, scoring or publishing)", registry=r
        )
        self.beats_held_limit = Gauge(
            "ecgwatch_beats_held_limit", "Most beats held at once; beyond it the broker keeps them", registry=r
        )
        self.connection_failures = Counter(
            "ecgwatch_mqtt_connection_failures",
            "Failed connection attempts to the broker, by stage (network, tls, refused)",
            ["stage"],
            registry=r,
        )
        for stage in ("network", "tls", "refused"):
            self.connection_failures.labels(stage=stage)
        self.reconnects = Counter(
            "ecgwatch_mqtt_reconnects",
            "Connections made again after a lost one, by link (intake, publisher)",
            ["link"],
            registry=r,
        )
        for link in ("intake", "publisher"):
            self.reconnects.labels(link=link)
        self.sessions_lost = Counter(
            "ecgwatch_mqtt_sessions_lost",
            "Reconnects on which the broker no longer had our session (beats queued meanwhile are lost)",
            registry=r,
        )
        self.strips_received = Counter("ecgwatch_strips_received", "Strip messages received from MQTT", registry=r)
        self.strips = Counter(
            "ecgwatch_strips",
            "Strips by what they were to their device's stream (next, gap, late, redelivered, duplicate)",
            ["outcome"],
            registry=r,
        )
        for outcome in STRIP_OUTCOMES:
            self.strips.labels(outcome=outcome)
        self.strips_unreadable = Counter(
            "ecgwatch_strips_unreadable", "Strips whose signal could not be trusted, by reason", ["reason"], registry=r
        )
        self.devices_enrolled = Counter(
            "ecgwatch_devices_enrolled",
            "Devices that finished enrolling (their beats are judged from then on)",
            registry=r,
        )
        self.beats_detected = Counter("ecgwatch_beats_detected", "Beats found in strips", registry=r)
        self.beats_unreadable = Counter(
            "ecgwatch_beats_unreadable", "Beats not scored because of their signal, by reason", ["reason"], registry=r
        )
        for reason in QUALITY_REASONS[1:]:
            self.strips_unreadable.labels(reason=reason)
            self.beats_unreadable.labels(reason=reason)
        self.segmentation_seconds = Histogram(
            "ecgwatch_segmentation_seconds", "Time to segment one strip", buckets=INFERENCE_BUCKETS, registry=r
        )
        self.device_state_bytes = Histogram(
            "ecgwatch_device_state_bytes",
            "Size of a device's state as saved",
            buckets=(1024, 2048, 4096, 8192, 16384, 32768, 65536),
            registry=r,
        )
        self.episodes = Counter(
            "ecgwatch_episodes", "Episode events by kind and type (start, update, end)", ["kind", "type"], registry=r
        )
        for kind in KINDS:
            for event_type in ("start", "update", "end"):
                self.episodes.labels(kind=kind, type=event_type)
        self.episode_pages = Counter(
            "ecgwatch_episode_pages",
            "Episodes that reached warning or critical (each once per level): what pages a person",
            ["kind", "severity"],
            registry=r,
        )
        for kind in KINDS:
            for severity in ("warning", "critical"):
                self.episode_pages.labels(kind=kind, severity=severity)
        self.beats_classified = Counter(
            "ecgwatch_beats_classified", "Strip beats by the class the detector gave them", ["beat_class"], registry=r
        )
        for beat_class in ("N", "S", "V"):
            self.beats_classified.labels(beat_class=beat_class)
        self.model_reloads = Counter("ecgwatch_model_reloads", "Model reload attempts", ["result"], registry=r)
        for result in ("success", "failure"):
            self.model_reloads.labels(result=result)
        self.inference_seconds = Histogram(
            "ecgwatch_inference_seconds", "Model time per micro-batch", buckets=INFERENCE_BUCKETS, registry=r
        )
        self.batch_size = Histogram("ecgwatch_batch_size", "Beats per micro-batch", buckets=BATCH_BUCKETS, registry=r)
        self.latency_seconds = Histogram(
            "ecgwatch_end_to_end_latency_seconds",
            "From receipt of a beat to the broker confirming its score",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.scores = Histogram("ecgwatch_score", "Anomaly scores", buckets=SCORE_BUCKETS, registry=r)
        self.queue_depth = Gauge("ecgwatch_queue_depth", "Beats waiting to be scored", registry=r)
        self.queue_capacity = Gauge("ecgwatch_queue_capacity", "Most beats held in memory", registry=r)
        self.mqtt_connected = Gauge("ecgwatch_mqtt_connected", "1 while connected to the broker", registry=r)
        self.threshold = Gauge("ecgwatch_threshold", "Anomaly threshold of the loaded model", registry=r)
        self.model_info = Info("ecgwatch_model", "Loaded model", registry=r)
        self.build_info = Info("ecgwatch_build", "ecgwatch build", registry=r)
