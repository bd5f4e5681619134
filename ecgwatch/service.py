"""``ecgwatch serve``: score every beat from MQTT in micro-batches, publish events, export metrics.

Threads: paho's network thread parses messages into a bounded queue; the scoring thread gathers
micro-batches and runs the model; the publishing thread turns scored batches into events and publishes
them; the main thread handles signals and watches the model file.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import numpy as np
import orjson
import paho.mqtt.client as mqtt
import torch

import ecgwatch
from ecgwatch import artifact
from ecgwatch.config import Settings
from ecgwatch.http_server import MetricsServer
from ecgwatch.messages import Beat, BeatLimits, InvalidBeat, dead_letter, parse_beat, score_event
from ecgwatch.metrics import Metrics
from ecgwatch.models import resolve_device
from ecgwatch.mqtt_session import Delivery, MqttSession, Publication
from ecgwatch.scorer import Reconstruction, Scorer
from ecgwatch.sdnotify import Notifier

log = logging.getLogger(__name__)
IDLE_TICK_S = 0.5
# Scored batches waiting for the publishing thread: enough for the model to run ahead, few enough that
# a stalled broker connection stops the scoring (and, through the bounded queue, the intake) quickly.
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


class Service:
    def __init__(self, settings: Settings, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.notifier = notifier or Notifier()
        self.metrics = Metrics()
        self.device = resolve_device(settings.model.device)
        self.scorer = self._load_scorer(settings.model.path)  # raises ArtifactError: start-up stops
        self.limits = BeatLimits(
            seq_len=self.scorer.loaded.seq_len,
            min_samples=settings.limits.min_samples,
            max_samples=settings.limits.max_samples,
            max_payload_bytes=settings.limits.max_payload_bytes,
            max_device_id_bytes=settings.limits.max_device_id_bytes,
        )
        # Never full: the intake gate holds at most queue_size beats in the whole daemon, queued or not.
        self.queue: queue.Queue[Pending] = queue.Queue(maxsize=settings.batch.queue_size)
        self.scored: queue.Queue[ScoredBatch | None] = queue.Queue(maxsize=PUBLISH_BACKLOG)
        self.stopping = threading.Event()
        self.drained = threading.Event()
        self.failed = threading.Event()
        self.reload_requested = threading.Event()
        self._signals = 0
        self._failure = ""
        self.mqtt = MqttSession(
            settings.mqtt,
            settings.instance,
            self._on_message,
            self.metrics,
            settings.batch.queue_size,
            self._fatal,
            self.stopping,
        )
        self.http: MetricsServer | None = None
        self.metrics.queue_capacity.set(settings.batch.queue_size)
        self.metrics.queue_depth.set_function(self.queue.qsize)  # read at scrape time, not set per beat
        self.metrics.build_info.info({"version": ecgwatch.__version__, "torch": torch.__version__})

    # --- model -----------------------------------------------------------------------------------
    def _load_scorer(self, path: Path, check_against: Scorer | None = None) -> Scorer:
        loaded = artifact.load(path)
        if check_against is not None and loaded.seq_len != check_against.loaded.seq_len:
            # Beats are resampled to the input length as they arrive; another length needs a restart.
            raise artifact.ArtifactError(
                f"{path}: input.seq_len {loaded.seq_len} differs from the served model's "
                f"{check_against.loaded.seq_len}; restart the daemon to change the input length"
            )
        scorer = Scorer(loaded, self.device, self.settings.model.precision)
        if check_against is None:
            self._publish_model_metrics(scorer)
        log.info(
            "model loaded", extra={"model": loaded.version, "threshold": loaded.threshold, "device": str(self.device)}
        )
        return scorer

    def _publish_model_metrics(self, scorer: Scorer) -> None:
        loaded = scorer.loaded
        self.metrics.threshold.set(loaded.threshold)
        self.metrics.model_info.info({"version": loaded.version, "path": str(loaded.path), "device": str(self.device)})

    def reload(self) -> bool:
        """Validate the new model fully before swapping; on any failure keep serving the old one.

        A reload must never take a serving daemon down, whatever the files hold: anything a candidate
        raises is a refused reload, logged with the reason.
        """
        self.notifier.reloading()
        try:
            candidate = self._load_scorer(self.settings.model.path, check_against=self.scorer)
        except (artifact.ArtifactError, OSError, ValueError) as exc:
            ok = self._reload_failed(str(exc))
        except Exception as exc:  # a defect in loading: still keep serving, but say where it came from
            log.debug("model reload raised", exc_info=True)
            ok = self._reload_failed(f"{type(exc).__name__}: {exc}")
        else:
            self.scorer = candidate
            self.metrics.model_reloads.labels(result="success").inc()
            ok = True
        self._publish_model_metrics(self.scorer)
        self.notifier.ready(f"serving {self.scorer.loaded.version}")
        return ok

    def _reload_failed(self, reason: str) -> bool:
        self.metrics.model_reloads.labels(result="failure").inc()
        log.error("model reload failed; keeping the previous model", extra={"error": reason})
        return False

    # --- MQTT intake (paho's intake thread) ----------------------------------------------------------
    def _on_message(self, message: mqtt.MQTTMessage, delivery: Delivery) -> None:
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
        self.mqtt.publish_then_ack(delivery, [("deadletter", self.settings.mqtt.deadletter_topic, letter)])

    # --- scoring and publishing threads ------------------------------------------------------------
    def _guarded(self, work: Callable[[], None]) -> Callable[[], None]:
        """Wrap a worker so that, if it dies, the whole daemon stops with an error and systemd restarts it.

        A daemon that looks healthy but scores nothing is the worst failure: beats pile up unacknowledged.
        """

        def run() -> None:
            try:
                work()
            except Exception:
                log.critical("worker thread failed; stopping so the service manager restarts us", exc_info=True)
                self._fatal("scoring failed")

        return run

    def _fatal(self, reason: str) -> None:
        """A defect in any thread: report unhealthy at once and stop with exit code 1."""
        self._failure = reason
        self.failed.set()
        self.stopping.set()

    def _score_until_drained(self) -> None:
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
                self.notifier.watchdog()
                last_ping = time.monotonic()
        self.scored.put(None)  # everything before it gets published, then the publisher reports drained

    def _score_batch(self, batch: list[Pending]) -> ScoredBatch:
        scorer = self.scorer  # one model per batch, even if a reload swaps it meanwhile
        started = time.monotonic()
        part = scorer.reconstruct(scorer.prepare(np.stack([p.beat.samples for p in batch])))
        inference = time.monotonic() - started
        self.metrics.inference_seconds.observe(inference)
        self.metrics.batch_size.observe(len(batch))
        self.metrics.beats_scored.inc(len(batch))
        return ScoredBatch(batch, part, scorer, started, inference)

    def _publish_until_drained(self) -> None:
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

        self.mqtt.publish_then_ack(pending.delivery, publications, done)

    # --- lifecycle (main thread) ------------------------------------------------------------------
    def healthy(self) -> tuple[bool, str]:
        if self.failed.is_set():
            return False, self._failure
        if self.stopping.is_set():
            return False, "stopping"
        problem = self.mqtt.problem()
        if problem:
            return False, problem
        return True, f"ok {self.scorer.loaded.version}"

    def _handle_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.reload_requested.set()
            return
        self._signals += 1
        if self._signals > 1:
            force_exit()
        log.info("shutdown requested", extra={"signal": signal.Signals(signum).name})
        self.stopping.set()

    def start(self) -> None:
        if self.settings.metrics.enabled:
            self.http = MetricsServer(
                self.metrics.registry, self.healthy, self.settings.metrics.host, self.settings.metrics.port
            )
            self.http.start()
            log.info("metrics listening", extra={"port": self.http.port})
        self.mqtt.start()
        for name, work in (("scoring", self._score_until_drained), ("publishing", self._publish_until_drained)):
            threading.Thread(target=self._guarded(work), name=name, daemon=True).start()

    def run(self, install_signals: bool = True) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit code (0 after a clean drain)."""
        previous = {}
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                previous[sig] = signal.signal(sig, self._handle_signal)
        try:
            self.start()
            self._wait_ready()
            self._watch()
            return self._shutdown()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _wait_ready(self) -> None:
        while not self.stopping.is_set():
            if self.mqtt.connected.wait(IDLE_TICK_S):
                self.notifier.ready(f"serving {self.scorer.loaded.version}")
                log.info("ready", extra={"model": self.scorer.loaded.version, "instance": self.settings.instance})
                return

    def _model_stamp(self) -> tuple[int, int] | None:
        try:
            stat = (self.settings.model.path / artifact.METADATA_FILE).stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def _watch(self) -> None:
        stamp = self._model_stamp()
        next_check = time.monotonic() + self.settings.model.watch_interval_s
        while not self.stopping.wait(0.2):
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self.reload()
                stamp = self._model_stamp()
            if self.settings.model.watch and time.monotonic() >= next_check:
                next_check = time.monotonic() + self.settings.model.watch_interval_s
                current = self._model_stamp()
                if current is not None and current != stamp:
                    log.info("model files changed on disk; reloading")
                    stamp = current
                    self.reload()

    def request_stop(self) -> None:
        self.stopping.set()

    def _shutdown(self) -> int:
        """Drain queued beats, wait (bounded) for their publications, announce offline, disconnect."""
        self.notifier.stopping()
        grace = self.settings.grace_period_s
        deadline = time.monotonic() + grace
        if not self.failed.is_set():
            self.drained.wait(grace)
        idle = self.mqtt.wait_idle(max(0.0, deadline - time.monotonic()))
        if not idle or not self.drained.is_set():
            log.warning(
                "grace period over with beats in flight; the broker will redeliver them",
                extra={"held": self.mqtt.gate.held, "queued": self.queue.qsize()},
            )
        self.mqtt.stop(timeout=min(2.0, grace))
        if self.http:
            self.http.stop()
        log.info("stopped")
        return 1 if self.failed.is_set() else 0


def force_exit() -> None:
    """A second SIGTERM/SIGINT: leave now, with code 1, as uvicorn's force exit does.

    Not ``SystemExit``: unwinding the interpreter while torch's and paho's threads run aborted the
    process (SIGABRT, "terminate called without an active exception"). Unacknowledged beats stay with
    the broker, which redelivers them.
    """
    log.warning("second signal: exiting at once without draining")
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(1)


def _topic_of(message: mqtt.MQTTMessage, lenient: bool = False) -> str:
    """The message's topic; paho decodes it as UTF-8 on access, which raises on a broker that lets
    anything through. ``lenient`` (for dead letters) replaces the undecodable bytes instead."""
    try:
        return message.topic
    except UnicodeDecodeError:
        if lenient:
            return bytes(message._topic).decode("utf-8", "replace")  # paho has no other accessor
        raise InvalidBeat("bad_topic", "topic is not valid UTF-8") from None
