"""Shared fixtures: a real mosquitto broker per test, unique device ids, MQTT collectors.

The broker listens on a random free 127.0.0.1 port with persistence in the test's tmp_path, so a
test can stop it and start it again on the same port and subscriber sessions survive. Without
mosquitto the tests that need it are skipped, except under CI=true where that is a failure.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests import contract
from tests.mosquitto import MosquittoBroker, find_mosquitto


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A running broker private to this test."""
    binary = find_mosquitto()
    if binary is None:
        reason = "mosquitto is not installed (apt-get install mosquitto)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " and CI=true requires it")
        pytest.skip(reason)
    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    broker = MosquittoBroker(binary, workdir)
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()


@pytest.fixture
def device_id() -> str:
    """A device id no other test uses, so topics never overlap."""
    return f"t-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Received:
    """One message seen by a collector; ``data`` is the parsed JSON object (None if not JSON)."""

    topic: str
    data: Any
    retain: bool
    payload: bytes = b""
    at: float = 0.0
    """time.monotonic() when it arrived."""


class MqttCollector:
    """A paho subscriber that records every message and lets a test wait for one."""

    def __init__(
        self,
        broker: MosquittoBroker,
        topics: list[str],
        *,
        client_id: str | None = None,
    ) -> None:
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self.connects = 0
        self.subscribed = 0
        """SUBACKs received: one per (re)connect, since each connect subscribes again."""
        persistent = client_id is not None
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id or f"collector-{uuid.uuid4().hex[:10]}",
            clean_session=not persistent,
        )
        self.client.reconnect_delay_set(1, 2)
        self._topics = [(t, 1) for t in topics]
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.connect(broker.host, broker.port, keepalive=5)
        self.client.loop_start()
        self.wait_connected()

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe(self._topics)
        with self._cond:
            self.connects += 1
            self._cond.notify_all()

    def _on_subscribe(self, client: mqtt.Client, *args: Any) -> None:
        with self._cond:
            self.subscribed += 1
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            data = json.loads(msg.payload)
        except ValueError:
            data = None
        with self._cond:
            self.messages.append(Received(msg.topic, data, bool(msg.retain), bytes(msg.payload),
                                          time.monotonic()))
            self._cond.notify_all()

    def wait_connected(self, timeout_s: float = 10.0, count: int = 1) -> None:
        """Until the ``count``-th connect's subscription is acknowledged (SUBACK): from then on
        the broker delivers every message published on the topics, none is missed."""
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self.connects >= count and self.subscribed >= count, timeout_s
            )
        assert ok, f"collector did not connect and subscribe within {timeout_s} s"

    def snapshot(self) -> list[Received]:
        with self._cond:
            return list(self.messages)

    def wait_for(
        self, predicate: Callable[[Received], bool], timeout_s: float = 10.0
    ) -> Received:
        """First message (seen so far or arriving) matching ``predicate``; fails after timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for m in self.messages:
                    if predicate(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(m.topic, m.data) for m in self.messages[-10:]]
                    raise AssertionError(f"no matching message within {timeout_s} s; last: {seen}")
                self._cond.wait(min(left, 0.2))

    def alerts(self) -> list[dict[str, Any]]:
        """Alert payloads in arrival order, de-duplicated on (id, seq)."""
        seen: set[tuple[str, int]] = set()
        out: list[dict[str, Any]] = []
        for m in self.snapshot():
            if not m.topic.endswith("/alert") or not isinstance(m.data, dict):
                continue
            key = (m.data["id"], m.data["seq"])
            if key not in seen:
                seen.add(key)
                out.append(m.data)
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mqtt_collector() -> Iterator[Callable[..., MqttCollector]]:
    """Factory: ``mqtt_collector(broker, ["vigil/dev/#"], client_id=None)``; closed at teardown."""
    made: list[MqttCollector] = []

    def make(
        broker: MosquittoBroker, topics: list[str], *, client_id: str | None = None
    ) -> MqttCollector:
        c = MqttCollector(broker, topics, client_id=client_id)
        made.append(c)
        return c

    yield make
    broken: list[str] = []
    for c in made:
        c.close()
        for m in c.snapshot():
            if m.topic.startswith(f"{contract.PREFIX}/"):
                broken += contract.errors(m.topic, m.payload)
    assert not broken, "messages outside the MQTT contract (docs/mqtt.md):\n" + "\n".join(
        broken[:20]
    )
