"""Commands to the edge: parsing (pure), then acknowledge and audio pause end to end through a
real mosquitto, the in-process runtime and the `vigil-edge ack|silence` CLI."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from conftest import MqttCollector
from mosquitto import MosquittoBroker
from paho.mqtt.enums import CallbackAPIVersion
from test_edge_mqtt import FakeReader

from edge.cli import main
from edge.commands import (
    Acknowledge,
    CommandError,
    ManualReading,
    Silence,
    check_fresh,
    parse_command,
)
from edge.config import parse_config
from edge.payloads import iso_utc
from edge.runtime import Runtime
from firmware_bridge.frames import Frame, VitalsFrame


@pytest.mark.parametrize(
    ("name", "payload", "expected"),
    [
        ("ack", b'{"bed": "bed1"}', Acknowledge("bed1")),
        ("ack", b'{"bed": "bed1", "id": "a1", "request_id": "r"}', Acknowledge("bed1", "a1", "r")),
        ("silence", b'{"bed": "b", "seconds": 60}', Silence("b", 60.0)),
        ("reading", b'{"bed": "b", "consciousness": "v", "on_oxygen": false, "sbp_mmhg": 95}',
         ManualReading("b", {"sbp_mmhg": 95.0, "consciousness": "V", "on_oxygen": False})),
        ("reading", b'{"bed": "b", "glucose": 180.16, "glucose_unit": "mg/dL"}',
         ManualReading("b", {"glucose_mmol_l": 10.0})),
        ("ack", b'{"bed": "b", "sent": "2026-11-25T01:00:00.500Z"}',
         Acknowledge("b", sent_s=1795568400.5)),
    ],
)
def test_parse_good_commands(name: str, payload: bytes, expected: object) -> None:
    assert parse_command(name, payload) == expected


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        ("reboot", b"{}", "unknown command 'reboot'"),
        ("ack", b"not json", "not UTF-8 JSON"),
        ("ack", b"[1]", "must be a JSON object"),
        ("ack", b"{}", "bed: expected a string"),
        ("ack", b'{"bed": "b", "alert": "x"}', "unknown field(s) alert"),
        ("silence", b'{"bed": "b"}', "seconds: expected a number"),
        ("silence", b'{"bed": "b", "seconds": -5}', "seconds: expected a number"),
        ("silence", b'{"bed": "b", "seconds": true}', "seconds: expected a number"),
        ("ack", b'{"bed": "' + b"x" * 65 + b'"}', "bed: expected a string of 1-64"),
        ("ack", b" " * 5000, "at most 4096"),
        ("reading", b'{"bed": "b"}', "no reading given"),
        ("reading", b'{"bed": "b", "spo2_pct": 101}', "spo2_pct: 101 % is outside the plausible"),
        ("reading", b'{"bed": "b", "temp_c": 101.3}', "a temperature in °F"),
        ("reading", b'{"bed": "b", "sbp_mmhg": "120"}', "sbp_mmhg: expected a number"),
        ("reading", b'{"bed": "b", "sbp_mmhg": 90, "dbp_mmhg": 95}', "must be below sbp_mmhg"),
        ("reading", b'{"bed": "b", "consciousness": "drowsy"}', "one of A, C, V, P, U"),
        ("reading", b'{"bed": "b", "on_oxygen": "yes"}', "on_oxygen: expected true or false"),
        ("reading", b'{"bed": "b", "glucose": 12, "glucose_unit": "mg/L"}', "glucose_unit"),
        ("reading", b'{"bed": "b", "glucose": 180}', "a value in mg/dL"),
        ("ack", b'{"bed": "b", "sent": "yesterday"}', "sent: expected a UTC time"),
        ("ack", b'{"bed": "b", "sent": "2026-13-45T01:00:00Z"}', "is not a valid date"),
    ],
)
def test_bad_commands_name_the_problem(name: str, payload: bytes, message: str) -> None:
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_command(name, payload)


@contextlib.contextmanager
def _edge(
    mosquitto: MosquittoBroker, device_id: str, **sections: Any
) -> Iterator[tuple[Runtime, FakeReader]]:
    """The runtime in process on one fake bed, against the real broker, until the block ends.

    ``sections``: more configuration tables (e.g. ``homeassistant={"enabled": True}``).
    """
    config = parse_config({
        "device": {"id": device_id},
        "mqtt": {"port": mosquitto.port, "status_interval_s": 1.0},
        "beds": [{"id": "bed1", "serial": "/dev/fake0"}],
        "alarms": {"onset_s": 0.0, "max_silence_s": 60.0},
        **sections,
    })
    readers: list[FakeReader] = []

    def factory(port: str, on_frame: Callable[[Frame], None], **kw: object) -> FakeReader:
        readers.append(FakeReader(port, on_frame, **kw))
        return readers[-1]

    runtime = Runtime(config, reader_factory=factory)
    stop = threading.Event()
    thread = threading.Thread(target=runtime.run, args=(stop,))
    thread.start()
    try:
        yield runtime, readers[0]
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


@pytest.fixture
def running(mosquitto: MosquittoBroker, device_id: str) -> Iterator[tuple[Runtime, FakeReader]]:
    with _edge(mosquitto, device_id) as edge:
        yield edge


def _cli(mosquitto: MosquittoBroker, device_id: str, *args: str) -> int:
    return main([args[0], "--broker", f"127.0.0.1:{mosquitto.port}", "--device", device_id,
                 *args[1:], "--timeout", "5"])


def test_acknowledge_and_silence_through_mqtt_and_the_cli(
    mosquitto: MosquittoBroker, device_id: str, running: tuple[Runtime, FakeReader],
    mqtt_collector: Callable[..., MqttCollector], capsys: pytest.CaptureFixture[str],
) -> None:
    _, reader = running
    sub = mqtt_collector(mosquitto, [f"vigil/{device_id}/#"])
    sub.wait_for(lambda m: m.topic.endswith("/status"))
    stop_feed = threading.Event()

    def feed() -> None:  # a tachycardia that lasts: one frame every 0.2 s
        while not stop_feed.wait(0.2):
            reader.on_frame(VitalsFrame(hr_bpm=190.0, spo2_pct=97.0))

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        new = sub.wait_for(lambda m: m.topic.endswith("/alert") and m.data["event"] == "new").data
        assert _cli(mosquitto, device_id, "silence", "--bed", "bed1", "--seconds", "30") == 0
        assert "OK silence" in capsys.readouterr().out
        paused = sub.wait_for(lambda m: m.topic.endswith("/alert")
                              and m.data["reason"] == "audio paused").data
        assert paused["id"] == new["id"]
        assert paused["silenced_until"] is not None
        assert _cli(mosquitto, device_id, "ack", "--bed", "bed1", "--id", new["id"]) == 0
        acked = sub.wait_for(lambda m: m.topic.endswith("/alert")
                             and m.data["reason"] == "acknowledged").data
        assert (acked["id"], acked["acknowledged"], acked["event"]) == (new["id"], True, "update")
        state = sub.wait_for(lambda m: m.topic.endswith("/state/bed1") and any(
            a["id"] == new["id"] and a["acknowledged"] for a in m.data["alerts"])).data
        assert state["highest"] == "high"
        assert state["vitals"]["hr_bpm"] == 190.0
        late = mqtt_collector(mosquitto, [f"vigil/{device_id}/state/+"])  # joins afterwards
        kept = late.wait_for(lambda m: m.topic.endswith("/state/bed1"))
        assert kept.retain
        assert new["id"] in [a["id"] for a in kept.data["alerts"]]
        # Refusals name the problem and exit 1; nothing is published for them.
        assert _cli(mosquitto, device_id, "ack", "--bed", "bed1", "--id", new["id"]) == 1
        assert "is not an announced, unacknowledged alert" in capsys.readouterr().err
        assert _cli(mosquitto, device_id, "ack", "--bed", "bed9") == 1
        assert "no bed 'bed9'" in capsys.readouterr().err
        assert _cli(mosquitto, device_id, "silence", "--bed", "bed1", "--seconds", "600") == 1
        assert "at most 60 s" in capsys.readouterr().err
        def results() -> list[bool]:
            return [m.data["ok"] for m in sub.snapshot() if m.topic.endswith("/cmd/result")]

        for _ in range(100):  # the CLI got its answer; the collector may still be receiving
            if len(results()) >= 5:
                break
            threading.Event().wait(0.05)
        assert results() == [True, True, False, False, False]
        assert all(not m.retain for m in sub.snapshot() if "/cmd/" in m.topic)
    finally:
        stop_feed.set()
        feeder.join(5)


def test_a_retained_command_is_ignored_and_counted(
    mosquitto: MosquittoBroker, device_id: str, mqtt_collector: Callable[..., MqttCollector],
) -> None:
    """A retained "silence" left on the broker reaches the edge when it (re)connects: dropped."""
    pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    topic = f"vigil/{device_id}/cmd/silence"
    try:
        pub.publish(topic, json.dumps({"bed": "bed1", "seconds": 30}), qos=1,
                    retain=True).wait_for_publish(5)
        sub = mqtt_collector(mosquitto, [f"vigil/{device_id}/#"])
        with _edge(mosquitto, device_id) as (runtime, _):
            sub.wait_for(lambda m: m.topic.endswith("/status"))
            for _ in range(50):
                if runtime.publisher.commands_retained_ignored:
                    break
                threading.Event().wait(0.1)
            assert runtime.publisher.commands_retained_ignored == 1
            threading.Event().wait(0.5)
            assert not [m for m in sub.snapshot() if m.topic.endswith("/cmd/result")]
    finally:
        pub.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)  # clear it
        pub.disconnect()
        pub.loop_stop()


def test_cli_without_an_answer_exits_3(
    mosquitto: MosquittoBroker, capsys: pytest.CaptureFixture[str]
) -> None:
    # The timeout bounds the SUBACK too (another message): 2 s, so that on a loaded machine
    # it is the edge's silence that runs out, not the broker's answer.
    code = main(["ack", "--broker", f"127.0.0.1:{mosquitto.port}", "--device", "nobody-here",
                 "--bed", "bed1", "--timeout", "2"])
    assert code == 3
    assert "did not answer ack" in capsys.readouterr().err


def test_manual_reading_through_the_cli_rescores_news2_at_once(
    mosquitto: MosquittoBroker, device_id: str, running: tuple[Runtime, FakeReader],
    mqtt_collector: Callable[..., MqttCollector], capsys: pytest.CaptureFixture[str],
) -> None:
    _, reader = running
    sub = mqtt_collector(mosquitto, [f"vigil/{device_id}/#"])
    sub.wait_for(lambda m: m.topic.endswith("/status"))
    reader.on_frame(VitalsFrame(hr_bpm=72.0, spo2_pct=97.0, rr_per_min=16.0, sbp_mmhg=125.0,
                                temp_c=36.8))
    first = sub.wait_for(lambda m: m.topic.endswith("/news2/bed1")).data
    assert (first["total"], first["complete"]) == (0, False)
    assert set(first["missing"]) == {"consciousness", "on_oxygen"}
    assert _cli(mosquitto, device_id, "reading", "--bed", "bed1", "--consciousness", "C",
                "--oxygen", "yes", "--glucose", "7.5", "--age", "67") == 0
    assert "OK reading" in capsys.readouterr().out
    scored = sub.wait_for(lambda m: m.topic.endswith("/news2/bed1")
                          and m.data["total"] == 5).data
    assert scored["complete"] is True
    assert scored["response"] == "medium"
    assert scored["sources"]["consciousness"] == "manual"
    assert scored["sources"]["hr_bpm"] == "monitor"
    late = mqtt_collector(mosquitto, [f"vigil/{device_id}/news2/+"])  # a dashboard starting now
    kept = late.wait_for(lambda m: m.topic.endswith("/news2/bed1"))
    assert (kept.retain, kept.data["total"]) == (True, 5)
    alert = sub.wait_for(lambda m: m.topic.endswith("/alert") and m.data["kind"] == "news2").data
    assert alert["priority"] == "medium"
    assert alert["values"]["news2.total"] == 5.0
    assert alert["explanation"] == (
        "NEWS2 total 5: consciousness not alert (C, scores 3), supplemental oxygen (scores 2). "
        "Patient aged 60-69 years.")
    assert _cli(mosquitto, device_id, "reading", "--bed", "bed1", "--age", "130") == 2
    assert "age_years: 130 years is outside the plausible range" in capsys.readouterr().err
    assert _cli(mosquitto, device_id, "reading", "--bed", "bed1", "--spo2", "120") == 2
    assert "spo2_pct: 120 % is outside the plausible range" in capsys.readouterr().err


def test_status_cli_shows_health_from_the_retained_status(
    mosquitto: MosquittoBroker, device_id: str, running: tuple[Runtime, FakeReader],
    mqtt_collector: Callable[..., MqttCollector], capsys: pytest.CaptureFixture[str],
) -> None:
    _, reader = running
    sub = mqtt_collector(mosquitto, [f"vigil/{device_id}/status"])
    for _ in range(15):
        reader.on_frame(VitalsFrame(hr_bpm=72.0, spo2_pct=97.0))
        threading.Event().wait(0.1)
    sub.wait_for(lambda m: (m.data.get("health") or {}).get("frames_per_s", {}).get("bed1"))
    assert _cli(mosquitto, device_id, "status") == 0
    out = capsys.readouterr().out
    assert f"{device_id}: online" in out
    assert "bed bed1: /dev/fake0 connected" in out
    assert "scoring pass: median" in out
    assert main(["status", "--broker", f"127.0.0.1:{mosquitto.port}", "--device", device_id,
                 "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["health"]["evaluate_p99_ms"] >= status["health"]["evaluate_median_ms"] > 0
    assert main(["status", "--broker", f"127.0.0.1:{mosquitto.port}", "--device", "nobody",
                 "--timeout", "0.5"]) == 3


@pytest.mark.parametrize(
    ("sent_ago_s", "message"),
    [(3600.0, "sent: 3600 s ago, older than mqtt.command_max_age_s (60 s)"),
     (-600.0, "sent: 600 s in the future")],
)
def test_a_command_held_too_long_or_from_a_wrong_clock_is_refused(
    sent_ago_s: float, message: str,
) -> None:
    cmd = Silence("b", 60.0, sent_s=1.7e9 - sent_ago_s)
    with pytest.raises(CommandError, match=re.escape(message)):
        check_fresh(cmd, 1.7e9, 60.0)
    check_fresh(Silence("b", 60.0, sent_s=1.7e9 - 59.0), 1.7e9, 60.0)
    check_fresh(Silence("b", 60.0), 1.7e9, 60.0)  # no "sent": accepted


def test_a_stale_silence_delivered_late_is_not_applied(
    mosquitto: MosquittoBroker, device_id: str, running: tuple[Runtime, FakeReader],
    mqtt_collector: Callable[..., MqttCollector],
) -> None:
    """What a persistent session does: a command published while the edge was away arrives
    when it is back. With its send time it is refused, and the answer says why."""
    _, reader = running
    sub = mqtt_collector(mosquitto, [f"vigil/{device_id}/#"])
    sub.wait_for(lambda m: m.topic.endswith("/status"))
    reader.on_frame(VitalsFrame(hr_bpm=190.0, spo2_pct=97.0))
    sub.wait_for(lambda m: m.topic.endswith("/alert") and m.data["event"] == "new")
    pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    try:
        stale = iso_utc(time.time() - 7200)
        pub.publish(f"vigil/{device_id}/cmd/silence", json.dumps(
            {"bed": "bed1", "seconds": 60, "request_id": "late", "sent": stale}), qos=1
        ).wait_for_publish(5)
        result = sub.wait_for(lambda m: m.topic.endswith("/cmd/result")
                              and m.data["request_id"] == "late").data
    finally:
        pub.disconnect()
        pub.loop_stop()
    assert result["ok"] is False
    assert "older than mqtt.command_max_age_s" in result["detail"]
    assert not [m for m in sub.snapshot() if m.topic.endswith("/alert")
                and m.data["reason"] == "audio paused"]
