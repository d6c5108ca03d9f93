"""Time to flash the default bundle (1.7 MB, signed copy) to 1 and to 20 devices on one broker.

Real parts: a mosquitto process on a random loopback port, `training.flash.flash` (the paho
adapter and sender state machine `vigil-train flash` runs) and, per device, a paho client
feeding the real `edge.transfer.TransferReceiver` (tests/_flash_device.py): every chunk hashed
and written to disk, the files reassembled and checked against the offer and the manifest, and a
stub install that verifies the Ed25519 signature and reads the version (the model store's
TFLite self-test is not timed: it is the same whichever way the bytes arrive). All the devices
run in this one process, so 20 of them share its GIL with the sender: an upper bound.

Figure: from the first offer to the last device's ``installed`` (the session's own clock, the
discovery of retained statuses excluded), median of ``--repeats`` runs, each with fresh
devices and empty incoming directories (nothing to resume).

Baseline, same run, same broker: the same bytes as ONE QoS 1 message per device to a plain
subscriber that writes them to a file and hashes them: what the transfer costs without chunks,
acknowledgements, resume state or checks. The ratio is the protocol's price, independent of the
machine's speed.

Three set-ups, because small messages (PUBACKs, progress reports) obey Nagle's algorithm by
default and can wait for the peer's delayed ACK (40 ms on Linux) whenever no bulk data flows to
carry it: mosquitto's defaults with paho's default sockets (what a ward runs today); the broker
with ``set_tcp_nodelay true``; and that plus TCP_NODELAY on each device's own socket.

Run: .venv/bin/python benchmarks/flash_time.py [--repeats 3] [--devices 1 20]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from tests._bundles import trusted, variant  # noqa: E402
from tests._flash_device import FlashDevice, stub_install  # noqa: E402
from tests.mosquitto import MosquittoBroker, find_mosquitto  # noqa: E402
from training.flash import BundlePlan, flash, plan_bundle  # noqa: E402

WAIT_S = 120.0


def time_flash(broker: MosquittoBroker, plan: BundlePlan, work: Path, n: int,
               key: Ed25519PrivateKey, *, nodelay: bool = False) -> float:
    """Seconds from the first offer to the last ``installed`` for ``n`` fresh devices."""
    tag = uuid.uuid4().hex[:6]
    devices = [FlashDevice(broker.host, broker.port, f"bench-{tag}-{i}",
                           work / f"{tag}-{i}", stub_install([trusted(key)]), version="v-old",
                           nodelay=nodelay)
               for i in range(n)]
    try:
        results = flash(plan, [d.device for d in devices], host=broker.host, port=broker.port,
                        timeout_s=WAIT_S, discover_s=0.5)
    finally:
        for d in devices:
            d.close()
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"flash failed: {failed}")
    if any(r.chunks_sent != plan.chunks for r in results):
        raise RuntimeError("a chunk was sent twice on a clean loopback link")
    return max(r.seconds for r in results)


class BlobSink:
    """Plain subscriber: one message, written to a file and hashed, like the device's work."""

    def __init__(self, broker: MosquittoBroker, topic: str, path: Path) -> None:
        self.path = path
        self.done = threading.Event()
        self.digest = ""
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=f"sink-{uuid.uuid4().hex[:8]}")
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("sink did not subscribe")

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        data = bytes(msg.payload)
        self.path.write_bytes(data)
        self.digest = hashlib.sha256(self.path.read_bytes()).hexdigest()
        self.done.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def time_baseline(broker: MosquittoBroker, blob: bytes, work: Path, n: int) -> float:
    """Seconds to deliver ``blob`` as one QoS 1 message to each of ``n`` subscribers."""
    tag = uuid.uuid4().hex[:6]
    sinks = [BlobSink(broker, f"bench/{tag}/{i}/blob", work / f"blob-{tag}-{i}")
             for i in range(n)]
    pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                      client_id=f"pub-{tag}")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    try:
        t0 = time.perf_counter()
        for i in range(n):
            pub.publish(f"bench/{tag}/{i}/blob", blob, qos=1)
        for s in sinks:
            if not s.done.wait(WAIT_S):
                raise RuntimeError("baseline message not delivered")
        elapsed = time.perf_counter() - t0
    finally:
        pub.disconnect()
        pub.loop_stop()
        for s in sinks:
            s.close()
    want = hashlib.sha256(blob).hexdigest()
    if any(s.digest != want for s in sinks):
        raise RuntimeError("baseline delivered other bytes")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--devices", type=int, nargs="+", default=[1, 20])
    args = ap.parse_args()
    binary = find_mosquitto()
    if binary is None:
        print("mosquitto is not installed (apt-get install mosquitto)", file=sys.stderr)
        return 2
    key = Ed25519PrivateKey.generate()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plan = plan_bundle(variant(work / "bundle", "bench-new", key=key))
        print(f"bundle: {plan.total_bytes / 1e6:.2f} MB in {len(plan.files)} files, "
              f"{plan.chunks} chunks of {plan.chunk_size // 1024} KiB; "
              f"median of {args.repeats} runs")
        print(f"{'sockets':<22}  {'devices':>7}  {'flash (s)':>10}  {'baseline (s)':>12}  "
              f"{'ratio':>6}  {'flash MB/s':>10}")
        nagle = ["set_tcp_nodelay true"]
        for label, options, nodelay in (("defaults", [], False),
                                        ("broker nodelay", nagle, False),
                                        ("broker+device nodelay", nagle, True)):
            home = work / f"broker-{label.replace(' ', '-')}"
            home.mkdir()
            broker = MosquittoBroker(binary, home, options=options)
            broker.start()
            try:
                for n in args.devices:
                    flashes = [time_flash(broker, plan, work, n, key, nodelay=nodelay)
                               for _ in range(args.repeats)]
                    bases = [time_baseline(broker, plan.stream, work, n)
                             for _ in range(args.repeats)]
                    f, b = statistics.median(flashes), statistics.median(bases)
                    rate = n * plan.total_bytes / 1e6 / f
                    print(f"{label:<22}  {n:>7}  {f:>10.3f}  {b:>12.3f}  {f / b:>5.1f}x  "
                          f"{rate:>10.1f}")
            finally:
                broker.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
