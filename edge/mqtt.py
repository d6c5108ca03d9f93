"""Thin paho-mqtt 2 adapter: connection, last will, and in-order at-least-once alert delivery.

How paho 2.2 behaves (read from paho/mqtt/client.py) and what this adapter does about it:

- ``publish(qos=1)`` while disconnected keeps the message in the client's ``_out_messages``
  (an insertion-ordered dict) and returns ``MQTT_ERR_NO_CONN``; after a reconnect the client
  re-sends every unacknowledged QoS 1 message itself, oldest first, with the DUP flag set for
  those that had been sent. ``on_publish`` fires when the PUBACK arrives.
- But ``on_connect`` runs *before* that re-send loop. A message published from another thread
  right after ``on_connect`` could overtake the older messages being re-sent.
- The client's own queue is unbounded (``max_queued_messages = 0``) and cannot drop selectively.

So the bounded queue lives in `edge.outbox.Outbox`, and the client only ever holds a small
window of it. Messages are handed over only while connected. After each (re)connect, nothing
new is handed over until every message the client already holds has been acknowledged: the
client re-sends those in order, then the window opens again. A message leaves the outbox only on
its PUBACK. A message whose PUBACK was lost in a connection drop is sent again (duplicates are
possible; alert subscribers de-duplicate on ``(id, seq)``).

PUBACKs are matched by message id. paho also calls ``on_publish`` for QoS 0 vitals, whose ids
come from the same 16-bit counter; a clash would need 65535 publishes while one alert waits for
its PUBACK (nothing is published while disconnected, and a PUBACK takes milliseconds once
connected), so it is not guarded further.

Threads: paho's network thread runs the callbacks; they only set flags and queue PUBACK ids.
The runtime thread calls `MqttPublisher.pump` and owns the outbox.
"""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from edge.commands import RESULT_LEAF
from edge.config import MqttConfig, MqttSecurity
from edge.events import Priority
from edge.outbox import Outbox
from edge.payloads import OFFLINE_PAYLOAD

__all__ = ["MqttPublisher", "secure", "tls_context"]

_log = logging.getLogger(__name__)

_QOS_AT_LEAST_ONCE = 1
_PAHO_MAX_INFLIGHT = 20
"""paho's in-flight limit; kept above the outbox window so paho never queues alerts itself."""


MODEL_INBOUND: Final = ("offer", "chunk")
"""``<prefix>/<device>/model/<leaf>`` topics the edge subscribes to (docs/flashing.md)."""
_TLS_CHECK_TIMEOUT_S: Final = 3.0
_AUTH_FAILURES: Final = frozenset({4, 5, 134, 135})
"""CONNACK codes for bad credentials: MQTT 3.1.1 4 and 5, MQTT 5 0x86 and 0x87."""


def tls_context(config: MqttSecurity) -> ssl.SSLContext:
    """Client TLS: the broker's certificate verified (by ``tls_ca_file``, else the system CAs)
    against its host name or IP; the client certificate when configured."""
    context = ssl.create_default_context(cafile=config.tls_ca_file or None)
    if config.tls_cert_file:
        context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    return context


def secure(client: mqtt.Client, security: MqttSecurity) -> ssl.SSLContext | None:
    """Put ``security``'s username/password and TLS on ``client`` before it connects; the TLS
    context it uses (None without TLS). One place for the edge and every CLI client."""
    if security.username:
        client.username_pw_set(security.username, security.password or None)
    if not security.uses_tls:
        return None
    context = tls_context(security)
    client.tls_set_context(context)
    return context


class MqttPublisher:
    """Publishes vitals (QoS 0), alerts (QoS 1, via the outbox) and retained status (QoS 1)."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        status_topic: str,
        alert_topic: str,
        outbox: Outbox,
        command_base: str | None = None,
        on_command: Callable[[str, bytes], None] | None = None,
        model_base: str | None = None,
        on_model: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self._config = config
        self._status_topic = status_topic
        self._alert_topic = alert_topic
        self._command_base = command_base
        self._on_command_cb = on_command
        self._model_base = model_base
        self._on_model_cb = on_model
        self.commands_retained_ignored = 0
        self.outbox = outbox
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._resync = False
        self._need_status = False
        self._stopping = False
        self.connects = 0
        self.disconnects = 0
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            clean_session=False,
        )
        client.max_inflight_messages_set(_PAHO_MAX_INFLIGHT)
        client.reconnect_delay_set(config.reconnect_min_s, config.reconnect_max_s)
        client.will_set(status_topic, OFFLINE_PAYLOAD, qos=_QOS_AT_LEAST_ONCE, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        self._tls = secure(client, config)
        self.last_error: str | None = None
        self._client = client

    @property
    def connected(self) -> bool:
        """True between a successful CONNACK and the next disconnect."""
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background; an unreachable broker is retried forever with backoff."""
        _log.info(
            "connecting to MQTT broker %s:%d as %s",
            self._config.host, self._config.port, self._config.client_id,
        )
        if self._tls is not None:
            self._check_tls(self._tls)
        self._client.connect_async(
            self._config.host, self._config.port, keepalive=self._config.keepalive_s
        )
        self._client.loop_start()

    def _fail(self, message: str) -> None:
        self.last_error = message
        _log.error("%s", message)

    def _check_tls(self, context: ssl.SSLContext) -> None:
        """One TLS handshake before connecting, to name a certificate problem plainly (the
        background connect only says that it failed, and keeps retrying)."""
        host, port = self._config.host, self._config.port
        try:
            with (socket.create_connection((host, port), timeout=_TLS_CHECK_TIMEOUT_S) as sock,
                  context.wrap_socket(sock, server_hostname=host)):
                return
        except ssl.SSLCertVerificationError as exc:
            self._fail(
                f"MQTT broker {host}:{port}: its TLS certificate is not trusted "
                f"({exc.verify_message}); check mqtt.tls_ca_file and that the certificate "
                f"names {host}"
            )
        except ssl.SSLError as exc:
            self._fail(f"MQTT broker {host}:{port}: TLS handshake failed ({exc.reason or exc}); "
                       "is it a TLS listener, and is mqtt.tls_cert_file accepted?")
        except OSError as exc:
            _log.warning("MQTT broker %s:%d not reachable yet (%s); retrying", host, port, exc)

    def take_status_request(self) -> bool:
        """True once after each connect: the runtime should publish its status now."""
        with self._lock:
            need, self._need_status = self._need_status, False
        return need

    def queue_alert(self, priority: Priority, payload: bytes, label: str) -> None:
        """Put an alert message in the outbox; it is sent by `pump` in order."""
        self.outbox.push(priority, self._alert_topic, payload, label)

    def publish_status(self, payload: bytes) -> None:
        """Retained status, only while connected (the last will covers the rest)."""
        if not self.connected:
            return
        info = self._client.publish(
            self._status_topic, payload, qos=_QOS_AT_LEAST_ONCE, retain=True
        )
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            _log.debug("status publish returned %s", mqtt.error_string(info.rc))

    def publish_retained(self, topic: str, payload: bytes) -> None:
        """Current state on ``topic`` (QoS 1, retained), only while connected: superseded by
        the next one, and re-sent at the next period after a reconnect."""
        if not self.connected:
            return
        info = self._client.publish(topic, payload, qos=_QOS_AT_LEAST_ONCE, retain=True)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            _log.debug("publish to %s returned %s", topic, mqtt.error_string(info.rc))

    def publish_volatile(self, topic: str, payload: bytes) -> None:
        """Fire-and-forget (QoS 0), only while connected: vitals are superseded every second."""
        if not self.connected:
            return
        info = self._client.publish(topic, payload, qos=0)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            _log.debug("publish to %s returned %s", topic, mqtt.error_string(info.rc))

    def pump(self) -> None:
        """Process PUBACKs and hand the next alerts to the client (call often, one thread)."""
        while True:
            try:
                mid = self._acks.get_nowait()
            except queue.Empty:
                break
            item = self.outbox.ack(mid)
            if item is not None:
                _log.debug("delivered %s (mid %d)", item.label, mid)
        if not self.connected:
            return
        with self._lock:
            if self._resync:
                if self.outbox.handed:
                    return  # paho is re-sending older messages; let them go first
                self._resync = False
        while (item := self.outbox.next_to_hand()) is not None:
            info = self._client.publish(item.topic, item.payload, qos=_QOS_AT_LEAST_ONCE)
            self.outbox.mark_handed(item, info.mid)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                # Still held by paho and re-sent on reconnect, in order.
                _log.debug("%s queued in client: %s", item.label, mqtt.error_string(info.rc))

    def stop(self, timeout_s: float = 2.0) -> None:
        """Clean shutdown: retained offline status (if connected), disconnect, stop the thread."""
        if self.connected:
            info = self._client.publish(
                self._status_topic, OFFLINE_PAYLOAD, qos=_QOS_AT_LEAST_ONCE, retain=True
            )
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError) as exc:
                _log.warning("offline status not confirmed: %s", exc)
            if not info.is_published():
                _log.warning("offline status not acknowledged within %.1f s", timeout_s)
        self._stopping = True
        pending = len(self.outbox)
        if pending:
            _log.warning("stopping with %d alert message(s) not acknowledged", pending)
        self._client.disconnect()
        self._client.loop_stop()

    # paho callbacks (network thread) --------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            hint = (" (check mqtt.username and mqtt.password)"
                    if reason_code.value in _AUTH_FAILURES else "")
            self._fail(f"MQTT broker {self._config.host}:{self._config.port} refused the "
                       f"connection: {reason_code}{hint}")
            return
        self.connects += 1
        _log.info(
            "connected to MQTT broker %s:%d (session present: %s)",
            self._config.host, self._config.port, flags.session_present,
        )
        with self._lock:
            self._resync = True
            self._need_status = True
        if self._command_base is not None:
            client.subscribe(f"{self._command_base}/+", qos=_QOS_AT_LEAST_ONCE)
        if self._model_base is not None and self._on_model_cb is not None:
            client.subscribe([(f"{self._model_base}/{leaf}", _QOS_AT_LEAST_ONCE)
                              for leaf in MODEL_INBOUND])
        self._connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if self._stopping:
            _log.info("disconnected from MQTT broker (clean stop)")
        elif was_connected:
            self.disconnects += 1
            _log.warning(
                "disconnected from MQTT broker (%s); alerts are queued until it is back",
                reason_code,
            )

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        """A command (edge/commands.py) or a model transfer message (docs/flashing.md): handed
        to the runtime unless retained."""
        base, _, name = msg.topic.rpartition("/")
        if base == self._model_base and name in MODEL_INBOUND:
            if msg.retain:
                self.commands_retained_ignored += 1
                _log.warning("ignored a RETAINED model transfer message on %s", msg.topic)
            elif self._on_model_cb is not None:
                self._on_model_cb(name, bytes(msg.payload))
            return
        if name == RESULT_LEAF or self._on_command_cb is None:
            return  # our own answers share the command level
        if msg.retain:
            self.commands_retained_ignored += 1
            _log.warning(
                "ignored a RETAINED command on %s (%d bytes): commands must not be retained; "
                "clear it with an empty retained message", msg.topic, len(msg.payload),
            )
            return
        self._on_command_cb(name, bytes(msg.payload))

    def publish_event(self, topic: str, payload: bytes) -> None:
        """A QoS 1, not retained message outside the alert queue (model transfer progress):
        only while connected; the sender re-asks after a reconnect (docs/flashing.md)."""
        if not self.connected:
            return
        info = self._client.publish(topic, payload, qos=_QOS_AT_LEAST_ONCE)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            _log.warning("message to %s not sent now (%s)", topic, mqtt.error_string(info.rc))

    def publish_result(self, name: str, payload: bytes) -> None:
        """The answer to a command on ``<command_base>/result`` (QoS 1, not retained)."""
        if self._command_base is None:
            return
        info = self._client.publish(
            f"{self._command_base}/{RESULT_LEAF}", payload, qos=_QOS_AT_LEAST_ONCE
        )
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            _log.warning("result of %s not sent now (%s)", name, mqtt.error_string(info.rc))

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        _log.warning(
            "MQTT broker %s:%d not reachable; retrying", self._config.host, self._config.port
        )

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        self._acks.put(mid)
