"""End to end with real parts: frames on a real pty -> `vigil-edge run` subprocess -> mosquitto.

Frames are written with `firmware_bridge.codec.encode` by a feeder thread at 10 Hz, so the
test decides exactly what the board says. Every wait is bounded and driven by what arrives
(MQTT messages, log lines), never by how long something took.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _data import shared_data_dir

from firmware_bridge.codec import SYNC, encode
from firmware_bridge.frames import HelloFrame, Sensor, StatusFlag, StatusFrame, VitalsFrame
from firmware_bridge.ports import open_raw_pty
from tests.conftest import MosquittoBroker, MqttCollector, Received

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
NORMAL: dict[str, float | None] = {
    "hr_bpm": 78.0,
    "spo2_pct": 97.0,
    "rr_per_min": 14.0,
    "sbp_mmhg": 120.0,
    "dbp_mmhg": 80.0,
    "map_mmhg": 93.0,
    "temp_c": 36.8,
}


class Feeder:
    """Plays a board on the master side of a pty: HELLO, then vitals at 10 Hz, STATUS each 1 s."""

    PERIOD_S = 0.1

    def __init__(self) -> None:
        self.master, self.slave, self.path = open_raw_pty()
        os.set_blocking(self.master, False)
        self.values = dict(NORMAL)
        self.flags = StatusFlag(0)
        self._seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def set(self, **values: float | None) -> None:
        self.values = {**NORMAL, **values}

    def _write(self, data: bytes) -> None:
        # Nobody reading yet: a board's UART just keeps talking and the bytes are lost.
        with contextlib.suppress(BlockingIOError):
            os.write(self.master, data)

    def _frame(self, make: Callable[..., Any], **kw: Any) -> None:
        ts = int(time.monotonic() * 1000) & 0xFFFFFFFF
        self._write(encode(make(seq=self._seq, timestamp_ms=ts, **kw)))
        self._seq = (self._seq + 1) & 0xFFFF

    def _run(self) -> None:
        self._write(SYNC)
        self._frame(HelloFrame, sensors=Sensor.ECG | Sensor.SPO2, vitals_period_ms=100)
        tick = 0
        while not self._stop.wait(self.PERIOD_S):
            self._frame(VitalsFrame, **self.values)
            if tick % 10 == 0:
                self._frame(StatusFrame, flags=self.flags)
            tick += 1

    def start(self) -> Feeder:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        os.close(self.master)
        os.close(self.slave)


class EdgeProcess:
    """`python -m edge.cli run` with its stderr collected line by line."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_log(self, predicate: Callable[[str], bool], timeout_s: float = 15.0) -> str:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for line in self.lines:
                    if predicate(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    tail = "\n".join(self.lines[-20:])
                    raise AssertionError(f"log line not seen (rc={self.proc.poll()}):\n{tail}")
                self._cond.wait(min(left, 0.2))

    def log(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        return self.proc.returncode


def _write_config(  # noqa: PLR0917 - a test helper
    path: Path, broker: MosquittoBroker, device: str, serial: str, state_dir: str = "",
    extra: str = "", **alarms: float,
) -> Path:
    timing = {
        "onset_s": 0.5,
        "technical_onset_s": 0.3,
        "clear_s": 0.5,
        "stale_s": 1.0,
        "link_timeout_s": 30.0,
    }
    timing.update(alarms)
    path.write_text(
        f"""
[device]
id = "{device}"

[mqtt]
host = "{broker.host}"
port = {broker.port}
keepalive_s = 2
reconnect_min_s = 1
reconnect_max_s = 1
vitals_interval_s = 0.2
status_interval_s = 1.0

[[beds]]
id = "bed1"
serial = "{serial}"

[journal]
state_dir = "{state_dir}"

[alarms]
"""
        + "\n".join(f"{k} = {v}" for k, v in timing.items())
        + "\n"
        + extra
    )
    return path


@dataclass
class Rig:
    """Broker, a private device id, and factories for edge processes and subscribers."""

    tmp_path: Path
    broker: MosquittoBroker
    device: str
    _collector: Callable[..., MqttCollector]
    edges: list[EdgeProcess] = field(default_factory=list)

    def config(self, serial: str, state_dir: str = "", extra: str = "",
               **alarms: float) -> Path:
        path = self.tmp_path / "edge.toml"
        return _write_config(path, self.broker, self.device, serial, state_dir, extra, **alarms)

    def edge(self, serial: str, state_dir: str = "", extra: str = "",
             **alarms: float) -> EdgeProcess:
        proc = EdgeProcess(self.config(serial, state_dir, extra, **alarms))
        self.edges.append(proc)
        return proc

    def subscribe(self, leaf: str = "#", client_id: str | None = None) -> MqttCollector:
        return self._collector(self.broker, [f"vigil/{self.device}/{leaf}"], client_id=client_id)


@pytest.fixture
def rig(
    tmp_path: Path,
    mosquitto: MosquittoBroker,
    device_id: str,
    mqtt_collector: Callable[..., MqttCollector],
) -> Iterator[Rig]:
    r = Rig(tmp_path, mosquitto, device_id, mqtt_collector)
    yield r
    for p in r.edges:
        p.stop()


@pytest.fixture
def feeder() -> Iterator[Feeder]:
    f = Feeder()
    yield f
    f.close()


def _is_alert(kind: str, event: str) -> Callable[[Received], bool]:
    def match(m: Received) -> bool:
        return (
            m.topic.endswith("/alert")
            and isinstance(m.data, dict)
            and m.data.get("kind") == kind
            and m.data.get("event") == event
        )

    return match


def _is_connected_status(m: Received) -> bool:
    if not m.topic.endswith("/status") or not isinstance(m.data, dict):
        return False
    bed = m.data.get("beds", {}).get("bed1", {})
    return m.data.get("state") == "online" and bed.get("connected") is True


def test_desaturation_alert_end_to_end_and_last_will_on_sigkill(
    rig: Rig, feeder: Feeder
) -> None:
    sub = rig.subscribe()
    edge = rig.edge(feeder.path)
    sub.wait_for(_is_connected_status, timeout_s=20)
    feeder.start()
    vitals = sub.wait_for(
        lambda m: m.topic.endswith("/vitals") and m.data["values"]["spo2_pct"] == 97.0
    )
    assert vitals.data["bed"] == "bed1"
    assert vitals.data["values"]["hr_bpm"] == 78.0
    assert vitals.data["time"].endswith("Z")

    feeder.set(spo2_pct=88.0)
    new = sub.wait_for(_is_alert("spo2_low", "new")).data
    assert new["priority"] == "medium"
    assert new["values"] == {"spo2_pct": 88.0}
    assert new["thresholds"] == {"spo2_low_pct.high": 85.0, "spo2_low_pct.medium": 90.0}
    assert new["model"] == "fixed-limits/1"
    assert (new["bed"], new["device"], new["seq"], new["technical"]) == (
        "bed1", rig.device, 0, False,
    )

    feeder.set(spo2_pct=82.0)
    update = sub.wait_for(_is_alert("spo2_low", "update")).data
    assert (update["id"], update["priority"], update["values"]) == (
        new["id"], "high", {"spo2_pct": 82.0},
    )
    feeder.set()
    end = sub.wait_for(_is_alert("spo2_low", "end")).data
    assert (end["id"], end["seq"], end["priority"]) == (new["id"], 2, "high")
    # Exactly one new/update/end for this episode despite 10 frames per second.
    assert [a["event"] for a in sub.alerts()] == ["new", "update", "end"]

    edge.proc.send_signal(signal.SIGKILL)
    edge.proc.wait(10)
    sub.wait_for(lambda m: m.topic.endswith("/status") and m.data == {"state": "offline"})
    late = rig.subscribe("status")
    retained = late.wait_for(lambda m: True)
    assert retained.retain
    assert retained.data == {"state": "offline"}


def test_broker_outage_loses_no_alert(rig: Rig, feeder: Feeder) -> None:
    sub = rig.subscribe("alert", client_id=f"nurse-{rig.device}")
    edge = rig.edge(feeder.path)
    feeder.start()
    feeder.set(hr_bpm=130.0)
    sub.wait_for(_is_alert("hr_high", "new"), timeout_s=20)

    rig.broker.stop()
    edge.wait_log(lambda line: "disconnected from MQTT broker" in line)
    # The edge keeps reading and scoring while the broker is away.
    feeder.set()
    edge.wait_log(lambda line: "alert end hr_high" in line)
    feeder.set(spo2_pct=88.0)
    edge.wait_log(lambda line: "alert new spo2_low" in line)
    feeder.set(spo2_pct=82.0)
    edge.wait_log(lambda line: "alert update spo2_low" in line)
    feeder.set()
    edge.wait_log(lambda line: "alert end spo2_low" in line)
    rig.broker.start()

    sub.wait_for(_is_alert("spo2_low", "end"), timeout_s=30)
    got = [(a["kind"], a["event"], a["priority"]) for a in sub.alerts()]
    assert got == [
        ("hr_high", "new", "medium"),
        ("hr_high", "end", "medium"),
        ("spo2_low", "new", "medium"),
        ("spo2_low", "update", "high"),
        ("spo2_low", "end", "high"),
    ]
    # Same order and identities as the edge decided them.
    logged = [
        line.split("alert ", 1)[1].split(" priority=")[0]
        for line in edge.log().splitlines()
        if " edge.runtime: alert " in line
    ]
    published = [
        f"{a['event']} {a['kind']} bed={a['bed']} id={a['id']} seq={a['seq']}"
        for a in sub.alerts()
    ]
    assert published == logged
    assert edge.stop() == 0


def _logged(edge: EdgeProcess) -> list[str]:
    return [
        line.split("alert ", 1)[1].split(" priority=")[0]
        for line in edge.log().splitlines()
        if " edge.runtime: alert " in line
    ]


def test_kill_9_during_a_broker_outage_loses_no_alert(rig: Rig, feeder: Feeder) -> None:
    """Alerts queued while the broker is down survive `kill -9` of the edge in the journal and
    arrive after the restart, in order, each exactly once after de-duplication."""
    state = str(rig.tmp_path / "state")
    sub = rig.subscribe("alert", client_id=f"nurse-{rig.device}")
    first = rig.edge(feeder.path, state_dir=state)
    feeder.start()
    feeder.set(hr_bpm=130.0)
    sub.wait_for(_is_alert("hr_high", "new"), timeout_s=20)
    rig.broker.stop()
    first.wait_log(lambda line: "disconnected from MQTT broker" in line)
    feeder.set()
    first.wait_log(lambda line: "alert end hr_high" in line)
    feeder.set(spo2_pct=88.0)
    first.wait_log(lambda line: "alert new spo2_low" in line)
    feeder.set(spo2_pct=82.0)
    first.wait_log(lambda line: "alert update spo2_low" in line)
    feeder.set()
    first.wait_log(lambda line: "alert end spo2_low" in line)
    first.proc.kill()  # SIGKILL: no shutdown, no flush
    first.proc.wait(10)
    rig.broker.start()
    second = rig.edge(feeder.path, state_dir=state)
    second.wait_log(lambda line: "from before the restart queued first" in line)
    sub.wait_for(_is_alert("spo2_low", "end"), timeout_s=30)
    time.sleep(1.0)  # anything re-sent twice would have arrived by now
    published = [
        f"{a['event']} {a['kind']} bed={a['bed']} id={a['id']} seq={a['seq']}"
        for a in sub.alerts()
    ]
    assert published == _logged(first) + _logged(second)
    kinds = [(a["kind"], a["event"]) for a in sub.alerts() if a["kind"] != "news2"]
    assert kinds == [("hr_high", "new"), ("hr_high", "end"), ("spo2_low", "new"),
                     ("spo2_low", "update"), ("spo2_low", "end")]
    assert second.stop() == 0


def test_missing_serial_port_is_retried_until_it_appears(rig: Rig) -> None:
    port = rig.tmp_path / "ttyVIGIL0"
    sub = rig.subscribe()
    edge = rig.edge(str(port), link_timeout_s=1.0)
    error = edge.wait_log(lambda line: " ERROR " in line and str(port) in line)
    assert "not available" in error
    # No board: a technical alert, and the runtime carries on.
    lost = sub.wait_for(_is_alert("link_lost", "new"), timeout_s=20).data
    assert (lost["priority"], lost["technical"]) == ("high", True)
    assert edge.proc.poll() is None

    feeder = Feeder()
    try:
        port.symlink_to(feeder.path)
        feeder.start()
        vitals = sub.wait_for(lambda m: m.topic.endswith("/vitals"), timeout_s=20)
        assert vitals.data["values"]["spo2_pct"] == 97.0
        sub.wait_for(_is_alert("link_lost", "end"))
    finally:
        feeder.close()
    assert edge.stop() == 0
    assert "Traceback" not in edge.log()


def test_simulator_demo_scenario_raises_desaturation_and_tachycardia(rig: Rig) -> None:
    """The shipped demo scenario through `vigil-sim` on a pty: the real board stand-in."""
    link = rig.tmp_path / "board"
    sub = rig.subscribe("alert")
    sim = subprocess.Popen(
        [
            sys.executable, "-m", "firmware_bridge.sim.cli", "--scenario", "demo",
            "--speed", "30", "--seed", "1", "--link", str(link), "--duration", "400", "-q",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.stdout is not None
        first = sim.stdout.readline()
        assert first.startswith("PTY /dev/"), first + (sim.stderr.read() if sim.stderr else "")
        rig.edge(str(link))
        desat = sub.wait_for(_is_alert("spo2_low", "new"), timeout_s=30).data
        assert desat["priority"] in ("medium", "high")
        assert desat["values"]["spo2_pct"] < 90.0
        sub.wait_for(
            lambda m: m.data.get("kind") == "spo2_low" and m.data.get("priority") == "high",
            timeout_s=30,
        )
        tachy = sub.wait_for(_is_alert("hr_high", "new"), timeout_s=30).data
        assert tachy["values"]["hr_bpm"] > 120.0
    finally:
        sim.terminate()
        sim.wait(10)


def test_sighup_reloads_the_limits_without_losing_a_frame(rig: Rig, feeder: Feeder) -> None:
    """`systemctl reload` = SIGHUP to the real process: the edited limit applies, the process
    lives on, and the decoder saw no gap in the board's sequence numbers across the reload."""
    sub = rig.subscribe()
    config = rig.config(feeder.path)
    base = config.read_text()
    config.write_text(base + "\n[limits]\nhr_high_bpm = { medium = 140.0 }\n")
    edge = EdgeProcess(config)
    rig.edges.append(edge)
    sub.wait_for(_is_connected_status, timeout_s=20)
    feeder.set(hr_bpm=130.0)
    feeder.start()
    sub.wait_for(lambda m: m.topic.endswith("/vitals") and m.data["values"]["hr_bpm"] == 130.0)
    assert not [a for a in sub.alerts() if a["kind"] == "hr_high"]

    config.write_text(base + "\n[limits]\nhr_high_bpm = { medium = 120.0 }\n")
    edge.proc.send_signal(signal.SIGHUP)
    edge.wait_log(lambda line: "configuration reload: applied limits.hr_high" in line)
    new = sub.wait_for(_is_alert("hr_high", "new")).data
    assert new["thresholds"] == {"hr_high_bpm.medium": 120.0}
    result = sub.wait_for(lambda m: m.topic.endswith("/cmd/result")).data
    assert (result["command"], result["request_id"], result["ok"]) == ("reload", None, True)

    config.write_text(base + "\n[limits]\nhr_high_bpm = { medium = 'x' }\n")  # a typo
    edge.proc.send_signal(signal.SIGHUP)
    edge.wait_log(lambda line: "configuration reload: invalid, nothing applied" in line)
    status = sub.wait_for(lambda m: m.topic.endswith("/status") and m.data.get(
        "health", {}).get("config_reloads") == {"applied": 1, "refused": 1}
        and m.data["beds"]["bed1"]["frames"] > 40).data  # 2+ s of frames after both reloads
    bed = status["beds"]["bed1"]
    assert (bed["seq_gaps"], bed["frames_missed"], status["alerts"]["frames_dropped"]) == (0, 0, 0)
    assert edge.proc.poll() is None
    assert [a["event"] for a in sub.alerts() if a["kind"] == "hr_high"] == ["new"]
    assert edge.stop() == 0
    assert "Traceback" not in edge.log()


def test_replayed_ventricular_ectopy_raises_frequent_pvcs_end_to_end(rig: Rig) -> None:
    """Board -> edge -> alert on a real ECG: `vigil-sim` replays MIT-BIH 208 (PVCs and
    couplets, about 33 V beats a minute) on a pty in real time (the ECG head times beats by
    the edge clock, so no speed-up); `vigil-edge run` with [ecg] on and the shipped bundle
    classes every beat with its int8 beat model and publishes frequent_pvcs, carrying the
    bundle version, and the abnormal-beat rate in the vitals message."""
    record = shared_data_dir("mitdb", "208")
    link = rig.tmp_path / "board"
    alerts = rig.subscribe("alert")
    vitals = rig.subscribe("vitals")
    sim = subprocess.Popen(
        [sys.executable, "-m", "firmware_bridge.sim.cli", "--replay", str(record), "--no-loop",
         "--link", str(link), "--duration", "90", "-q"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert sim.stdout is not None
        first = sim.stdout.readline()
        assert first.startswith("PTY /dev/"), first + (sim.stderr.read() if sim.stderr else "")
        edge = rig.edge(str(link), extra='[ecg]\nenabled = true\n[model]\nbundle = "default"\n')
        pvcs = alerts.wait_for(_is_alert("frequent_pvcs", "new"), timeout_s=75).data
        assert pvcs["priority"] == "medium"
        assert pvcs["values"]["ecg.pvc_per_min"] >= 10
        assert pvcs["model"].startswith("ecg-rhythm/1+vitals-default")
        assert pvcs["model"].endswith("+ecg")
        msg = vitals.wait_for(
            lambda m: isinstance(m.data, dict) and isinstance(m.data.get("ecg"), dict)
            and (m.data["ecg"].get("abnormal_per_min") or 0) >= 10, timeout_s=10).data
        assert msg["ecg"]["hr_bpm"] is not None
        kinds = {m.data.get("kind") for m in alerts.messages if isinstance(m.data, dict)}
        assert not {"asystole", "ecg_unreadable", "extreme_tachycardia"} & kinds, kinds
    finally:
        sim.terminate()
        sim.wait(10)
    assert edge.stop() == 0
    assert "Traceback" not in edge.log()
