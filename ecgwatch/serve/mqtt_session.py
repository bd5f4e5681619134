"""The daemon's MQTT connections: a persistent intake session, a publishing connection, the ack rule.

No loss across restarts needs all of: QoS 1, a fixed client id, ``clean_start=False`` with a session
expiry (paho's default starts every new process clean and the broker drops our queued beats), and
acknowledging a beat only after every message it caused is confirmed (:meth:`MqttSession.publish_then_ack`).

Two connections, because one cannot be both bounded and live. Receive Maximum should cap the beats the
broker sends us unacknowledged, but Mosquitto 2.0.11 honours it only until the first PUBACK: after that
each acknowledgement releases up to a whole window (measured: Receive Maximum 100, 10 acks, 1,100 beats
in flight). The daemon must bound what it holds itself, by not reading more; on one connection that also
stops it reading the broker's confirmations of our scores, which are what frees the beats held. So beats
come in and are acknowledged on the *intake* session, whose network thread waits for a free slot (TCP
back-pressure, the broker keeps the rest), and events go out on the *publishing* connection, whose
confirmations keep flowing.
"""

from __future__ import annotations

import logging
import ssl
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from ecgwatch.serve.acks import AckTracker
from ecgwatch.serve.config import MqttSettings
from ecgwatch.serve.messages import SCHEMA_VERSION
from ecgwatch.serve.metrics import Metrics

log = logging.getLogger(__name__)
# 0 = no paho-side limit. With a limit, paho rescans its in-flight messages on every PUBACK (a quarter of
# the daemon's CPU under load, measured with py-spy). Our outgoing messages are bounded anyway: each belongs
# to a held input beat, and the intake gate caps those.
OUTGOING_INFLIGHT = 0
GATE_POLL_S = 0.2
# Refusals are logged once per (kind, reason) and then at most this often, with a count.
REFUSAL_LOG_INTERVAL_S = 60.0

Publication = tuple[str, str, bytes]  # (kind, topic, payload): kind labels the metrics ("score", ...)
RETAINED = frozenset({"summary"})


@dataclass(frozen=True)
class Delivery:
    """An input message as the intake session received it; acknowledging needs all three."""

    mid: int
    qos: int
    generation: int  # which intake connection delivered it: a mid means nothing on the next one


def secure(client: mqtt.Client, settings: MqttSettings) -> None:
    """Credentials and TLS for any of our clients (daemon, simulator, demo view), from the same settings.

    The broker's certificate is always verified (CERT_REQUIRED, hostname checked): there is no insecure mode.
    """
    if settings.username:
        client.username_pw_set(settings.username, settings.resolved_password())
    if settings.tls.active:
        client.tls_set(
            ca_certs=str(settings.tls.ca_file) if settings.tls.ca_file else None,
            certfile=str(settings.tls.cert_file) if settings.tls.cert_file else None,
            keyfile=str(settings.tls.key_file) if settings.tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )


class IntakeGate:
    """At most ``limit`` input messages held: received and not yet acknowledged (or given up on)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free = threading.Semaphore(limit)
        self._held = 0
        self._lock = threading.Lock()

    def enter(self, stopping: threading.Event) -> bool:
        """Wait for a free slot (the caller is paho's intake thread: waiting is the back-pressure)."""
        while not self._free.acquire(timeout=GATE_POLL_S):
            if stopping.is_set():
                return False
        with self._lock:
            self._held += 1
        return True

    def leave(self) -> None:
        with self._lock:
            self._held -= 1
        self._free.release()

    @property
    def held(self) -> int:
        return self._held


class InputHandle:
    """One input's publications, published as they are produced; see :meth:`MqttSession.open_input`."""

    def __init__(self, session: MqttSession, delivery: Delivery, on_done: Callable[[], bool] | None) -> None:
        self._session = session
        self._kinds: list[str] = []
        self.on_done = on_done  # may be set until close(): it runs when the input settles
        self._key = session.tracker.begin(
            lambda refusals: session._settle(delivery, self._kinds, refusals, self.on_done)
        )

    def publish(self, publications: Sequence[Publication]) -> None:
        if not publications:
            return
        tracker = self._session.tracker
        tracker.expect(self._key, len(publications))
        properties = self._session.publish_properties()
        for kind, topic, payload in publications:
            self._kinds.append(kind)
            retain = kind in RETAINED  # a late subscriber sees each device's summary at once
            info = self._session.publisher.publish(topic, payload, qos=1, retain=retain, properties=properties)
            tracker.published(self._key, info.mid, kind)

    def close(self) -> None:
        self._session.tracker.close(self._key)


class MqttSession:
    def __init__(
        self,
        settings: MqttSettings,
        instance: str,
        on_message: Callable[[mqtt.MQTTMessage, Delivery], None],
        metrics: Metrics,
        held_limit: int,
        on_fatal: Callable[[str], None],
        stopping: threading.Event,
    ) -> None:
        self.settings = settings
        self.status_topic = settings.status_topic.format(instance=instance)
        self.metrics = metrics
        self.tracker = AckTracker()
        self.gate = IntakeGate(held_limit)
        self.connected = threading.Event()
        self.stopping = stopping  # the service's intake_closed: once set, no new input is taken in
        self._on_message = on_message
        self._on_fatal = on_fatal
        self._receive_maximum = max(1, min(held_limit, 65535))
        self._links = {"intake": False, "publisher": False}
        self._answered: set[str] = set()  # links whose current connection attempt got a CONNACK
        self._connected_before: set[str] = set()
        self._generation = 0
        self._had_session = False
        self._awaiting_redelivery = 0
        self._refusal_log: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self.intake = self._client(settings.session_id, "intake")
        self.publisher = self._client(f"{settings.session_id}-pub", "publisher")
        self._leaving, self._left_group = threading.Event(), threading.Event()
        self.intake.on_unsubscribe = self._guard(lambda *_: self._left_group.set())
        self.intake.will_set(self.status_topic, b"offline", qos=1, retain=True)
        self.intake.on_message = self._guard(self._handle_message)
        self.publisher.on_publish = self._guard(self._handle_publish)
        self.metrics.beats_held.set_function(lambda: self.gate.held)
        self.metrics.beats_held_limit.set(held_limit)
        self._threads: list[threading.Thread] = []
        self._properties: Properties | None = None

    # --- set-up ------------------------------------------------------------------------------------
    def set_model(self, version: str) -> None:
        """The model serving now, named in each publication's user properties (MQTT 5)."""
        if self.settings.protocol != "5":
            return
        properties = Properties(PacketTypes.PUBLISH)
        properties.ContentType = "application/json"
        properties.PayloadFormatIndicator = 1  # UTF-8 text
        properties.UserProperty = [("schema_version", str(SCHEMA_VERSION)), ("model", version)]
        self._properties = properties  # replaced whole: publishing threads read it without a lock

    def publish_properties(self) -> Properties | None:
        """Content type, payload format and user properties, so a consumer or a broker rule can route and
        decode events without parsing them (MQTT 5; None on 3.1.1, which has no properties)."""
        return self._properties

    def _client(self, client_id: str, link: str) -> mqtt.Client:
        settings = self.settings
        v5 = settings.protocol == "5"
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            # 3.1.1: the intake's session persists (clean_session=False); the publisher's need not: paho
            # resends its unconfirmed messages after a reconnect, and a crash loses none (their beats are unacked)
            clean_session=None if v5 else link == "publisher",
            manual_ack=True,
        )
        client.suppress_exceptions = True  # belt and braces: our callbacks are guarded, paho's thread must live
        secure(client, settings)
        client.reconnect_delay_set(int(settings.reconnect_min_s), int(settings.reconnect_max_s))
        client.max_inflight_messages_set(OUTGOING_INFLIGHT)
        client.max_queued_messages_set(0)
        client.on_connect = self._guard(lambda c, _u, flags, reason, _p: self._handle_connect(link, c, flags, reason))
        client.on_connect_fail = self._guard(lambda _c, _u: self._handle_connect_fail(link))
        client.on_disconnect = self._guard(lambda _c, _u, _f, reason, _p: self._handle_disconnect(link, reason))
        return client

    def _guard(self, callback: Callable[..., None]) -> Callable[..., None]:
        """Run a paho callback; an exception in it is a defect: stop with an error, never carry on deaf.

        Before, an exception escaping ``on_message`` killed paho's network thread while ``/healthz`` said ok.
        """

        def guarded(*args: Any) -> None:
            try:
                callback(*args)
            except Exception:
                log.critical("mqtt callback failed; stopping so the service manager restarts us", exc_info=True)
                self._on_fatal("mqtt callback failed")

        return guarded

    def _connect_properties(self, link: str) -> Properties:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.settings.session_expiry_s if link == "intake" else 0
        if link == "intake":
            properties.ReceiveMaximum = self._receive_maximum
        return properties

    def start(self) -> None:
        s = self.settings
        for link, client in (("intake", self.intake), ("publisher", self.publisher)):
            if s.protocol == "5":
                client.connect_async(
                    s.host,
                    s.port,
                    keepalive=s.keepalive_s,
                    clean_start=link == "publisher",
                    properties=self._connect_properties(link),
                )
            else:
                client.connect_async(s.host, s.port, keepalive=s.keepalive_s)
            client.loop_start()
            # paho keeps its network thread here; health checks that it is still alive.
            thread = client._thread
            assert thread is not None, "loop_start() runs paho's network thread"
            self._threads.append(thread)

    # --- connection events (paho's threads) --------------------------------------------------------
    def _handle_connect(self, link: str, client: mqtt.Client, flags: Any, reason: ReasonCode) -> None:
        self._answered.add(link)
        if reason.is_failure:  # a refused login or a banned client id: paho retries with backoff
            self.metrics.connection_failures.labels(stage="refused").inc()
            log.error("mqtt connection refused by the broker", extra={"link": link, "reason": str(reason)})
            return
        log.info("mqtt connected", extra={"link": link, "session_present": flags.session_present})
        if link in self._connected_before:
            self.metrics.reconnects.labels(link=link).inc()
        self._connected_before.add(link)
        if link == "intake":
            self._intake_connected(client, flags.session_present)
        self._set_link(link, True)

    def _intake_connected(self, client: mqtt.Client, session_present: bool) -> None:
        with self._lock:
            self._generation += 1
            self._awaiting_redelivery = 0  # a new connection: the broker redelivers every unacked beat
        if self._had_session and not session_present:
            self.metrics.sessions_lost.inc()
            log.warning(
                "the broker did not keep our session: beats queued for us while we were away are lost",
                extra={"client_id": self.settings.session_id},
            )
        self._had_session = True
        if self._leaving.is_set() or self.stopping.is_set():
            return  # leaving: a reconnect while draining must not join the group again
        if self.settings.protocol == "5":  # retained beats are old beats: never score them again on connect
            options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
            client.subscribe([(topic, options) for topic in self.settings.subscriptions])
        else:
            client.subscribe([(topic, 1) for topic in self.settings.subscriptions])
        client.publish(self.status_topic, b"online", qos=1, retain=True)

    def _handle_connect_fail(self, link: str) -> None:
        # paho calls this inside its ``except OSError`` around the connect: the exception is the reason.
        error = sys.exc_info()[1]
        tls = isinstance(error, ssl.SSLCertVerificationError)
        self.metrics.connection_failures.labels(stage="tls" if isinstance(error, ssl.SSLError) else "network").inc()
        log.error(
            "mqtt TLS certificate verification failed" if tls else "mqtt connection failed",
            extra={"link": link, "broker": f"{self.settings.host}:{self.settings.port}", "error": str(error)},
        )

    def _handle_disconnect(self, link: str, reason: ReasonCode) -> None:
        if self._links[link]:  # a lost connection is news to the operator; our own disconnect is not
            level = logging.INFO if self.stopping.is_set() else logging.WARNING
            log.log(level, "mqtt disconnected", extra={"link": link, "reason": str(reason)})
        elif link not in self._answered and not self.stopping.is_set():
            # Closed before any CONNACK: with TLS 1.3 a broker rejects our client certificate only after
            # the handshake, so this is where a missing or untrusted certificate shows.
            self.metrics.connection_failures.labels(stage="tls" if self.settings.tls.active else "network").inc()
            log.error(
                "mqtt connection closed before the broker answered",
                extra={"link": link, "reason": str(reason), "tls": self.settings.tls.active},
            )
        self._answered.discard(link)
        self._set_link(link, False)

    def _set_link(self, link: str, up: bool) -> None:
        with self._lock:
            self._links[link] = up
            both = all(self._links.values())
        if both:
            self.connected.set()
        else:
            self.connected.clear()
        self.metrics.mqtt_connected.set(1 if both else 0)

    # --- intake ------------------------------------------------------------------------------------
    def _handle_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        if message.retain:  # MQTT 3.1.1 cannot refuse retained beats at subscribe time: skip them here
            self.metrics.beats_skipped.labels(reason="retained").inc()
            self.intake.ack(message.mid, message.qos)
            return
        if self.stopping.is_set() or not self.gate.enter(self.stopping):
            return  # stopping: not acknowledged, the broker redelivers it to our next session
        self._on_message(message, Delivery(message.mid, message.qos, self._generation))

    # --- publishing --------------------------------------------------------------------------------
    def open_input(self, delivery: Delivery, on_done: Callable[[], bool] | None = None) -> InputHandle:
        """An input whose publications come in parts (a strip's beats, scored batch by batch).

        It is acknowledged once :meth:`InputHandle.close` was called and the broker accepted every
        publication, after ``on_done`` (which may refuse the ack by returning False: the input then stays
        with the broker). If the broker refuses any publication (MQTT 5 reason code >= 0x80, e.g. an ACL's
        "Not authorized"), the input is not acknowledged: it stays with the broker and comes back on our next
        connection. MQTT 3.1.1 has no way to refuse a publish; a broker that drops it there drops it silently.
        """
        return InputHandle(self, delivery, on_done)

    def publish_then_ack(
        self, delivery: Delivery, publications: Sequence[Publication], on_done: Callable[[], bool] | None = None
    ) -> None:
        """Publish everything an input caused at QoS 1; acknowledge it once the broker accepted all."""
        handle = self.open_input(delivery, on_done)
        handle.publish(publications)
        handle.close()

    def _settle(
        self, delivery: Delivery, kinds: list[str], refusals: list[tuple[str, str]], on_done: Callable[[], bool] | None
    ) -> None:
        refused_kinds = [kind for kind, _ in refusals]
        for kind in kinds:
            if kind in refused_kinds:
                refused_kinds.remove(kind)
            else:
                self.metrics.published[kind].inc()
        if refusals:
            self._refused(refusals)
        elif on_done is None or on_done():
            self._ack(delivery)
        self.gate.leave()

    def _ack(self, delivery: Delivery) -> None:
        if delivery.generation == self._generation:  # else the broker has redelivered it: that copy gets acked
            self.intake.ack(delivery.mid, delivery.qos)

    def _handle_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        self.tracker.answered(mid, str(reason) if reason.is_failure else None)

    def _refused(self, refusals: list[tuple[str, str]]) -> None:
        with self._lock:
            self._awaiting_redelivery += 1
        now = time.monotonic()
        for kind, reason in refusals:
            self.metrics.publish_failures.labels(kind=kind, reason=reason).inc()
            if now - self._refusal_log.get((kind, reason), -REFUSAL_LOG_INTERVAL_S) >= REFUSAL_LOG_INTERVAL_S:
                self._refusal_log[(kind, reason)] = now
                log.warning(
                    "the broker refused a publish; its beat stays unacknowledged for redelivery",
                    extra={"kind": kind, "reason": reason, "awaiting_redelivery": self._awaiting_redelivery},
                )

    # --- health and shutdown -----------------------------------------------------------------------
    def problem(self) -> str | None:
        """Why this session cannot do its job right now, or None."""
        if any(not thread.is_alive() for thread in self._threads) and not self.stopping.is_set():
            return "mqtt network thread stopped"
        if not self.connected.is_set():
            return "mqtt disconnected"
        if self._awaiting_redelivery:
            return f"broker refused publishes: {self._awaiting_redelivery} beats await redelivery"
        return None

    def leave_group(self, timeout: float) -> None:
        """Unsubscribe from the shared group before draining, so the broker sends new beats to its other members.

        Mosquitto keeps dealing a group's messages to a member whose persistent session is offline: a member
        that stopped without leaving held 1/N of the group's beats until it came back (100 of 200, measured),
        for the whole session expiry after a scale-in. Beats already delivered to us are still scored and
        acknowledged by the drain that follows; the session itself stays, with anything the broker had
        queued for it, so nothing is lost.
        """
        if not self.settings.shared_group or not self.connected.is_set():
            return
        self._leaving.set()
        self.intake.unsubscribe(list(self.settings.subscriptions))
        if self._left_group.wait(timeout):
            log.info("left the shared group", extra={"group": self.settings.shared_group})
        else:
            log.warning("the broker did not confirm we left the shared group", extra={"timeout_s": timeout})

    def wait_idle(self, timeout: float) -> bool:
        """Block until every publication has been answered, or ``timeout`` passes; True when idle."""
        return self.tracker.wait_idle(timeout)

    def stop(self, timeout: float) -> None:
        """Announce ``offline`` (retained), then disconnect; the intake session and its queue stay on the broker."""
        if self.connected.is_set():
            self.intake.publish(self.status_topic, b"offline", qos=1, retain=True).wait_for_publish(timeout)
        for client in (self.intake, self.publisher):
            client.disconnect()
            client.loop_stop()
