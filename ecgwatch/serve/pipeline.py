"""The daemon's data path: beats and strips in, events out.

Four threads share it. paho's intake thread parses each message (:meth:`Pipeline.intake`): a beat goes
straight to the scoring queue, a strip to the segmenting thread (:meth:`Pipeline.segment_until_drained`),
which finds its beats and queues them in time order, followed by a :class:`StripEnd`. The scoring thread
gathers micro-batches of beats from every device and runs the model (:meth:`Pipeline.score_until_drained`).
The publishing thread turns reconstructions into scores, folds each beat into its device's episodes and
publishes the events (:meth:`Pipeline.publish_until_drained`); an input is acknowledged only once every event
it caused is confirmed (a strip: all its beats' and episodes' events, then its device state is committed).
"""

from __future__ import annotations

import copy
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

from ecgwatch.artifact import LoadedModel
from ecgwatch.detection import adaptation, features
from ecgwatch.detection.adaptation import DeviceModel, Terms
from ecgwatch.detection.device import Verdict
from ecgwatch.detection.episodes import Event, observe_beat, observe_unreadable
from ecgwatch.scorer import Reconstruction, Scorer
from ecgwatch.serve.config import Settings
from ecgwatch.serve.devices import DeviceState, Enrolment
from ecgwatch.serve.messages import (
    SCHEMA_VERSION,
    Beat,
    BeatLimits,
    InvalidBeat,
    StripBeat,
    StripLimits,
    dead_letter,
    parse_beat,
    parse_strip,
    score_event,
)
from ecgwatch.serve.metrics import Metrics
from ecgwatch.serve.mqtt_session import Delivery, MqttSession, Publication
from ecgwatch.serve.strips import Streams, StripEnd, StripJob, StripTicket, encode_state, strip_beats

log = logging.getLogger(__name__)
IDLE_TICK_S = 0.5
# Scored batches waiting for the publishing thread: enough for the model to run ahead, few enough that
# a stalled broker connection stops the scoring (and, through the intake gate, the intake) quickly.
PUBLISH_BACKLOG = 4
# Strips waiting to be segmented: each may hold a minute of samples, so few; beyond it the intake waits.
STRIP_BACKLOG = 8


@dataclass(frozen=True)
class Pending:
    """A beat on its way: from a beat message (``output`` is its delivery) or a strip (its ticket)."""

    beat: Beat | StripBeat
    output: Delivery | StripTicket
    received: float  # time.monotonic()
    received_wall: float

    @property
    def scorable(self) -> bool:
        return self.beat.samples is not None and self.beat.quality == "ok"


Item = Pending | StripEnd


@dataclass(frozen=True)
class Part:
    """The beats of a batch that one model reconstructed, prepared one way."""

    scorer: Scorer  # the one that reconstructed them: its rule (or the device's) finishes the scores
    reconstruction: Reconstruction
    devices: list[DeviceModel] | None  # adapted: each beat's device as it was prepared with; None: plain


@dataclass(frozen=True)
class ScoredBatch:
    """A micro-batch the models have reconstructed, on its way to the publishing thread, which scores it."""

    items: list[Item]
    parts: list[Part]
    rows: dict[int, tuple[int, int]]  # item index -> (part, row) for the beats that went through a model
    started: float  # time.monotonic() when inference began
    inference: float  # seconds


def gather(source: queue.Queue[Item], max_size: int, max_wait_s: float, idle_s: float) -> list[Item]:
    """Block up to ``idle_s`` for a first item, then take more until ``max_size`` or ``max_wait_s`` passes."""
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
        current_beat_scorer: Callable[[], Scorer],
        limits: BeatLimits,
        streams: Streams,
        stopping: threading.Event,
        heartbeat: Callable[[], None],
        enrolment_s: float,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.current_scorer = current_scorer  # the service's, swapped by a reload between batches
        self.current_beat_scorer = current_beat_scorer  # for pre-cut beats (the same one unless strips are adapted)
        self.limits = limits
        self.strip_limits = _strip_limits(settings, limits)
        self.streams = streams
        self.stopping = stopping
        self.heartbeat = heartbeat  # the systemd watchdog: proof that the scoring loop turns
        self.enrolment_s = enrolment_s  # of readable signal before a device's beats are judged (adapted models)
        self.rules = settings.episodes.rules()
        self.queue: queue.Queue[Item] = queue.Queue(maxsize=settings.batch.queue_size)
        self.strips: queue.Queue[StripJob] = queue.Queue(maxsize=STRIP_BACKLOG)
        self.scored: queue.Queue[ScoredBatch | None] = queue.Queue(maxsize=PUBLISH_BACKLOG)
        self.segmented = threading.Event()
        self.drained = threading.Event()
        self.session: MqttSession | None = None
        self.devices: dict[str, DeviceState] = {}  # the publishing thread's own; the scoring thread reads models
        self._paged: dict[str, str] = {}  # open episodes' ids -> the highest severity counted in episode_pages
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
        cfg = self.settings.mqtt
        try:
            topic = _topic_of(message)
            if mqtt.topic_matches_sub(cfg.strip_topic, topic):
                self.metrics.strips_received.inc()
                device, strip = parse_strip(topic, message.payload, cfg.strip_topic, self.strip_limits)
                self.strips.put(StripJob(device, strip, delivery, received, received_wall))
                return
            self.metrics.beats_received.inc()
            beat = parse_beat(topic, message.payload, cfg.beat_topic, self.limits)
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
            self.settings.limits.deadletter_echo_bytes,
        )
        self._mqtt.publish_then_ack(delivery, [("deadletter", self.settings.mqtt.deadletter_topic, letter)])

    # --- segmenting thread ------------------------------------------------------------------------
    def segment_until_drained(self) -> None:
        while True:
            try:
                job = self.strips.get(timeout=IDLE_TICK_S)
            except queue.Empty:
                if self.stopping.is_set():
                    break
                continue
            self._segment(job)
        self.segmented.set()

    def _segment(self, job: StripJob) -> None:
        handle = self._mqtt.open_input(job.delivery)
        ticket, result, outcome = self.streams.segment(job, handle)
        handle.on_done = lambda: self.streams.commit(ticket)
        self.metrics.strips.labels(outcome=outcome).inc()
        if result is None:  # a duplicate of a strip already acknowledged
            handle.close()
            return
        if result.quality != "ok":
            self.metrics.strips_unreadable.labels(reason=result.quality).inc()
        beats = strip_beats(job.device, result, outcome == "late")
        self.metrics.beats_detected.inc(len(beats))
        for beat in beats:
            if beat.quality != "ok":
                self.metrics.beats_unreadable.labels(reason=beat.quality).inc()
            self.queue.put(Pending(beat, ticket, job.received, job.received_wall))
        strip = job.strip
        readable = any(b.quality == "ok" for b in beats)
        self.queue.put(StripEnd(ticket, strip.ts, len(strip.samples) / strip.fs, readable))

    # --- scoring thread ---------------------------------------------------------------------------
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
            elif self.stopping.is_set() and self.segmented.is_set() and self.queue.empty():
                break
            if time.monotonic() - last_ping >= IDLE_TICK_S:
                self.heartbeat()
                last_ping = time.monotonic()
        self.scored.put(None)  # everything before it gets published, then the publisher reports drained

    def _score_batch(self, items: list[Item]) -> ScoredBatch:
        main, for_beats = self.current_scorer(), self.current_beat_scorer()  # one model each per batch
        adapted = main.loaded.adapted
        started = time.monotonic()
        groups: dict[int, tuple[Scorer, list[int], list[np.ndarray], list[DeviceModel] | None]] = {}
        for idx, item in enumerate(items):
            if not isinstance(item, Pending) or not item.scorable:
                continue
            if adapted and isinstance(item.beat, StripBeat):
                device = self._fitted(item.beat.device_id, main)
                if device is None:  # enrolling: the publishing thread keeps its beats, nothing to score
                    continue
                assert item.beat.samples is not None  # scorable
                group = groups.setdefault(-1, (main, [], [], []))
                group[2].append(adaptation.prepare(device, item.beat.samples[None], main.loaded.window.margin)[0])
                group[3].append(device)  # type: ignore[union-attr]
            else:
                scorer = for_beats if isinstance(item.beat, Beat) else main
                group = groups.setdefault(id(scorer), (scorer, [], [], None))
                assert item.beat.samples is not None  # scorable
                group[2].append(item.beat.samples)
            group[1].append(idx)
        parts: list[Part] = []
        rows: dict[int, tuple[int, int]] = {}
        beats = 0
        for scorer, indices, samples, devices in groups.values():
            x = np.stack(samples) if devices is not None else scorer.prepare(np.stack(samples))
            parts.append(Part(scorer, scorer.reconstruct(x), devices))
            rows |= {idx: (len(parts) - 1, k) for k, idx in enumerate(indices)}
            beats += len(indices)
        inference = time.monotonic() - started
        if beats:
            self.metrics.inference_seconds.observe(inference)
            self.metrics.batch_size.observe(beats)
            self.metrics.beats_scored.inc(beats)
        return ScoredBatch(items, parts, rows, started, inference)

    def _fitted(self, device: str, scorer: Scorer) -> DeviceModel | None:
        """The device's fitted model, if it was fitted for this scorer's model (read across threads: the
        publishing thread replaces it whole)."""
        state = self.devices.get(device)
        enrolment = None if state is None else state.enrolment
        if enrolment is None or enrolment.model_version != scorer.loaded.version:
            return None
        return enrolment.device

    # --- publishing thread ------------------------------------------------------------------------
    def publish_until_drained(self) -> None:
        while (scored := self.scored.get()) is not None:
            self._publish_batch(scored)
        self.drained.set()

    def _publish_batch(self, scored: ScoredBatch) -> None:
        finished = [
            None if part.devices is not None else part.scorer.finish(part.reconstruction) for part in scored.parts
        ]
        for idx, item in enumerate(scored.items):
            if isinstance(item, StripEnd):
                self._end_strip(item)
                continue
            timing = {"queued_s": scored.started - item.received, "received_at": item.received_wall}
            row = scored.rows.get(idx)
            if row is not None:
                timing["inference_s"] = scored.inference
            part = None if row is None else scored.parts[row[0]]
            result = None if row is None else finished[row[0]]
            if isinstance(item.beat, StripBeat) and self.current_scorer().loaded.adapted:
                event, verdict = self._strip_event(item, item.beat, part, None if row is None else row[1], timing)
            elif part is not None and result is not None and row is not None:
                k, loaded = row[1], part.scorer.loaded
                peak = (result.peak_start[k], result.peak_end[k])
                event = score_event(item.beat, float(result.scores[k]), loaded.threshold, loaded.version, peak, timing)
                verdict = None
            else:
                loaded = self.current_scorer().loaded
                event, verdict = score_event(item.beat, None, loaded.threshold, loaded.version, None, timing), None
            self._publish_event(item, event, verdict)

    def _strip_event(
        self, item: Pending, beat: StripBeat, part: Part | None, k: int | None, timing: dict[str, float]
    ) -> tuple[dict[str, object], Verdict]:
        """Judge a strip beat on its device (ecgwatch.detection.device): enrolment, templates, rhythm, class.

        Beats of late or redelivered strips are judged on a copy of the device's state: its rhythm has moved
        on, and judging them must not move it again.
        """
        main = self.current_scorer()
        loaded = main.loaded
        ticket = item.output if isinstance(item.output, StripTicket) else None
        attached = ticket is not None and not ticket.detached and not beat.late
        state = self._device_state(beat.device_id, ticket)
        if not attached:
            state = copy.deepcopy(state)
        enrolment, detector = state.for_model(loaded.version, loaded.window)
        device = enrolment.device
        terms = None
        if device is not None and item.scorable:
            if part is None or k is None or part.devices is None:
                # Passed over as enrolling by the scoring thread while the device finished enrolling (a burst):
                # reconstructed here, once per beat, or it would be published unjudged.
                assert beat.samples is not None
                x = adaptation.prepare(device, beat.samples[None], loaded.window.margin)
                part, k = Part(main, main.reconstruct(x), [device]), 0
                self.metrics.beats_scored.inc()
            rec, row = part.reconstruction, slice(k, k + 1)
            fitted = part.devices[k] if part.devices is not None else device
            terms = adaptation.terms(fitted, rec.x[row], rec.reconstruction[row], rec.embedding[row])
        ae = None if terms is None else (float(terms.morphology[0]), float(terms.embedding[0]))
        verdict = detector.step(beat.found, ae, loaded.classifiers if ae is not None else None)
        if verdict.beat_class is not None and attached:
            self.metrics.beats_classified.labels(beat_class=verdict.beat_class).inc()
        if device is None and item.scorable and attached:
            self._enrol(enrolment, beat, main)
        return _verdict_event(beat, verdict, terms, loaded, timing, enrolling=device is None and item.scorable), verdict

    def _enrol(self, enrolment: Enrolment, beat: StripBeat, main: Scorer) -> None:
        loaded = main.loaded

        def model(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            part = main.reconstruct(x)
            return part.reconstruction, part.embedding

        assert beat.samples is not None
        if enrolment.add(beat.samples, beat.found.rr_s, self.enrolment_s, loaded.window.margin, model):
            self.metrics.devices_enrolled.inc()
            log.info("device enrolled", extra={"device": beat.device_id, "model": loaded.version})

    def _publish_event(self, pending: Pending, event: dict[str, object], verdict: Verdict | None) -> None:
        cfg = self.settings.mqtt
        anomalous = bool(event["anomaly"])
        if event["score"] is not None:
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
        publications += self._episodes_of(pending, anomalous, verdict)

        def done() -> bool:
            self.metrics.latency_seconds.observe(time.monotonic() - pending.received)
            return True

        if isinstance(pending.output, StripTicket):
            pending.output.handle.publish(publications)
        else:
            self._mqtt.publish_then_ack(pending.output, publications, done)

    def _device_state(self, device: str, ticket: StripTicket | None) -> DeviceState:
        if ticket is not None and ticket.adopt is not None:  # read from the store: it takes over
            self.devices[device], ticket.adopt = ticket.adopt, None
        return self.devices.setdefault(device, DeviceState())

    def _episodes_of(self, pending: Pending, anomalous: bool, verdict: Verdict | None) -> list[Publication]:
        beat = pending.beat
        ticket = pending.output if isinstance(pending.output, StripTicket) else None
        if not self.settings.episodes.enabled or (ticket is not None and ticket.detached):
            return []
        # A beat no classifier judged (a pre-cut beat, or a strip scored by a model without one) counts as V when
        # anomalous; a pre-cut beat has no timing.
        judged = None if beat.quality != "ok" else ("V" if anomalous else "N")
        if isinstance(beat, StripBeat):
            t, rr, fibrillation = beat.found.t, beat.found.rr_s, verdict is not None and verdict.fibrillation
            beat_class = judged if verdict is None else verdict.beat_class
        else:
            t, rr, fibrillation, beat_class = beat.ts or pending.received_wall, None, False, judged
        state = self._device_state(beat.device_id, ticket)
        events = observe_beat(state.episodes, self.rules, beat.device_id, t, beat_class, rr, fibrillation)
        state.summary.observe(t, beat_class, beat.quality == "ok")
        return self._episode_publications(beat.device_id, events) + self._summary(beat.device_id, state, t, events)

    def _end_strip(self, end: StripEnd) -> None:
        ticket = end.ticket
        if not ticket.detached:
            state = self._device_state(ticket.device, ticket)
            if not end.readable and self.settings.episodes.enabled:
                events = observe_unreadable(state.episodes, self.rules, ticket.device, end.start, end.seconds)
                summary = self._summary(ticket.device, state, end.start + end.seconds, events)
                ticket.handle.publish(self._episode_publications(ticket.device, events) + summary)
            ticket.state = encode_state(ticket.track, state, ticket.missing)
        ticket.handle.close()

    def _episode_publications(self, device: str, events: list[Event]) -> list[Publication]:
        topic = self.settings.mqtt.episode_topic.format(device=device)
        for event in events:
            self.metrics.episodes.labels(kind=event["kind"], type=event["type"]).inc()
            self._count_page(event)
        return [("episode", topic, orjson.dumps({"schema_version": SCHEMA_VERSION, **event})) for event in events]

    def _count_page(self, event: Event) -> None:
        """An episode that reaches warning, then critical, pages at each (metrics only; events carry severity)."""
        levels = ("info", "warning", "critical")
        ending = event["type"] == "end"
        before = self._paged.pop(event["id"], "info") if ending else self._paged.get(event["id"], "info")
        severity = event["severity"]
        if levels.index(severity) > levels.index(before):
            for level in levels[levels.index(before) + 1 : levels.index(severity) + 1]:
                self.metrics.episode_pages.labels(kind=event["kind"], severity=level).inc()
            if not ending:
                self._paged[event["id"]] = severity

    def _summary(self, device: str, state: DeviceState, t: float, events: list[Event]) -> list[Publication]:
        """The device's retained summary, when due or when an episode started or ended."""
        changed = any(e["type"] in ("start", "end") for e in events)
        if not state.summary.due(t, self.settings.episodes.summary_interval_s, changed):
            return []
        enrolled = state.enrolment is not None and state.enrolment.device is not None
        payload = {"schema_version": SCHEMA_VERSION, **state.summary.snapshot(device, t, state.episodes, enrolled)}
        return [("summary", self.settings.mqtt.summary_topic.format(device=device), orjson.dumps(payload))]


def _strip_limits(settings: Settings, limits: BeatLimits) -> StripLimits:
    cfg = settings.limits
    return StripLimits(
        min_fs=cfg.strip_min_fs,
        max_fs=cfg.strip_max_fs,
        min_seconds=cfg.strip_min_s,
        max_seconds=cfg.strip_max_s,
        max_payload_bytes=cfg.max_strip_bytes,
        max_device_id_bytes=limits.max_device_id_bytes,
    )


def _topic_of(message: mqtt.MQTTMessage, lenient: bool = False) -> str:
    """The message's topic; paho decodes it as UTF-8 on access, which raises on a broker that lets
    anything through. ``lenient`` (for dead letters) replaces the undecodable bytes instead."""
    try:
        return message.topic
    except UnicodeDecodeError:
        if lenient:
            return bytes(message._topic).decode("utf-8", "replace")  # paho has no other accessor
        raise InvalidBeat("bad_topic", "topic is not valid UTF-8") from None


# The features an event reports of a classified beat (ecgwatch.detection.features), rounded.
EVENT_TERMS = (
    "correlation", "width", "distance", "premature", "pause", "template_share", "ae_morphology", "ae_embedding",
    "irregularity",
)  # fmt: skip


def _verdict_event(
    beat: StripBeat,
    verdict: Verdict,
    terms: Terms | None,
    loaded: LoadedModel,
    timing: dict[str, float],
    enrolling: bool,
) -> dict[str, object]:
    """A strip beat's event: its class, P(ventricular), the features behind it, where the residual is worst."""
    classifiers = loaded.classifiers
    if verdict.beat_class is None or verdict.probability is None or terms is None or classifiers is None:
        extra: dict[str, object] = {"beat_class": None, "enrolling": True} if enrolling else {"beat_class": None}
        return score_event(beat, None, loaded.threshold, loaded.version, None, timing, extra)
    threshold = classifiers.fibrillation_threshold if verdict.fibrillation else classifiers.threshold
    where = int(terms.where[0])
    window = loaded.window
    step = (window.before_s + window.after_s) / (window.seq_len - 1)
    assert verdict.features is not None
    values = dict(zip(features.NAMES, verdict.features.tolist(), strict=True))
    extra = {
        "beat_class": verdict.beat_class,
        "atrial_fibrillation": verdict.fibrillation,
        "fired": {"V": "morphology", "S": "rhythm"}.get(verdict.beat_class),
        "terms": {name: None if np.isnan(values[name]) else round(values[name], 3) for name in EVENT_TERMS},
        "peak_error_s": [
            round(-window.before_s + where * step, 3),
            round(-window.before_s + (where + adaptation.WINDOW) * step, 3),
        ],
    }
    peak = (where, where + adaptation.WINDOW)
    anomaly = verdict.beat_class in ("S", "V")
    return score_event(beat, verdict.probability, threshold, loaded.version, peak, timing, extra, anomaly)
