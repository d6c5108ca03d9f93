"""A stand-in edge for flashing tests and the benchmark: a paho client that feeds a real
`edge.transfer.TransferReceiver` and, once a bundle is complete, calls a stub install.

It plays the device side of docs/flashing.md the way the runtime will: offers and chunks in on
paho's thread (the only thread touching the receiver), progress out on ``model/progress``,
retained ``status`` (online, with the model version) so ``--all`` finds it.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.transfer import (
    CHUNK_LEAF,
    OFFER_LEAF,
    PROGRESS_LEAF,
    TransferError,
    TransferReceiver,
)
from models.bundle import MANIFEST_FILE
from models.signing import TrustedKey, verify_signature

Install = Callable[[Path], str]
"""Installs the bundle in a directory and returns its version; raises to refuse it."""


def stub_install(trusted: list[TrustedKey]) -> Install:
    """Checks the signature (the device's first step) and reads the version: no TFLite, fast."""

    def install(path: Path) -> str:
        verify_signature(path, trusted)
        return str(json.loads((path / MANIFEST_FILE).read_text())["bundle_version"])

    return install


class FlashDevice:
    """One simulated edge on the broker at ``host:port``; ``drop_after`` N: chunk messages
    after the N-th are dropped unread (a link that dies midway). ``nodelay``: TCP_NODELAY on
    its socket (benchmarks/flash_time.py measures what Nagle's algorithm costs)."""

    def __init__(
        self, host: str, port: int, device: str, incoming: Path, install: Install, *,
        prefix: str = "vigil", version: str = "v-before", drop_after: int | None = None,
        stall_s: float = 30.0, nodelay: bool = False,
    ) -> None:
        self.device = device
        self.base = f"{prefix}/{device}"
        self.version = version
        self.install = install
        self.drop_after = drop_after
        self.nodelay = nodelay
        self.receiver = TransferReceiver(incoming, device=device, stall_s=stall_s)
        self.chunk_messages = 0
        self.progress: list[dict[str, Any]] = []
        self.done = threading.Event()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"dev-{device}-{uuid.uuid4().hex[:6]}")
        self.client.will_set(f"{self.base}/status", json.dumps({"state": "offline"}), 1, True)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        assert self._subscribed.wait(10), "harness device did not subscribe"

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        sock = client.socket()
        if self.nodelay and isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.subscribe([(f"{self.base}/{OFFER_LEAF}", 1), (f"{self.base}/{CHUNK_LEAF}", 1)])
        self._status()

    def _status(self) -> None:
        body = {"state": "online", "device": self.device,
                "model": {"state": "loaded", "version": self.version}}
        self.client.publish(f"{self.base}/status", json.dumps(body), qos=1, retain=True)

    def _send(self, payload: bytes | None) -> None:
        if payload is None:
            return
        self.progress.append(json.loads(payload))
        self.client.publish(f"{self.base}/{PROGRESS_LEAF}", payload, qos=1, retain=False)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith(OFFER_LEAF):
            self._send(self.receiver.offer(bytes(msg.payload)))
        else:
            self.chunk_messages += 1
            if self.drop_after is not None and self.chunk_messages > self.drop_after:
                return
            self._send(self.receiver.chunk(bytes(msg.payload)))
        for tid in self.receiver.ready():
            self._finish(tid)

    def _finish(self, tid: str) -> None:
        try:
            path = self.receiver.completed(tid)
        except TransferError as exc:
            self._send(exc.progress)
            return
        self._send(self.receiver.installing(tid))
        before = self.version
        try:
            after = self.install(path)
        except Exception as exc:
            self._send(self.receiver.result(tid, ok=False, version_before=before,
                                            version_after=before, reason=f"verify: {exc}"))
        else:
            self.version = after
            self._send(self.receiver.result(tid, ok=True, version_before=before,
                                            version_after=after))
            self._status()
        self.done.set()

    def close(self) -> None:
        self.client.publish(f"{self.base}/status", json.dumps({"state": "offline"}), 1, True)
        self.client.disconnect()
        self.client.loop_stop()
