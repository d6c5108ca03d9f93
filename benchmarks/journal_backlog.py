"""Time to deliver the alert backlog of a 10-minute broker outage, through the journal.

Real parts: a mosquitto process on a random loopback port, the edge's `MqttPublisher` with its
`Outbox` journalled to SQLite in a temporary directory (as `[journal] state_dir` makes it), and
a paho subscriber with a persistent session that counts what arrives.

The backlog: ``--beds`` beds, each producing one alert event every ``--every`` seconds for
``--outage`` seconds (default 16 beds x one event per 30 s x 600 s = 320 events: a busy ward,
every bed alarming twice a minute). The events are queued (and journalled) while the broker is
down; the broker then starts and the clock runs until the subscriber holds all of them and the
journal is empty (every PUBACK arrived).

Baseline, same run, same broker and subscriber: the same number of events queued while the
broker is up, i.e. the delivery rate with no outage and no journal backlog to catch up on.

Run: .venv/bin/python benchmarks/journal_backlog.py [--beds 16] [--every 30] [--outage 600]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.config import parse_config
from edge.events import Priority
from edge.journal import Journal
from edge.mqtt import MqttPublisher
from edge.outbox import Outbox
from tests.mosquitto import MosquittoBroker, find_mosquitto

TIMEOUT_S = 120.0


class Counter:
    def __init__(self, broker: MosquittoBroker, topic: str) -> None:
        self.ids: set[str] = set()
        self.cond = threading.Condition()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id="bench-backlog-sub", clean_session=False)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.reconnect_delay_set(1, 1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.ids.add(json.loads(msg.payload)["id"])
            self.cond.notify_all()

    def wait(self, n: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.ids) >= n, TIMEOUT_S), len(self.ids)


def run(publisher: MqttPublisher, outbox: Outbox, counter: Counter, n: int, *, tag: str,
        broker: MosquittoBroker | None) -> float:
    """Queue n events (broker down when ``broker`` is given), then time their delivery."""
    for k in range(n):
        payload = json.dumps({"id": f"{tag}-{k}", "seq": 0, "bed": f"bed{k % 16}"}).encode()
        publisher.queue_alert(Priority.MEDIUM, payload, f"{tag}-{k}")
    t0 = time.perf_counter()
    if broker is not None:
        broker.start()
    deadline = t0 + TIMEOUT_S
    while len(outbox) and time.perf_counter() < deadline:
        publisher.pump()
        time.sleep(0.001)
    counter.wait(n if tag == "base" else 2 * n)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beds", type=int, default=16)
    ap.add_argument("--every", type=float, default=30.0, help="s between events of one bed")
    ap.add_argument("--outage", type=float, default=600.0, help="outage length, s")
    args = ap.parse_args()
    n = round(args.beds * args.outage / args.every)
    binary = find_mosquitto()
    if binary is None:
        raise SystemExit("mosquitto is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "broker").mkdir()
        broker = MosquittoBroker(binary, Path(tmp) / "broker")
        broker.start()
        config = parse_config({
            "device": {"id": "bench"},
            "mqtt": {"port": broker.port, "reconnect_min_s": 1, "reconnect_max_s": 1,
                     "queue_max": max(1000, 2 * n)},
            "beds": [{"id": "bed1", "serial": "/dev/null"}],
        })
        journal = Journal(Path(tmp) / "state", max_age_s=86_400)
        outbox = Outbox(config.mqtt.queue_max, journal=journal)
        publisher = MqttPublisher(config.mqtt, status_topic="bench/bench/status",
                                  alert_topic="bench/bench/alert", outbox=outbox)
        counter = Counter(broker, "bench/bench/alert")
        publisher.start()
        while not publisher.connected:
            time.sleep(0.05)
        base = run(publisher, outbox, counter, n, tag="base", broker=None)
        broker.stop()
        while publisher.connected:
            time.sleep(0.05)
        backlog = run(publisher, outbox, counter, n, tag="outage", broker=broker)
        assert len(journal) == 0, "journal not empty after delivery"
        publisher.stop()
        counter.client.loop_stop()
        broker.kill()
    print(f"backlog of {n} alert events ({args.beds} beds, one per {args.every:g} s each, "
          f"{args.outage:g} s outage)")
    print(f"  delivered {backlog:.2f} s after the broker came back (reconnect included)")
    print(f"  baseline, same events with the broker up: {base:.2f} s")
    print(f"  ratio backlog / baseline: {backlog / base:.1f}x")


if __name__ == "__main__":
    main()
