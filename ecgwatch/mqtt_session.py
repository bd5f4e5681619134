"""The daemon's MQTT connection: persistent session, manual acks, availability, tracked publishing.

No loss across restarts needs all of: QoS 1, a fixed client id, ``clean_start=False`` with a session
expiry (paho's default starts every new process clean and the broker drops our queued beats), and
acknowledging a beat only after its score is confirmed. Receive Maximum caps how many unacknowledged
beats the broker sends us, which is our back-pressure: beyond the queue size, the broker holds them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ecgwatch.acks import AckTracker
from ecgwatch.config import MqttSettings

log = logging.getLogger(__name__)
# 0 = no paho-side limit. With a limit, paho rescans its in-flight messages on every PUBACK (a quarter of
# the daemon's CPU under load, measured with py-spy). Our outgoing messages are bounded anyway: each belongs
# to an unacknowledged input beat, and Receive Maximum caps those at the queue size.
OUTGOING_INFLIGHT = 0


class MqttSession:
    def __init__(
        self,
        settings: MqttSettings,
        instance: str,
        on_message: Callable[[mqtt.MQTTMessage], None],
        on_connection: Callable[[bool], None],
        receive_maximum: int,
    ) -> None:
        self.settings = settings
        self.status_topic = settings.status_topic.format(instance=instance)
        self.tracker = AckTracker()
        self.connected = threading.Event()
        self._stopping = False
        self._on_message = on_message
        self._on_connection = on_connection
        self._receive_maximum = max(1, min(receive_maximum, 65535))
        v5 = settings.protocol == "5"
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,  # 3.1.1: a persistent session is clean_session=False
            manual_ack=True,
        )
        if settings.username:
            client.username_pw_set(settings.username, settings.resolved_password())
        client.will_set(self.status_topic, b"offline", qos=1, retain=True)
        client.reconnect_delay_set(int(settings.reconnect_min_s), int(settings.reconnect_max_s))
        client.max_inflight_messages_set(OUTGOING_INFLIGHT)
        client.max_queued_messages_set(0)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = lambda _c, _u, message: self._on_message(message)
        client.on_publish = lambda _c, _u, mid, _rc, _p: self.tracker.confirmed(mid)
        self.client = client

    def start(self) -> None:
        if self.settings.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self.settings.session_expiry_s
            properties.ReceiveMaximum = self._receive_maximum
            self.client.connect_async(
                self.settings.host,
                self.settings.port,
                keepalive=self.settings.keepalive_s,
                clean_start=False,
                properties=properties,
            )
        else:  # the broker's in-flight limit and our bounded queue provide the back-pressure
            self.client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
        self.client.loop_start()

    def _handle_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            log.error("mqtt connection refused", extra={"reason": str(reason)})
            return
        log.info("mqtt connected", extra={"session_present": flags.session_present, "broker": self.settings.host})
        # Subscribing again on a resumed session is harmless and picks up a changed topic or group.
        client.subscribe(self.settings.subscription, qos=1)
        self._publish_status(b"online")
        self.connected.set()
        self._on_connection(True)

    def _handle_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if self.connected.is_set():  # a lost connection is news to the operator; our own disconnect is not
            level = logging.INFO if self._stopping else logging.WARNING
            log.log(level, "mqtt disconnected", extra={"reason": str(reason)})
        self.connected.clear()
        self._on_connection(False)

    def publish_for(self, key: int, topic: str, payload: bytes, retain: bool = False) -> mqtt.MQTTMessageInfo:
        """Publish at QoS 1 on behalf of input ``key``; its ack waits for the broker's confirmation."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        self.tracker.published(key, info.mid)
        return info

    def _publish_status(self, status: bytes) -> mqtt.MQTTMessageInfo:
        return self.publish_for(self.tracker.begin(1, lambda: None), self.status_topic, status, retain=True)

    def ack(self, mid: int, qos: int) -> None:
        self.client.ack(mid, qos)

    def stop(self, timeout: float) -> None:
        """Announce ``offline`` (retained), then disconnect; the session and its queue stay on the broker."""
        if self.connected.is_set():
            self._publish_status(b"offline").wait_for_publish(timeout)
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()
