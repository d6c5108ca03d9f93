"""End-to-end alert latency: a VITALS frame written to the pty -> the alert at a subscriber.

Real parts only: a pseudo-terminal, `vigil-edge run` as its own process, a mosquitto process on
a random loopback port, and a paho subscriber. Onset and clear delays are set to 0 so the figure
is the system's own latency (a ward configuration adds its onset delay on top, by design).
Each round writes one desaturated frame (SpO2 below the high limit), waits for the `new`
alert carrying exactly that value, then writes a normal frame and waits for `end`.

The baseline, measured in the same run against the same broker and subscriber, is a QoS 1
publish from a plain paho client: the MQTT hop that any design pays. The ratio tells how much
the serial link, decoding, detection and alarm logic add, independent of machine speed.

Run: .venv/bin/python benchmarks/e2e_latency.py [--alerts 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from firmware_bridge.codec import SYNC, encode
from firmware_bridge.frames import VitalsFrame
from firmware_bridge.ports import open_raw_pty
from tests.mosquitto import MosquittoBroker, find_mosquitto

WAIT_S = 10.0
NORMAL_SPO2_PCT = 97.0
LOW_SPO2_BASE_PCT = 70.0  # below the default high limit (85 %); varied per round to match


class Subscriber:
    """Records (perf_counter at arrival, parsed JSON) for every message."""

    def __init__(self, broker: MosquittoBroker, topics: list[str]) -> None:
        self.cond = threading.Condition()
        self.seen: list[tuple[float, str, Any]] = []
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id="bench-sub")
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        for t in topics:
            self.client.subscribe(t, qos=1)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        with self.cond:
            self.seen.append((now, msg.topic, json.loads(msg.payload)))
            self.cond.notify_all()

    def wait_for(self, pred: Any, start: int) -> tuple[int, float]:
        """Index and arrival time of the first message from ``start`` on matching ``pred``."""
        def find() -> tuple[int, float] | None:
            for i in range(start, len(self.seen)):
                t, topic, data = self.seen[i]
                if pred(topic, data):
                    return i, t
            return None

        with self.cond:
            self.cond.wait_for(lambda: find() is not None, WAIT_S)
            found = find()
        if found is None:
            raise TimeoutError("expected message did not arrive")
        return found


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def baseline(broker: MosquittoBroker, sub: Subscriber, topic: str, n: int) -> list[float]:
    pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-pub")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    out = []
    try:
        for i in range(n):
            start = len(sub.seen)
            t0 = time.perf_counter()
            pub.publish(topic, json.dumps({"i": i}), qos=1)
            _, t1 = sub.wait_for(lambda tp, d, i=i: tp == topic and d.get("i") == i, start)
            out.append(t1 - t0)
    finally:
        pub.loop_stop()
        pub.disconnect()
    return out


def edge_config(path: Path, broker: MosquittoBroker, serial: Path) -> None:
    path.write_text(
        f"""
[device]
id = "bench"
[mqtt]
host = "{broker.host}"
port = {broker.port}
[[beds]]
id = "bed1"
serial = "{serial}"
[alarms]
onset_s = 0.0
clear_s = 0.0
stale_s = 30.0
link_timeout_s = 600.0
""",
        encoding="utf-8",
    )


def measure_alerts(master: int, sub: Subscriber, n: int) -> list[float]:
    """Write n desaturated frames, each followed by a normal one; latency of each `new`."""
    seq = 0

    def write(spo2: float) -> float:
        nonlocal seq
        frame = VitalsFrame(seq=seq & 0xFFFF, timestamp_ms=seq * 1000, hr_bpm=72.0,
                            spo2_pct=spo2, rr_per_min=14.0)
        data = (SYNC if seq == 0 else b"") + encode(frame)
        seq += 1
        t = time.perf_counter()
        os.write(master, data)
        return t

    for _ in range(3):  # let the reader sync and the first vitals through
        write(NORMAL_SPO2_PCT)
        time.sleep(0.2)
    latencies = []
    for i in range(n):
        spo2 = LOW_SPO2_BASE_PCT + (i % 100) / 10
        start = len(sub.seen)
        t0 = write(spo2)
        _, t1 = sub.wait_for(
            lambda tp, d, s=spo2: tp.endswith("/alert") and d["event"] == "new"
            and d["values"].get("spo2_pct") == s,
            start,
        )
        latencies.append(t1 - t0)
        start = len(sub.seen)
        write(NORMAL_SPO2_PCT)
        sub.wait_for(lambda tp, d: tp.endswith("/alert") and d["event"] == "end", start)
    return latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=int, default=300)
    args = ap.parse_args()
    binary = find_mosquitto()
    if binary is None:
        sys.exit("mosquitto is not installed (apt-get install mosquitto)")
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        work = Path(tmp)
        broker = MosquittoBroker(binary, work)
        broker.start()
        master, slave, path = open_raw_pty()
        link = work / "ttyBENCH"
        link.symlink_to(path)
        cfg = work / "edge.toml"
        edge_config(cfg, broker, link)
        sub = Subscriber(broker, ["vigil/bench/#", "bench/baseline"])
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        edge = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(cfg),
             "--log-level", "WARNING"],
            env=env,
        )
        try:
            sub.wait_for(lambda tp, d: tp.endswith("/status") and d.get("state") == "online", 0)
            latencies = measure_alerts(master, sub, args.alerts)
            base = baseline(broker, sub, "bench/baseline", args.alerts)
        finally:
            edge.terminate()
            edge.wait(10)
            sub.client.loop_stop()
            broker.stop()
            os.close(master)
            os.close(slave)

    def ms(x: float) -> str:
        return f"{x * 1000:7.2f} ms"

    med, p99 = statistics.median(latencies), pct(latencies, 99)
    bmed, bp99 = statistics.median(base), pct(base, 99)
    print(f"alerts measured: {len(latencies)} (frame written to pty -> alert at subscriber)")
    print(f"end to end:       median {ms(med)}   p99 {ms(p99)}   max {ms(max(latencies))}")
    print(f"baseline (paho QoS1 publish -> subscriber, same broker): "
          f"median {ms(bmed)}   p99 {ms(bp99)}")
    print(f"ratio end-to-end/baseline: median {med / bmed:.1f}x   p99 {p99 / bp99:.1f}x")


if __name__ == "__main__":
    main()
