"""`vigil-train flash`: send a signed bundle to edges over MQTT and report each device's outcome.

    vigil-train flash BUNDLE (--device ID [--device ID ...] | --all) --broker HOST[:PORT]
                      [--topic-prefix P] [--username U --password-file F] [--tls | --tls-ca F]
                      [--tls-cert F --tls-key F] [--timeout S] [--stall S] [--max-reoffers N]
                      [--chunk-size BYTES] [--key PUB] [--discover-s S]

The protocol is docs/flashing.md; the device side is edge/transfer.py. Three layers:

- `plan_bundle` (no network): refuses up front a bundle that would be refused anyway — files
  not matching the manifest, golden vectors failing (`models.bundle.load_bundle`), no or a
  malformed ``manifest.sig``. Whether the signing key is *trusted* is the device's decision;
  ``--key`` checks the signature against a public key here as well. It then cuts the byte
  stream (the files concatenated in offer order) into chunks and hashes each once.
- `DeviceFlash` / `FlashSession` (sans-I/O): one state machine per device, fed with the
  device's progress payloads and a clock, telling what to publish next. Rules:

  1. Offer first; send chunks only from the device's answer (what it still needs: resume).
  2. At most ``window`` chunks per device unacknowledged (``4 * ack_every``: the device reports
     every ``ack_every`` chunk messages, so the window never waits for a report that needs
     chunks not yet sent). Bounded memory at the broker for a device that went away.
  3. A reported-missing chunk sent before the chunk the device processed last (``last``) was
     lost or damaged (MQTT keeps one publisher's QoS 1 messages on a topic in order): sent
     again at once. Later ones are still in flight.
  4. Nothing heard for ``stall_s`` while sending: the offer again (its answer lists what is
     missing). ``max_reoffers`` offers without progress: failed, saying whether the device
     ever answered.
  5. ``timeout_s`` per device bounds everything, the install included.

- `flash` and `flash_main` (thin paho adapter, CLI): connect with the edge CLI's security
  flags, discover devices for ``--all`` from retained ``<prefix>/+/status`` (online), run the
  session, draw one progress line per device on stderr, print a table on stdout.

Exit codes: 0 every device installed the bundle, 1 any refused or failed, 2 bad usage or a
bundle refused before sending, 3 broker unreachable or refusing us.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import logging
import math
import queue
import ssl
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.alerts import parse_broker
from edge.config import MqttSecurity
from edge.mqtt import secure
from edge.remote import add_security_flags, security_from_args
from edge.transfer import (
    CHUNK_LEAF,
    DEFAULT_ACK_EVERY,
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    OFFER_LEAF,
    PROGRESS_LEAF,
    Offer,
    OfferFile,
    check_name,
    encode_chunk,
    expand_ranges,
)
from models.bundle import MANIFEST_FILE, BundleError, load_bundle
from models.signing import ALGORITHM, SIGNATURE_FILE, load_public_key, verify_signature

__all__ = [
    "EXIT_BROKER",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "BrokerError",
    "BundlePlan",
    "DeviceFlash",
    "FlashResult",
    "FlashSession",
    "PlanError",
    "ProgressDisplay",
    "Snapshot",
    "discover_devices",
    "flash",
    "flash_main",
    "format_table",
    "plan_bundle",
]

_log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BROKER = 0, 1, 2, 3
_QOS: Final = 1
_SIGNATURE_BYTES: Final = 64
DEFAULT_TIMEOUT_S: Final = 300.0
"""Per device, transfer and install: 64 MiB over a slow ward Wi-Fi still fits."""
DEFAULT_STALL_S: Final = 5.0
DEFAULT_MAX_REOFFERS: Final = 3
DEFAULT_DISCOVER_S: Final = 2.0
_DISCOVER_QUIET_S: Final = 0.3
"""Retained messages follow the SUBACK at once; this long without one, discovery is done."""
_CONNECT_TIMEOUT_S: Final = 10.0
_PAHO_MAX_INFLIGHT: Final = 64
_LOOP_WAIT_S: Final = 0.02
FINAL: Final = frozenset({"installed", "refused", "failed"})


# --------------------------------------------------------------------------------------------
# The bundle, checked and cut (no network)


class PlanError(ValueError):
    """A bundle refused before anything is sent; the message names the file and the reason."""


@dataclass(frozen=True, slots=True)
class BundlePlan:
    """A verified, signed bundle cut into chunks (docs/flashing.md: the byte stream)."""

    root: Path
    version: str
    key_id: str
    chunk_size: int
    files: tuple[OfferFile, ...]
    stream: bytes
    digests: tuple[bytes, ...]

    @property
    def total_bytes(self) -> int:
        """Length of the stream."""
        return len(self.stream)

    @property
    def chunks(self) -> int:
        """Number of chunks."""
        return len(self.digests)

    def chunk_length(self, index: int) -> int:
        """Bytes of data in chunk ``index`` (the last one may be short)."""
        return min(self.chunk_size, self.total_bytes - index * self.chunk_size)

    def chunk_data(self, index: int) -> bytes:
        """Data of chunk ``index``."""
        start = index * self.chunk_size
        return self.stream[start:start + self.chunk_size]

    def offer(self, transfer_id: str, ack_every: int = DEFAULT_ACK_EVERY) -> Offer:
        """The offer of this bundle under ``transfer_id``."""
        return Offer(transfer_id, self.version, self.chunk_size, self.files, ack_every)

    def chunk(self, transfer_id: str, index: int) -> bytes:
        """The chunk message ``index`` of ``transfer_id``."""
        return encode_chunk(transfer_id, index, self.chunk_data(index), self.digests[index])


def _signature_key_id(root: Path) -> str:
    """The key id of a well-formed ``manifest.sig`` (not its validity: the device's trust)."""
    path = root / SIGNATURE_FILE
    if not path.is_file():
        raise PlanError(f"{root}: unsigned ({SIGNATURE_FILE} missing); sign it with "
                        "vigil-train sign BUNDLE --key NAME.key. Devices never install an "
                        "unsigned bundle")
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        algorithm, kid = body["algorithm"], body["key_id"]
        signature = base64.b64decode(body["signature"], validate=True)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError,
            binascii.Error) as exc:
        raise PlanError(f"{path}: unreadable ({exc})") from exc
    if algorithm != ALGORITHM or not isinstance(kid, str) or len(signature) != _SIGNATURE_BYTES:
        raise PlanError(f"{path}: not an {ALGORITHM} signature")
    return kid


def plan_bundle(
    root: str | Path, *, chunk_size: int = DEFAULT_CHUNK_SIZE, public_key: str | Path = "",
) -> BundlePlan:
    """Check the bundle in ``root`` as the device will (but trust) and cut it into chunks.

    PlanError names the problem: files that do not match the manifest, a failed self-test, no
    or a malformed signature, a signature that ``public_key`` (optional) does not verify.
    """
    path = Path(root)
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise PlanError(f"--chunk-size {chunk_size}: expected {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")
    try:
        bundle = load_bundle(path)
    except BundleError as exc:
        raise PlanError(f"{path}: refused before sending: {exc}") from exc
    kid = _signature_key_id(path)
    if public_key:
        try:
            verify_signature(path, [load_public_key(public_key)])
        except (BundleError, ValueError) as exc:
            raise PlanError(f"{path}: {exc}") from exc
    names = sorted({*bundle.manifest.files, MANIFEST_FILE, SIGNATURE_FILE})
    for name in names:
        if (why := check_name(name)) is not None:
            raise PlanError(f"{path}: {why}")
    unlisted = sorted(p.name for p in path.iterdir() if p.name not in names)
    if unlisted:
        _log.warning("%s: not in the manifest, not sent: %s", path, ", ".join(unlisted))
    parts: list[bytes] = []
    files: list[OfferFile] = []
    for name in names:
        data = (path / name).read_bytes()
        parts.append(data)
        files.append(OfferFile(name, len(data), hashlib.sha256(data).hexdigest()))
    stream = b"".join(parts)
    digests = tuple(hashlib.sha256(stream[i:i + chunk_size]).digest()
                    for i in range(0, len(stream), chunk_size))
    return BundlePlan(path, bundle.version, kid, chunk_size, tuple(files), stream, digests)


# --------------------------------------------------------------------------------------------
# One device's transfer (sans-I/O, module rules 1-5)


@dataclass(frozen=True, slots=True)
class FlashResult:
    """How flashing one device ended: ``outcome`` installed, refused or failed."""

    device: str
    version_before: str | None
    version_after: str | None
    outcome: str
    reason: str
    seconds: float
    bytes_sent: int
    chunks_sent: int

    @property
    def ok(self) -> bool:
        """The device runs the bundle now."""
        return self.outcome == "installed"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the progress line of a device shows."""

    device: str
    state: str
    received_bytes: int
    total_bytes: int
    chunks_sent: int


class DeviceFlash:
    """Flashing one device: progress payloads in, messages to publish out (module rules)."""

    def __init__(
        self, device: str, plan: BundlePlan, transfer_id: str, *, now: float,
        ack_every: int = DEFAULT_ACK_EVERY, window: int | None = None,
        stall_s: float = DEFAULT_STALL_S, max_reoffers: int = DEFAULT_MAX_REOFFERS,
        timeout_s: float = DEFAULT_TIMEOUT_S, version_before: str | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``now``: any monotonic clock in seconds, the one later calls use; ``wall``: Unix
        time, only for the offer's informative ``sent``."""
        self.device = device
        self._wall = wall
        self.plan = plan
        self.transfer_id = transfer_id
        self.ack_every = ack_every
        self.window = window if window is not None else 4 * ack_every
        if self.window < ack_every:
            raise ValueError(f"window {self.window} < ack_every {ack_every}: would never move")
        self.stall_s = stall_s
        self.max_reoffers = max_reoffers
        self.started = now
        self.deadline = now + timeout_s
        self.timeout_s = timeout_s
        self.state = "offering"
        self.version_before = version_before
        self.version_after: str | None = None
        self.reason = ""
        self.finished_at: float | None = None
        self.received = 0
        self.received_bytes = 0
        self.best = -1
        self.chunks_sent = 0
        self.bytes_sent = 0
        self.offers = 0
        self.reoffers_without_progress = 0
        self.heard = False
        self.last_heard = now
        self.last_offer = -math.inf
        self._need_offer = True
        self._queue: deque[int] = deque()
        self._queued: set[int] = set()
        self._inflight: dict[int, int] = {}
        self._sent_seq: dict[int, int] = {}
        self._seq = 0

    @property
    def done(self) -> bool:
        """The outcome is known."""
        return self.state in FINAL

    def _finish(self, state: str, reason: str, now: float) -> None:
        self.state, self.reason, self.finished_at = state, reason, now
        self._queue.clear()
        self._queued.clear()
        self._inflight.clear()
        # INFO, not WARNING: the table reports every outcome; the log is for -v.
        _log.info("%s: %s%s", self.device, state, f" ({reason})" if reason else "")

    def abort(self, reason: str, now: float) -> None:
        """End it from outside (Ctrl-C, lost broker): failed with ``reason``."""
        if not self.done:
            self._finish("failed", reason, now)

    def on_progress(self, data: Any, now: float) -> None:
        """A payload from the device's ``model/progress`` (already JSON-decoded)."""
        if self.done or not isinstance(data, dict) or data.get("transfer") != self.transfer_id:
            return
        state = data.get("state")
        self.heard = True
        self.last_heard = now
        if isinstance(data.get("version_before"), str):
            self.version_before = data["version_before"]
        if state in ("installed", "refused"):
            after = data.get("version_after")
            self.version_after = after if isinstance(after, str) else None
            self._finish(str(state), str(data.get("reason") or ""), now)
            return
        try:
            missing = expand_ranges(data.get("missing", []), self.plan.chunks)
        except ValueError as exc:
            _log.warning("%s: progress ignored: %s", self.device, exc)
            return
        self.received = self.plan.chunks - len(missing)
        self.received_bytes = self.plan.total_bytes - sum(
            self.plan.chunk_length(i) for i in missing)
        if self.received > self.best or state in ("complete", "installing"):
            self.best = max(self.best, self.received)
            self.reoffers_without_progress = 0
        if state in ("complete", "installing"):
            self.state = state
            self._queue.clear()
            self._queued.clear()
            self._inflight.clear()
        elif state in ("receiving", "incomplete"):
            self.state = "sending"
            self._plan_resend(missing, data.get("last"))

    def _plan_resend(self, missing: set[int], last: Any) -> None:
        """Rules 1 and 3: queue what the device lacks and is not still on its way."""
        if not isinstance(last, int) or isinstance(last, bool) or last not in self._sent_seq:
            self._inflight.clear()  # an offer's answer: whatever was in flight is forgotten
        else:
            horizon = self._sent_seq[last]
            self._inflight = {i: s for i, s in self._inflight.items()
                              if i in missing and s > horizon}
        again: list[int] = []
        for i in sorted(missing):
            if i in self._inflight or i in self._queued:
                continue
            self._queued.add(i)
            if i in self._sent_seq:
                again.append(i)  # lost or damaged: ahead of what was never sent
            else:
                self._queue.append(i)
        self._queue.extendleft(reversed(again))

    def poll(self, now: float) -> list[tuple[str, bytes]]:
        """What to publish now: ``(leaf, payload)`` pairs (rules 2, 4, 5)."""
        if self.done:
            return []
        if now >= self.deadline:
            self._finish("failed", f"timed out after {self.timeout_s:g} s "
                         f"({self.received} of {self.plan.chunks} chunks, {self.state})", now)
            return []
        out: list[tuple[str, bytes]] = []
        if (not self._need_offer and self.state in ("offering", "sending")
                and now - max(self.last_heard, self.last_offer) >= self.stall_s):
            if self.reoffers_without_progress >= self.max_reoffers:
                self._finish("failed", self._stall_reason(now), now)
                return []
            self.reoffers_without_progress += 1
            self._need_offer = True
        if self._need_offer:
            self._need_offer = False
            self.offers += 1
            self.last_offer = now
            self._queue.clear()
            self._queued.clear()
            self._inflight.clear()
            out.append((OFFER_LEAF, self.plan.offer(self.transfer_id, self.ack_every)
                        .to_json(sent=self._wall())))
        while self.state == "sending" and self._queue and len(self._inflight) < self.window:
            i = self._queue.popleft()
            self._queued.discard(i)
            self._seq += 1
            self._inflight[i] = self._sent_seq[i] = self._seq
            payload = self.plan.chunk(self.transfer_id, i)
            self.chunks_sent += 1
            self.bytes_sent += self.plan.chunk_length(i)
            out.append((CHUNK_LEAF, payload))
        return out

    def _stall_reason(self, now: float) -> str:
        waited = now - self.started
        if not self.heard:
            return (f"no answer to {self.offers} offers in {waited:.0f} s: is the edge online, "
                    "connected to this broker and recent enough to accept model/offer?")
        return (f"stalled: no progress for {now - self.last_heard:.0f} s after {self.offers} "
                f"offers ({self.received} of {self.plan.chunks} chunks on the device; run "
                "flash again to resume)")

    def snapshot(self) -> Snapshot:
        """For the progress line."""
        return Snapshot(self.device, self.state, self.received_bytes, self.plan.total_bytes,
                        self.chunks_sent)

    def result(self, now: float) -> FlashResult:
        """The outcome (``failed`` with a reason while not done)."""
        end = self.finished_at if self.finished_at is not None else now
        outcome = self.state if self.done else "failed"
        return FlashResult(self.device, self.version_before, self.version_after, outcome,
                           self.reason or ("" if self.done else f"unfinished ({self.state})"),
                           round(end - self.started, 3), self.bytes_sent, self.chunks_sent)


class FlashSession:
    """Every device of one run (sans-I/O): progress payloads in, ``(device, leaf, payload)``
    out, each device with its own transfer id and state machine."""

    def __init__(
        self, plan: BundlePlan, devices: Sequence[str], *, now: float,
        versions: dict[str, str] | None = None, new_id: Callable[[], str] | None = None,
        ack_every: int = DEFAULT_ACK_EVERY, window: int | None = None,
        stall_s: float = DEFAULT_STALL_S, max_reoffers: int = DEFAULT_MAX_REOFFERS,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if not devices:
            raise ValueError("no devices to flash")
        make_id = new_id or (lambda: uuid.uuid4().hex)
        known = versions or {}
        self.plan = plan
        self.devices = {
            d: DeviceFlash(d, plan, make_id(), now=now, ack_every=ack_every, window=window,
                           stall_s=stall_s, max_reoffers=max_reoffers, timeout_s=timeout_s,
                           version_before=known.get(d))
            for d in dict.fromkeys(devices)
        }

    @property
    def done(self) -> bool:
        """Every device has an outcome."""
        return all(d.done for d in self.devices.values())

    def on_progress(self, device: str, payload: bytes, now: float) -> None:
        """A message from ``<prefix>/<device>/model/progress``; anything else is ignored."""
        flash_ = self.devices.get(device)
        if flash_ is None:
            return
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            _log.warning("%s: progress is not JSON, ignored", device)
            return
        flash_.on_progress(data, now)

    def poll(self, now: float) -> list[tuple[str, str, bytes]]:
        """Messages to publish now, device by device: ``(device, leaf, payload)``."""
        return [(d.device, leaf, payload) for d in self.devices.values()
                for leaf, payload in d.poll(now)]

    def abort(self, reason: str, now: float) -> None:
        """Every unfinished device fails with ``reason``."""
        for d in self.devices.values():
            d.abort(reason, now)

    def snapshots(self) -> list[Snapshot]:
        """One per device, in the order given."""
        return [d.snapshot() for d in self.devices.values()]

    def results(self, now: float) -> list[FlashResult]:
        """One per device, in the order given."""
        return [d.result(now) for d in self.devices.values()]


# --------------------------------------------------------------------------------------------
# Terminal output


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover - the loop always returns


class ProgressDisplay:
    """One line per device on ``stream``: redrawn in place on a terminal (at most every
    ``interval_s``), otherwise printed when a device changes state and every ``interval_s``
    for those that moved. Plain text, no dependency."""

    BAR: Final = 24

    def __init__(self, stream: TextIO, *, tty: bool | None = None,
                 interval_s: float | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.interval_s = interval_s if interval_s is not None else (0.1 if self.tty else 5.0)
        self._drawn = 0
        self._last_draw = -math.inf
        self._shown: dict[str, tuple[str, int]] = {}
        self._width = 8

    def line(self, s: Snapshot) -> str:
        """The text of one device's line."""
        done = s.total_bytes if s.state in ("complete", "installing", "installed") \
            else s.received_bytes
        frac = done / s.total_bytes if s.total_bytes else 0.0
        bar = "#" * round(frac * self.BAR)
        return (f"{s.device:<{self._width}} [{bar:<{self.BAR}}] {frac * 100:5.1f}% "
                f"{_human(done):>8} / {_human(s.total_bytes)}  {s.state}")

    def update(self, snaps: Sequence[Snapshot], now: float, *, force: bool = False) -> None:
        """Show ``snaps`` if it is time (or ``force``)."""
        self._width = max([self._width, *(len(s.device) for s in snaps)])
        if self.tty:
            if force or now - self._last_draw >= self.interval_s:
                self._last_draw = now
                up = f"\x1b[{self._drawn}F" if self._drawn else ""
                body = "".join(f"\x1b[2K{self.line(s)}\n" for s in snaps)
                self.stream.write(up + body)
                self.stream.flush()
                self._drawn = len(snaps)
            return
        periodic = force or now - self._last_draw >= self.interval_s
        if periodic:
            self._last_draw = now
        for s in snaps:
            seen = self._shown.get(s.device)
            changed_state = seen is None or seen[0] != s.state
            if changed_state or (periodic and seen is not None and seen[1] != s.received_bytes):
                self._shown[s.device] = (s.state, s.received_bytes)
                self.stream.write(self.line(s) + "\n")
        self.stream.flush()


def format_table(results: Iterable[FlashResult]) -> str:
    """The final table, one row per device (docs/flashing.md)."""
    head = ("device", "before", "after", "outcome", "seconds", "bytes", "reason")
    rows = [head] + [(r.device, r.version_before or "-", r.version_after or "-", r.outcome,
                      f"{r.seconds:.1f}", _human(r.bytes_sent), r.reason) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head) - 1)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)),
                        row[-1]]).rstrip() for row in rows]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# The paho adapter


class BrokerError(ConnectionError):
    """The broker cannot be reached or refused us; the message says which and what to check."""


class _Link:
    """One paho client for the whole run; messages land in a queue the caller drains.

    Callbacks run on paho's thread and only queue; publishing from the caller's thread is
    thread-safe in paho 2.
    """

    def __init__(self, host: str, port: int, security: MqttSecurity | None) -> None:
        self.host, self.port = host, port
        self.inbox: queue.SimpleQueue[tuple[str, bytes, bool]] = queue.SimpleQueue()
        self._connected = threading.Event()
        self._subacks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.refused: str | None = None
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"vigil-flash-{uuid.uuid4().hex[:12]}")
        self.client.max_inflight_messages_set(_PAHO_MAX_INFLIGHT)
        self.client.reconnect_delay_set(1, 5)
        if security is not None:
            secure(self.client, security)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda _c, _u, mid, *_: self._subacks.put(mid)
        self.client.on_message = self._on_message

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.refused = (f"MQTT broker {self.host}:{self.port} refused the connection: "
                            f"{reason} (check --username and --password-file)")
        self._connected.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def __enter__(self) -> _Link:
        where = f"MQTT broker {self.host}:{self.port}"
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except ssl.SSLCertVerificationError as exc:
            raise BrokerError(f"{where}: its TLS certificate is not trusted "
                              f"({exc.verify_message}; give its CA with --tls-ca)") from exc
        except OSError as exc:
            raise BrokerError(f"{where} not reachable: {exc}") from exc
        self.client.loop_start()
        if not self._connected.wait(_CONNECT_TIMEOUT_S):
            self.__exit__(None, None, None)
            raise BrokerError(f"{where} did not answer in {_CONNECT_TIMEOUT_S:g} s")
        if self.refused is not None:
            self.__exit__(None, None, None)
            raise BrokerError(self.refused)
        return self

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None,
                 _tb: TracebackType | None) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def subscribe(self, topic: str) -> None:
        """Subscribe (QoS 1) and wait for the SUBACK."""
        _, mid = self.client.subscribe(topic, qos=_QOS)
        deadline = time.monotonic() + _CONNECT_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                if self._subacks.get(timeout=left) == mid:
                    return
            except queue.Empty:
                break
        raise BrokerError(f"MQTT broker {self.host}:{self.port}: no SUBACK for {topic}")

    def publish(self, topic: str, payload: bytes) -> None:
        """QoS 1, never retained (docs/flashing.md)."""
        self.client.publish(topic, payload, qos=_QOS, retain=False)

    def drain(self, wait_s: float) -> list[tuple[str, bytes, bool]]:
        """Messages received so far, waiting up to ``wait_s`` for the first."""
        try:
            out = [self.inbox.get(timeout=wait_s)]
        except queue.Empty:
            return []
        while True:
            try:
                out.append(self.inbox.get_nowait())
            except queue.Empty:
                return out


def _device_of(topic: str, prefix: str, leaf: str) -> str | None:
    head, tail = f"{prefix}/", f"/{leaf}"
    if not (topic.startswith(head) and topic.endswith(tail)):
        return None
    device = topic[len(head):-len(tail)]
    return device if device and "/" not in device else None


def _read_statuses(link: _Link, prefix: str, wait_s: float) -> dict[str, dict[str, Any]]:
    """Retained ``<prefix>/+/status`` payloads by device, collected for at most ``wait_s``."""
    link.subscribe(f"{prefix}/+/status")
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        batch = link.drain(min(_DISCOVER_QUIET_S, max(0.0, deadline - time.monotonic())))
        if not batch:
            break
        for topic, payload, _retain in batch:
            device = _device_of(topic, prefix, "status")
            try:
                data = json.loads(payload)
            except (ValueError, UnicodeDecodeError):
                continue
            if device is not None and isinstance(data, dict):
                found[device] = data
    return found


def discover_devices(statuses: dict[str, dict[str, Any]]) -> list[str]:
    """Devices whose retained status says online, sorted."""
    return sorted(d for d, s in statuses.items() if s.get("state") == "online")


def _model_version(status: dict[str, Any] | None) -> str | None:
    model = (status or {}).get("model")
    version = model.get("version") if isinstance(model, dict) else None
    return version if isinstance(version, str) else None


def flash(
    plan: BundlePlan, devices: Sequence[str] | None, *, host: str, port: int,
    topic_prefix: str = "vigil", security: MqttSecurity | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S, stall_s: float = DEFAULT_STALL_S,
    max_reoffers: int = DEFAULT_MAX_REOFFERS, ack_every: int = DEFAULT_ACK_EVERY,
    discover_s: float = DEFAULT_DISCOVER_S, display: ProgressDisplay | None = None,
    stop: threading.Event | None = None,
) -> list[FlashResult]:
    """Flash ``plan`` to ``devices`` (None: every device whose retained status is online).

    Returns one result per device; BrokerError when the broker is unreachable or refuses us.
    Bounded: every device ends by ``timeout_s`` at the latest (rule 5); ``stop`` ends it
    earlier (each unfinished device failed, "stopped").
    """
    with _Link(host, port, security) as link:
        statuses = _read_statuses(link, topic_prefix, discover_s)
        targets = list(devices) if devices is not None else discover_devices(statuses)
        if not targets:
            return []
        link.subscribe(f"{topic_prefix}/+/{PROGRESS_LEAF}")
        versions = {d: v for d in targets if (v := _model_version(statuses.get(d)))}
        start = time.monotonic()
        session = FlashSession(plan, targets, now=start, versions=versions, ack_every=ack_every,
                               stall_s=stall_s, max_reoffers=max_reoffers, timeout_s=timeout_s)
        hard_stop = start + timeout_s + 5 * _LOOP_WAIT_S + 1.0
        try:
            while not session.done:
                now = time.monotonic()
                if now > hard_stop:  # cannot happen (rule 5); a bound all the same
                    session.abort("internal: session overran its timeout", now)
                    break
                if stop is not None and stop.is_set():
                    session.abort("stopped", now)
                    break
                for target, leaf, payload in session.poll(now):
                    link.publish(f"{topic_prefix}/{target}/{leaf}", payload)
                for topic, payload, _retain in link.drain(_LOOP_WAIT_S):
                    device = _device_of(topic, topic_prefix, PROGRESS_LEAF)
                    if device is not None:
                        session.on_progress(device, payload, time.monotonic())
                if display is not None:
                    display.update(session.snapshots(), time.monotonic())
        except KeyboardInterrupt:
            session.abort("interrupted (Ctrl-C); run flash again to resume", time.monotonic())
        now = time.monotonic()
        if display is not None:
            display.update(session.snapshots(), now, force=True)
        return session.results(now)


# --------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="vigil-train flash",
        description="Send a signed model bundle to edges over MQTT (docs/flashing.md). Exit 0 "
                    "every device installed it, 1 any refused or failed, 2 bad usage or a "
                    "bundle refused before sending, 3 broker unreachable.")
    ap.add_argument("bundle", help="bundle directory (signed: vigil-train sign)")
    target = ap.add_mutually_exclusive_group(required=True)
    target.add_argument("--device", metavar="ID", action="append",
                        help="device id (device.id of its edge); repeat for several")
    target.add_argument("--all", action="store_true",
                        help="every device whose retained status says online")
    ap.add_argument("--broker", metavar="HOST[:PORT]", required=True, help="MQTT broker")
    ap.add_argument("--topic-prefix", default="vigil", help="mqtt.topic_prefix of the edges")
    ap.add_argument("--timeout", metavar="S", type=float, default=DEFAULT_TIMEOUT_S,
                    help=f"per device, transfer and install (default {DEFAULT_TIMEOUT_S:g})")
    ap.add_argument("--stall", metavar="S", type=float, default=DEFAULT_STALL_S,
                    help="offer again after this long without news from a device "
                         f"(default {DEFAULT_STALL_S:g})")
    ap.add_argument("--max-reoffers", metavar="N", type=int, default=DEFAULT_MAX_REOFFERS,
                    help="offers without progress before a device is failed "
                         f"(default {DEFAULT_MAX_REOFFERS})")
    ap.add_argument("--chunk-size", metavar="BYTES", type=int, default=DEFAULT_CHUNK_SIZE,
                    help=f"default {DEFAULT_CHUNK_SIZE} ({MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE})")
    ap.add_argument("--key", metavar="PUB", default="",
                    help="also check the signature against this public key before sending")
    ap.add_argument("--discover-s", metavar="S", type=float, default=DEFAULT_DISCOVER_S,
                    help="at most this long reading retained statuses "
                         f"(default {DEFAULT_DISCOVER_S:g})")
    add_security_flags(ap)
    return ap


def _usage_problem(args: argparse.Namespace) -> str | None:
    for device in args.device or ():
        if not device or any(c in device for c in "/+#"):
            return f"--device {device!r}: a device id has no '/', '+' or '#'"
    for name, value in (("--timeout", args.timeout), ("--stall", args.stall),
                        ("--discover-s", args.discover_s)):
        if not value > 0:
            return f"{name} {value}: must be positive"
    if args.max_reoffers < 0:
        return f"--max-reoffers {args.max_reoffers}: must be 0 or more"
    return None


def flash_main(
    argv: Sequence[str] | None = None, *, stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """`vigil-train flash ...`; returns the exit code (module docstring)."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad flag (2), already printed by argparse
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        problem = _usage_problem(args)
        if problem is not None:
            raise ValueError(problem)
        host, port = parse_broker(args.broker)
        security = security_from_args(args)
        plan = plan_bundle(args.bundle, chunk_size=args.chunk_size, public_key=args.key)
    except ValueError as exc:  # PlanError is one
        print(f"vigil-train flash: {exc}", file=err)
        return EXIT_USAGE
    print(f"bundle {plan.version}: {len(plan.files)} files, {_human(plan.total_bytes)}, "
          f"{plan.chunks} chunks of {plan.chunk_size / 1024:g} KiB, signed by key {plan.key_id}",
          file=err)
    try:
        results = flash(plan, args.device, host=host, port=port,
                        topic_prefix=args.topic_prefix, security=security,
                        timeout_s=args.timeout, stall_s=args.stall,
                        max_reoffers=args.max_reoffers, discover_s=args.discover_s,
                        display=ProgressDisplay(err))
    except BrokerError as exc:
        print(f"vigil-train flash: {exc}", file=err)
        return EXIT_BROKER
    if not results:
        print(f"vigil-train flash: no device online under {args.topic_prefix}/+/status "
              f"on {host}:{port}", file=err)
        return EXIT_FAILED
    out.write(format_table(results))
    out.flush()
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED
