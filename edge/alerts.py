"""Alert subscriber for a nurse-station terminal (``vigil-edge alerts``).

`AlertPrinter` is pure: MQTT messages in (topic, payload bytes), lines to print out. It
de-duplicates re-delivered alerts on ``(id, seq)`` (QoS 1 is at-least-once) and reports a
device's availability only when it changes. `run_alerts` is the thin paho adapter around it.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge.config import MqttSecurity
from edge.mqtt import secure

__all__ = ["AlertPrinter", "format_alert", "parse_broker", "run_alerts"]

_log = logging.getLogger(__name__)

_DEDUP_MEMORY: Final = 10_000
"""Remembered (id, seq) pairs; far more than can be re-delivered after one reconnect."""
_QOS_AT_LEAST_ONCE: Final = 1
_PRIORITY_TAGS: Final = {"high": "HIGH", "medium": "MEDIUM", "low": "low"}


def _clock(iso: object) -> str:
    """Local HH:MM:SS of an ISO-8601 time, or the raw text if it does not parse."""
    if not isinstance(iso, str):
        return "??:??:??"
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return iso


def _fmt_value(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def format_alert(alert: Mapping[str, Any]) -> str:
    """One readable line: time, bed, priority, event, kind, message, values, device and id."""
    values = alert.get("values") or {}
    shown = " ".join(f"{k}={_fmt_value(v)}" for k, v in values.items()) if values else ""
    priority = str(alert.get("priority", "?"))
    return (
        f"{_clock(alert.get('time'))}  {alert.get('bed', '?'):<8} "
        f"{_PRIORITY_TAGS.get(priority, priority):<6} {str(alert.get('event', '?')).upper():<6} "
        f"{alert.get('kind', '?'):<14} {alert.get('message', '')}"
        + (f"  [{shown}]" if shown else "")
        + f"  ({alert.get('device', '?')} {str(alert.get('id', '?'))[:8]})"
    )


class AlertPrinter:
    """Turns alert and status messages into output lines (plain text or JSON lines)."""

    def __init__(self, *, as_json: bool = False) -> None:
        self.as_json = as_json
        self.alerts = 0
        self.duplicates = 0
        self.malformed = 0
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._device_state: dict[str, str] = {}

    def handle(self, topic: str, payload: bytes) -> list[str]:
        """Lines to print for one message (none for duplicates and unchanged status)."""
        parts = topic.split("/")
        leaf = parts[-1]
        device = parts[-2] if len(parts) >= 2 else "?"
        try:
            obj = json.loads(payload)
            if not isinstance(obj, dict):
                raise TypeError("not a JSON object")
        except (ValueError, TypeError) as exc:
            self.malformed += 1
            _log.warning("ignoring malformed message on %s: %s", topic, exc)
            return []
        if leaf == "alert":
            return self._alert(obj)
        if leaf == "status":
            return self._status(device, obj)
        return []

    def _alert(self, obj: dict[str, Any]) -> list[str]:
        seq = obj.get("seq", 0)
        if "id" not in obj or not isinstance(seq, int):
            self.malformed += 1
            _log.warning("ignoring alert without id or integer seq: %s", obj)
            return []
        key = (str(obj["id"]), seq)
        if key in self._seen:
            self.duplicates += 1
            return []
        self._seen[key] = None
        if len(self._seen) > _DEDUP_MEMORY:
            self._seen.popitem(last=False)
        self.alerts += 1
        if self.as_json:
            return [json.dumps(obj, separators=(",", ":"))]
        return [format_alert(obj)]

    def _status(self, device: str, obj: dict[str, Any]) -> list[str]:
        state = str(obj.get("state", "?"))
        if self._device_state.get(device) == state:
            return []
        self._device_state[device] = state
        if self.as_json:
            return [json.dumps({"device": device, **obj}, separators=(",", ":"))]
        when = _clock(obj["time"]) if "time" in obj else time.strftime("%H:%M:%S")
        shown = "OFFLINE" if state == "offline" else state
        return [f"{when}  device {device} is {shown}"]


def parse_broker(text: str) -> tuple[str, int]:
    """``HOST`` or ``HOST:PORT`` (default port 1883); ValueError naming the flag otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, 1883
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--broker {text!r}: expected HOST or HOST:PORT")
    return host, int(port)


def run_alerts(
    broker: str,
    *,
    device: str = "+",
    topic_prefix: str = "vigil",
    as_json: bool = False,
    count: int | None = None,
    timeout_s: float | None = None,
    client_id: str | None = None,
    out: TextIO | None = None,
    security: MqttSecurity | None = None,
) -> int:
    """Subscribe and print until ``count`` alerts, ``timeout_s`` or Ctrl-C.

    With ``client_id`` the session is persistent (clean_session=False): alerts published while
    this subscriber was away are delivered when it comes back. Returns 0 when done (``count``
    reached, or timeout without a count), 1 when the timeout hit before ``count`` alerts,
    2 for a bad ``--broker``.
    """
    stream = out or sys.stdout
    try:
        host, port = parse_broker(broker)
    except ValueError as exc:
        _log.error("%s", exc)
        return 2
    printer = AlertPrinter(as_json=as_json)
    inbox: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
    topics = [
        (f"{topic_prefix}/{device}/alert", _QOS_AT_LEAST_ONCE),
        (f"{topic_prefix}/{device}/status", _QOS_AT_LEAST_ONCE),
    ]

    def on_connect(
        client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any
    ) -> None:
        if reason.is_failure:
            _log.error("broker refused the connection: %s", reason)
            return
        _log.info("connected to %s:%d, subscribing to %s", host, port, [t for t, _ in topics])
        client.subscribe(topics)

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        inbox.put((msg.topic, bytes(msg.payload)))

    def on_connect_fail(client: mqtt.Client, userdata: Any) -> None:
        _log.warning("broker %s:%d not reachable; retrying", host, port)

    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id or f"vigil-alerts-{uuid.uuid4().hex[:12]}",
        clean_session=client_id is None,
    )
    client.reconnect_delay_set(1, 10)
    if security is not None:
        secure(client, security)
    client.on_connect = on_connect
    client.on_message = on_message
    client.on_connect_fail = on_connect_fail
    client.connect_async(host, port, keepalive=30)
    client.loop_start()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while count is None or printer.alerts < count:
            wait = 0.5 if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                break
            try:
                topic, payload = inbox.get(timeout=min(wait, 0.5))
            except queue.Empty:
                continue
            for line in printer.handle(topic, payload):
                print(line, file=stream, flush=True)
                if count is not None and printer.alerts >= count:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        client.disconnect()
        client.loop_stop()
    if count is not None and printer.alerts < count:
        return 1
    return 0
