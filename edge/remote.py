"""Send one command to an edge over MQTT and wait for its answer (``vigil-edge ack|silence``).

A thin adapter: the command's form and checks are edge/commands.py. The sender subscribes to
the edge's ``cmd/result`` first, then publishes the command (QoS 1, never retained) with a
fresh ``request_id``, and returns the result carrying that id, or None when none arrives in
time (edge off, or broker unreachable).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.commands import RESULT_LEAF, parse_command
from edge.config import MqttSecurity, read_password_file
from edge.mqtt import secure
from edge.payloads import iso_utc

__all__ = [
    "CommandTimeoutError", "add_security_flags", "client_security", "fetch_status",
    "format_status", "security_from_args", "send_command",
]

_log = logging.getLogger(__name__)

_QOS: int = 1


class CommandTimeoutError(TimeoutError):
    """No answer: the message says whether the broker was unreachable, refused us (bad
    credentials, untrusted certificate) or the edge was silent."""


def _readable(path: str, flag: str) -> None:
    if path and not os.access(path, os.R_OK):
        raise ValueError(f"{flag} {path}: not a readable file")


def add_security_flags(parser: argparse.ArgumentParser) -> None:
    """The flags every MQTT client command takes for a broker with passwords and TLS (``vigil-edge
    status|alerts|ack|...`` and ``vigil-train flash``); read them with `security_from_args`."""
    group = parser.add_argument_group("broker security (as the edge's [mqtt] section)")
    group.add_argument("--username", metavar="USER", default="", help="MQTT user name")
    group.add_argument("--password-file", metavar="FILE", default="",
                       help="file whose first line is the password (never a flag: ps shows it)")
    group.add_argument("--tls", action="store_true", help="TLS, trusting the system CAs")
    group.add_argument("--tls-ca", metavar="FILE", default="",
                       help="TLS, trusting the CA in FILE (the one that signed the broker)")
    group.add_argument("--tls-cert", metavar="FILE", default="", help="client certificate")
    group.add_argument("--tls-key", metavar="FILE", default="", help="its private key")


def security_from_args(args: argparse.Namespace) -> MqttSecurity:
    """`client_security` from the flags of `add_security_flags` (ValueError naming a flag)."""
    return client_security(username=args.username, password_file=args.password_file,
                           tls=args.tls, tls_ca=args.tls_ca, tls_cert=args.tls_cert,
                           tls_key=args.tls_key)


def client_security(
    *, username: str = "", password_file: str = "", tls: bool = False, tls_ca: str = "",
    tls_cert: str = "", tls_key: str = "",
) -> MqttSecurity:
    """Check the security flags (ValueError naming the flag) and read the password file's first
    line (a password is never a flag of its own: it would show in ``ps`` and shell history)."""
    for path, flag in ((password_file, "--password-file"), (tls_ca, "--tls-ca"),
                       (tls_cert, "--tls-cert"), (tls_key, "--tls-key")):
        _readable(path, flag)
    if bool(tls_cert) != bool(tls_key):
        raise ValueError("--tls-cert and --tls-key go together (a client certificate and its key)")
    if password_file and not username:
        raise ValueError("--password-file needs --username")
    password = read_password_file(password_file) if password_file else ""
    return MqttSecurity(username=username, password=password, tls=tls, tls_ca_file=tls_ca,
                        tls_cert_file=tls_cert, tls_key_file=tls_key)


class _Waiter:
    """A short-lived client: subscribes to ``topic`` and keeps the first JSON object that
    ``accept`` takes. Used as a context manager (connect, then disconnect whatever happens)."""

    def __init__(
        self, host: str, port: int, topic: str, accept: Callable[[dict[str, Any]], bool],
        client_id: str, *, security: MqttSecurity | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.topic = topic
        self.subscribed = threading.Event()
        self.answered = threading.Event()
        self.refused: str | None = None
        self.result: dict[str, Any] = {}
        self._accept = accept
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=client_id)
        if security is not None:
            secure(self.client, security)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:  # bad credentials: say so instead of timing out
            self.refused = f"MQTT broker {self.host}:{self.port} refused the connection: " \
                f"{reason} (check --username and --password-file)"
            self.subscribed.set()
            self.answered.set()
            return
        client.subscribe(self.topic, qos=_QOS)

    def check(self) -> None:
        """Raise CommandTimeoutError when the broker refused the connection."""
        if self.refused is not None:
            raise CommandTimeoutError(self.refused)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            data = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(data, dict) and not self.answered.is_set() and self._accept(data):
            self.result.update(data)
            self.answered.set()

    def __enter__(self) -> _Waiter:
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except ssl.SSLCertVerificationError as exc:
            raise CommandTimeoutError(
                f"MQTT broker {self.host}:{self.port}: its TLS certificate is not trusted "
                f"({exc.verify_message}; give its CA with --tls-ca)"
            ) from exc
        except OSError as exc:
            raise CommandTimeoutError(
                f"MQTT broker {self.host}:{self.port} not reachable: {exc}"
            ) from exc
        self.client.loop_start()
        return self

    def __exit__(self, *_: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def send_command(
    host: str, port: int, *, topic_prefix: str, device: str, name: str,
    body: dict[str, Any], timeout_s: float = 5.0, security: MqttSecurity | None = None,
) -> dict[str, Any]:
    """Publish command ``name`` with ``body`` to ``device``; returns the edge's result object.

    The body is checked with `edge.commands.parse_command` before anything is sent (a
    `CommandError` names the bad field). Raises CommandTimeoutError when the broker cannot be
    reached or the edge does not answer within ``timeout_s``.
    """
    request_id = uuid.uuid4().hex
    payload = json.dumps(
        {**body, "request_id": request_id, "sent": iso_utc(time.time())}
    ).encode("utf-8")
    parse_command(name, payload)
    base = f"{topic_prefix}/{device}/cmd"
    with _Waiter(host, port, f"{base}/{RESULT_LEAF}",
                 lambda data: data.get("request_id") == request_id,
                 f"vigil-cmd-{request_id[:12]}", security=security) as waiter:
        if not waiter.subscribed.wait(timeout_s):
            raise CommandTimeoutError(
                f"MQTT broker {host}:{port} did not answer in {timeout_s:g} s"
            )
        waiter.check()
        waiter.client.publish(f"{base}/{name}", payload, qos=_QOS, retain=False)
        if not waiter.answered.wait(timeout_s):
            raise CommandTimeoutError(
                f"edge {device!r} did not answer {name} in {timeout_s:g} s (is it running and "
                f"connected to {host}:{port}?)"
            )
    return waiter.result


def fetch_status(
    host: str, port: int, *, topic_prefix: str, device: str, timeout_s: float = 5.0,
    security: MqttSecurity | None = None,
) -> dict[str, Any]:
    """The edge's retained status (docs/mqtt.md), read from the broker; CommandTimeoutError
    when the broker is unreachable or holds no status for ``device``."""
    with _Waiter(host, port, f"{topic_prefix}/{device}/status", lambda _: True,
                 f"vigil-status-{uuid.uuid4().hex[:12]}", security=security) as waiter:
        answered = waiter.answered.wait(timeout_s)
        waiter.check()
        if not answered:
            raise CommandTimeoutError(
                f"no status of edge {device!r} on {host}:{port} within {timeout_s:g} s "
                "(never started, or another topic prefix?)"
            )
    return waiter.result


def format_status(device: str, status: dict[str, Any]) -> str:
    """The status as lines for a terminal (``vigil-edge status``)."""
    if status.get("state") != "online":
        return f"{device}: OFFLINE (last will or clean stop)\n"
    health = status.get("health", {})
    alerts = status.get("alerts", {})
    model = status.get("model", {})
    reloads = health.get("config_reloads", {})
    lines = [
        f"{device}: online, version {status.get('version')}, up {health.get('uptime_s')} s, "
        f"status at {status.get('time')}",
        (f"  model: {model.get('state')} {model.get('version', model.get('reason', ''))}".rstrip()
         + {"store": " (installed in the model store)",
            "configured": " (the configured bundle)"}.get(str(model.get("source")), "")),
        f"  scoring pass: median {health.get('evaluate_median_ms')} ms, "
        f"p99 {health.get('evaluate_p99_ms')} ms",
        f"  configuration reloads: {reloads.get('applied')} applied, "
        f"{reloads.get('refused')} refused",
        f"  alerts: {alerts.get('active')} active, {alerts.get('queued')} queued, "
        f"{alerts.get('in_flight')} in flight, {alerts.get('delivered')} delivered, "
        f"dropped {alerts.get('dropped')}",
    ]
    rates = health.get("frames_per_s", {})
    for bed, b in status.get("beds", {}).items():
        link = "connected" if b.get("connected") else "NOT CONNECTED"
        lines.append(
            f"  bed {bed}: {b.get('serial')} {link}, {rates.get(bed)} frames/s, last frame "
            f"{b.get('last_frame_age_s')} s ago, CRC errors {b.get('crc_errors')}"
        )
    return "\n".join(lines) + "\n"
