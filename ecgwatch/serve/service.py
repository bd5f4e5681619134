"""``ecgwatch serve``: the daemon's lifecycle around its data path (:mod:`ecgwatch.serve.pipeline`).

Start-up (model, metrics server, MQTT session, worker threads), readiness and the systemd watchdog,
signals (drain on the first, leave on the second), hot reload of the model, health, and the drain on stop.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import torch

import ecgwatch
from ecgwatch import artifact
from ecgwatch.models import resolve_device
from ecgwatch.scorer import Scorer
from ecgwatch.serve.config import Settings
from ecgwatch.serve.http import MetricsServer
from ecgwatch.serve.messages import BeatLimits
from ecgwatch.serve.metrics import Metrics
from ecgwatch.serve.mqtt_session import MqttSession
from ecgwatch.serve.pipeline import IDLE_TICK_S, Pipeline
from ecgwatch.serve.sdnotify import Notifier
from ecgwatch.serve.state import open_store
from ecgwatch.serve.strips import Streams

log = logging.getLogger(__name__)
LIVENESS_STALL_S = 30.0  # as WatchdogSec= in deploy/systemd: a scoring loop this late is stuck


class Service:
    def __init__(self, settings: Settings, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.notifier = notifier or Notifier()
        self.metrics = Metrics()
        self.device = resolve_device(settings.model.device)
        self.scorer = self._load_scorer(settings.model.path)  # raises ArtifactError: start-up stops
        # A model judged per device (fixed windows, enrolment) cannot read pre-cut beats: those go to a
        # model of ECG5000's kind (model.beat_path, by default the shipped ECG5000 model).
        self.beat_scorer = self._beat_scorer()
        limits = BeatLimits(
            seq_len=self.beat_scorer.loaded.seq_len,
            min_samples=settings.limits.min_samples,
            max_samples=settings.limits.max_samples,
            max_payload_bytes=settings.limits.max_payload_bytes,
            max_device_id_bytes=settings.limits.max_device_id_bytes,
        )
        self.last_tick = time.monotonic()  # the scoring loop's last turn: liveness and the systemd watchdog
        self.stopping = threading.Event()
        # Set after a shared-group member left its group: until then beats still arrive and are scored.
        self.intake_closed = threading.Event()
        self.failed = threading.Event()
        self.reload_requested = threading.Event()
        self._signals = 0
        self._failure = ""
        self.store = open_store(settings.state)  # raises on a bad path or an unreachable Redis: start-up stops
        streams = Streams(self.store, self.scorer.loaded.window, self.metrics)
        self.pipeline = Pipeline(
            settings,
            self.metrics,
            lambda: self.scorer,
            lambda: self.beat_scorer,
            limits,
            streams,
            self.intake_closed,
            self._tick,
            self._enrolment_s(),
        )
        self.mqtt = MqttSession(
            settings.mqtt,
            settings.instance,
            self.pipeline.intake,
            self.metrics,
            settings.batch.queue_size,
            self._fatal,
            self.intake_closed,
        )
        self.pipeline.attach(self.mqtt)
        self.mqtt.set_model(self.scorer.loaded.version)
        self.http: MetricsServer | None = None
        self.metrics.build_info.info({"version": ecgwatch.__version__, "torch": torch.__version__})

    # --- model -----------------------------------------------------------------------------------
    def _beat_scorer(self, check_against: Scorer | None = None) -> Scorer:
        if not self.scorer.loaded.adapted:
            return self.scorer
        path = self.settings.model.beat_path or artifact.REFERENCE_MODEL_DIR
        scorer = self._load_scorer(path, check_against, publish=False)
        if scorer.loaded.adapted:
            raise artifact.ArtifactError(f"{path}: model.beat_path must be a model that scores pre-cut beats alone")
        return scorer

    def _enrolment_s(self) -> float:
        configured = self.settings.model.enrolment_s
        return configured or float(self.scorer.loaded.metadata.get("adaptation", {}).get("enrolment_s", 120.0))

    def _load_scorer(self, path: Path, check_against: Scorer | None = None, publish: bool = True) -> Scorer:
        loaded = artifact.load(path)
        if check_against is not None and loaded.window != check_against.loaded.window:
            # Strips are cut, and beats resampled, for the input the served model declared; another needs a restart.
            raise artifact.ArtifactError(
                f"{path}: its input ({loaded.window}) differs from the served model's "
                f"({check_against.loaded.window}); restart the daemon to change the input"
            )
        scorer = Scorer(loaded, self.device, self.settings.model.precision)
        if check_against is None and publish:
            self._publish_model_metrics(scorer)
        log.info(
            "model loaded", extra={"model": loaded.version, "threshold": loaded.threshold, "device": str(self.device)}
        )
        return scorer

    def _publish_model_metrics(self, scorer: Scorer) -> None:
        loaded = scorer.loaded
        self.metrics.threshold.set(loaded.threshold)
        # No path label: a path differs per host and says nothing the version does not.
        self.metrics.model_info.info({"version": loaded.version, "device": str(self.device)})

    def reload(self) -> bool:
        """Validate the new model fully before swapping; on any failure keep serving the old one.

        A reload must never take a serving daemon down, whatever the files hold: anything a candidate
        raises is a refused reload, logged with the reason.
        """
        self.notifier.reloading()
        try:
            candidate = self._load_scorer(self.settings.model.path, check_against=self.scorer)
            if candidate.loaded.adapted != self.scorer.loaded.adapted:
                raise artifact.ArtifactError("a reload cannot switch between per-device and fixed scoring: restart")
            beats = self._beat_scorer(check_against=self.beat_scorer) if candidate.loaded.adapted else candidate
        except (artifact.ArtifactError, OSError, ValueError) as exc:
            ok = self._reload_failed(str(exc))
        except Exception as exc:  # a defect in loading: still keep serving, but say where it came from
            log.debug("model reload raised", exc_info=True)
            ok = self._reload_failed(f"{type(exc).__name__}: {exc}")
        else:
            self.scorer, self.beat_scorer = candidate, beats  # devices fitted to the old model enrol again
            self.mqtt.set_model(candidate.loaded.version)
            self.metrics.model_reloads.labels(result="success").inc()
            ok = True
        self._publish_model_metrics(self.scorer)
        self.notifier.ready(f"serving {self.scorer.loaded.version}")
        return ok

    def _reload_failed(self, reason: str) -> bool:
        self.metrics.model_reloads.labels(result="failure").inc()
        log.error("model reload failed; keeping the previous model", extra={"error": reason})
        return False

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
        self.intake_closed.set()
        self.stopping.set()

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

    def _tick(self) -> None:
        self.last_tick = time.monotonic()
        self.notifier.watchdog()

    def alive(self) -> tuple[bool, str]:
        """Liveness: the scoring loop turned recently (as the systemd watchdog checks). Unlike readiness it
        stays true while the broker is away: restarting us would not bring the broker back."""
        if self.failed.is_set():
            return False, self._failure
        stalled = time.monotonic() - self.last_tick
        if stalled > LIVENESS_STALL_S:
            return False, f"scoring loop stalled for {stalled:.0f} s"
        return True, "alive"

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
            checks = {"/healthz": self.healthy, "/livez": self.alive}
            metrics = self.settings.metrics
            self.http = MetricsServer(self.metrics.registry, checks, metrics.host, metrics.port)
            self.http.start()
            log.info("metrics listening", extra={"port": self.http.port})
        self.mqtt.start()
        workers = (
            ("segmenting", self.pipeline.segment_until_drained),
            ("scoring", self.pipeline.score_until_drained),
            ("publishing", self.pipeline.publish_until_drained),
        )
        for name, work in workers:
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
            self.mqtt.leave_group(timeout=min(5.0, grace / 2))
        self.intake_closed.set()
        if not self.failed.is_set():
            self.pipeline.drained.wait(max(0.0, deadline - time.monotonic()))
        idle = self.mqtt.wait_idle(max(0.0, deadline - time.monotonic()))
        if not idle or not self.pipeline.drained.is_set():
            log.warning(
                "grace period over with beats in flight; the broker will redeliver them",
                extra={"held": self.mqtt.gate.held, "queued": self.pipeline.queue.qsize()},
            )
        self.mqtt.stop(timeout=min(2.0, grace))
        self.store.close()
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
