"""The daemon's data path: beats in, events out.

Three threads share it: paho's intake thread parses each message (:meth:`Pipeline.intake`) into a
queue; the scoring thread gathers micro-batches and runs the model (:meth:`Pipeline.score_until_drained`);
the publishing thread turns reconstructions into scores and events and publishes them
(:meth:`Pipeline.publish_until_drained`), each beat acknowledged only once its events are confirmed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import torch

from ecgwatch.scorer import Reconstruction, Scorer
from ecgwatch.serve.config import Settings
from ecgwatch.serve.messages import Beat, BeatLimits, InvalidBeat, dead_letter, parse_beat, score_event
from ecgwatch.serve.metrics import Metrics
from ecgwatch.serve.mqtt_session import Delivery, MqttSession, Publication

log = logging.getLogger(__name__)
IDLE_TICK_S = 0.5
# Scored batches waiting for the publishing thread: enough for the model to run ahead, few enough that
# a stalled broker connection stops the scoring (and, through the intake gate, the intake) quickly.
PUBLISH_BACKLOG = 4


@dataclass(frozen=True)
class Pending:
    beat: Beat
    delivery: Delivery
    received: float  # time.monotonic()
    received_wall: float


@dataclass(frozen=True)
class ScoredBatch:
    """A micro-batch the model has reconstructed, on its way to the publishing thread, which scores it."""

    beats: list[Pending]
    part: Reconstruction
    scorer: Scorer  # the one that reconstructed it: its rule finishes the scores
    started: float  # time.monotonic() when inference began
    inference: float  # seconds


def gather(source: queue.Queue[Pending], max_size: int, max_wait_s: float, idle_s: float) -> list[Pending]:
    """Block up to ``idle_s`` for a first beat, then take more until ``max_size`` or ``max_wait_s`` passes."""
    try:
        batch = [source.get(timeout=idle_s)]
    except queue.Empty:
        return []
    deadline = time.monotonic() + max_wait_s
    while len(batch) < max_size:
        remaining = deadline - time.monotonic()
        try:
            batch.append(source.get(timeout=remaining) if remaining > 0 else source.get_nowait())
        except queue.Empty:
            break
    return batch


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        current_scorer: Callable[[], Scorer],
        limits: BeatLimits,
        stopping: threading.Event,
        heartbeat: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.current_scorer = current_scorer  # the service's, swapped by a reload between batches
        self.limits = limits
        self.stopping = stopping
        self.heartbeat = heartbeat  # the systemd watchdog: proof that the scoring loop turns
        # Never full: the intake gate holds at most queue_size beats in the whole daemon, queued or not.
        self.queue: queue.Queue[Pending] = queue.Queue(maxsize=settings.batch.queue_size)
        self.scored: queue.Queue[ScoredBatch | None] = queue.Queue(maxsize=PUBLISH_BACKLOG)
        self.drained = threading.Event()
        self.session: MqttSession | None = None
        metrics.queue_capacity.set(settings.batch.queue_size)
        metrics.queue_depth.set_function(self.queue.qsize)  # read at scrape time, not set per beat

    def attach(self, session: MqttSession) -> None:
        """The session that feeds :meth:`intake` and publishes our events (each needs the other)."""
        self.session = session

    @property
    def _mqtt(self) -> MqttSession:
        assert self.session is not None, "attach() a session before starting"
        return self.session

    # --- intake (paho's intake thread) ------------------------------------------------------------
    def intake(self, message: mqtt.MQTTMessage, delivery: Delivery) -> None:
        received, received_wall = time.monotonic(), time.time()
        self.metrics.beats_received.inc()
        try:
            beat = parse_beat(_topic_of(message), message.payload, self.settings.mqtt.beat_topic, self.limits)
        except InvalidBeat as error:
            self._dead_letter(message, delivery, error, received_wall)
            return
        except Exception as exc:  # a parser defect must cost one message, never the intake thread
            log.error("parsing a message raised; dead-lettering it", exc_info=True)
            self._dead_letter(message, delivery, InvalidBeat("unparseable", type(exc).__name__), received_wall)
            return
        self.queue.put(Pending(beat, delivery, received, received_wall))

    def _dead_letter(
        self, message: mqtt.MQTTMessage, delivery: Delivery, error: InvalidBeat, received_wall: float
    ) -> None:
        self.metrics.beats_invalid.labels(reason=error.reason).inc()
        log.debug("dead-lettered", extra={"reason": error.reason, "detail": error.detail})
        letter = dead_letter(
            _topic_of(message, lenient=True),
            message.payload,
            error,
            received_wall,
            self.settings.limits.max_payload_bytes,
        )
        self._mqtt.publish_then_ack(delivery, [("deadletter", self.settings.mqtt.deadletter_topic, letter)])

    # --- scoring and publishing threads ------------------------------------------------------------
    def score_until_drained(self) -> None:
        """Model only: gather, reconstruct, hand over. The publishing thread turns reconstructions into
        scores and events meanwhile, so the model is not idle while paho encodes and sends the previous
        batch; that small numpy work cost the model thread GIL round trips when it ran here."""
        if self.settings.batch.threads:
            # Set in the thread that runs the model: made only in the main thread, the setting
            # left a batch of 64 five times slower here (1,870 vs 9,100 beats/s) and a batch of 1 thirty times.
            torch.set_num_threads(self.settings.batch.threads)
        batch_cfg = self.settings.batch
        last_ping = 0.0
        while True:
            batch = gather(self.queue, batch_cfg.max_size, batch_cfg.max_wait_ms / 1000, IDLE_TICK_S)
            if batch:
                self.scored.put(self._score_batch(batch))
            elif self.stopping.is_set():
                break
            if time.monotonic() - last_ping >= IDLE_TICK_S:
                self.heartbeat()
                last_ping = time.monotonic()
        self.scored.put(None)  # everything before it gets published, then the publisher reports drained

    def _score_batch(self, batch: list[Pending]) -> ScoredBatch:
        scorer = self.current_scorer()  # one model per batch, even if a reload swaps it meanwhile
        started = time.monotonic()
        part = scorer.reconstruct(scorer.prepare(np.stack([p.beat.samples for p in batch])))
        inference = time.monotonic() - started
        self.metrics.inference_seconds.observe(inference)
        self.metrics.batch_size.observe(len(batch))
        self.metrics.beats_scored.inc(len(batch))
        return ScoredBatch(batch, part, scorer, started, inference)

    def publish_until_drained(self) -> None:
        while (scored := self.scored.get()) is not None:
            self._publish_batch(scored)
        self.drained.set()

    def _publish_batch(self, scored: ScoredBatch) -> None:
        result = scored.scorer.finish(scored.part)
        threshold, version = scored.scorer.loaded.threshold, scored.scorer.loaded.version
        for i, pending in enumerate(scored.beats):
            timing = {
                "queued_s": scored.started - pending.received,
                "inference_s": scored.inference,
                "received_at": pending.received_wall,
            }
            peak = (result.peak_start[i], result.peak_end[i])
            event = score_event(pending.beat, float(result.scores[i]), threshold, version, peak, timing)
            self._publish_event(pending, event)

    def _publish_event(self, pending: Pending, event: dict[str, object]) -> None:
        cfg = self.settings.mqtt
        anomalous = bool(event["anomaly"])
        self.metrics.scores.observe(float(event["score"]))  # type: ignore[arg-type]
        if anomalous:
            self.metrics.beats_anomalous.inc()
        device = pending.beat.device_id
        payload = orjson.dumps(event)
        publications: list[Publication] = []
        if cfg.publish_scores:
            publications.append(("score", cfg.score_topic.format(device=device), payload))
        if anomalous and cfg.publish_anomalies:
            publications.append(("anomaly", cfg.anomaly_topic.format(device=device), payload))

        def done() -> None:
            self.metrics.latency_seconds.observe(time.monotonic() - pending.received)

        self._mqtt.publish_then_ack(pending.delivery, publications, done)


def _topic_of(message: mqtt.MQTTMessage, lenient: bool = False) -> str:
    """The message's topic; paho decodes it as UTF-8 on access, which raises on a broker that lets
    anything through. ``lenient`` (for dead letters) replaces the undecodable bytes instead."""
    try:
        return message.topic
    except UnicodeDecodeError:
        if lenient:
            return bytes(message._topic).decode("utf-8", "replace")  # paho has no other accessor
        raise InvalidBeat("bad_topic", "topic is not valid UTF-8") from None
