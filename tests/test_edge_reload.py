"""Configuration reload: what may change (pure plan), then SIGHUP / ``cmd/reload`` /
``vigil-edge reload`` on the in-process runtime against a real mosquitto, frames counted."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import MqttCollector
from mosquitto import MosquittoBroker
from test_edge_mqtt import FakeReader

from edge.cli import main
from edge.commands import CommandError, Reload, parse_command
from edge.config import EdgeConfig, load_config, parse_config
from edge.reload import plan_reload
from edge.runtime import Runtime
from firmware_bridge.frames import Frame, VitalsFrame


def _config(**sections: Any) -> EdgeConfig:
    base: dict[str, Any] = {"beds": [{"id": "bed1", "serial": "/dev/ttyACM0"},
                                     {"id": "bed2", "serial": "/dev/ttyACM1"}]}
    return parse_config({**base, **sections})


def test_nothing_changed_is_an_empty_plan() -> None:
    plan = plan_reload(_config(), _config())
    assert (plan.changed, plan.restart, plan.applicable) == ((), (), True)


def test_alarm_limit_news2_and_scale_changes_apply_in_place() -> None:
    new = _config(
        alarms={"onset_s": 8.0, "kinds": {"rr_high": {"onset_s": 15.0, "clear_s": 30.0}}},
        limits={"hr_high_bpm": {"medium": 110.0}, "temp_low_c": {}},
        news2={"interval_s": 30.0},
        mqtt={"vitals_interval_s": 2.0},
        beds=[{"id": "bed1", "serial": "/dev/ttyACM0", "spo2_scale": 2},
              {"id": "bed2", "serial": "/dev/ttyACM1"}],
        homeassistant={"enabled": True},
        model={"bundle": "default"},
    )
    plan = plan_reload(_config(), new)
    assert plan.applicable
    assert plan.changed == (
        "alarms.kinds", "alarms.onset_s", "beds.bed1.spo2_scale", "homeassistant.enabled",
        "limits.hr_high", "limits.temp_low", "model.bundle", "mqtt.vitals_interval_s",
        "news2.interval_s",
    )
    assert plan.affects("alarms")
    assert plan.affects("limits")
    assert not plan.affects("technical")


def test_ports_broker_device_and_journal_need_a_restart_and_secrets_stay_unnamed() -> None:
    new = _config(
        device={"id": "ward3-pi2"},
        mqtt={"host": "10.0.0.5", "username": "ward3", "password": "s3cret-value"},
        beds=[{"id": "bed1", "serial": "/dev/ttyUSB0"}, {"id": "bed2", "serial": "/dev/ttyACM1",
                                                           "baud": 230400}],
        journal={"state_dir": "/var/lib/vigil"},
        limits={"hr_high_bpm": {"medium": 110.0}},
    )
    plan = plan_reload(_config(), new)
    assert not plan.applicable
    assert plan.restart == (
        "beds.bed1.serial", "beds.bed2.baud", "device.id", "journal.state_dir",
        "mqtt.client_id", "mqtt.host", "mqtt.password", "mqtt.username",
    )
    assert "s3cret" not in repr(plan)
    assert plan.changed == ("limits.hr_high",)  # seen, but nothing is applied (the runtime)


def test_adding_or_removing_a_bed_needs_a_restart() -> None:
    one = parse_config({"beds": [{"id": "bed1", "serial": "/dev/ttyACM0"}]})
    assert plan_reload(_config(), one).restart == ("beds",)
    assert plan_reload(one, _config()).restart == ("beds",)


def test_reload_command_parses_with_or_without_request_id() -> None:
    assert parse_command("reload", b"{}") == Reload()
    assert parse_command("reload", b'{"request_id": "r1"}') == Reload("r1")
    with pytest.raises(CommandError, match="unknown field"):
        parse_command("reload", b'{"bed": "bed1"}')


# --- the runtime ------------------------------------------------------------------------------

def _write(path: Path, broker: MosquittoBroker, device: str, *, hr_medium: str = "140.0",
           port: int | None = None) -> None:
    path.write_text(f"""
[device]
id = "{device}"
[mqtt]
port = {port or broker.port}
status_interval_s = 1.0
[[beds]]
id = "bed1"
serial = "/dev/fake0"
[alarms]
onset_s = 0.0
clear_s = 0.0
[limits]
hr_high_bpm = {{ medium = {hr_medium} }}
""")


class _Board:
    """Feeds the fake reader one HR 130 frame every 20 ms, numbered, until stopped."""

    def __init__(self, reader: FakeReader) -> None:
        self.reader = reader
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.wait(0.02) and self.sent < 5000:
            self.reader.on_frame(VitalsFrame(seq=self.sent & 0xFFFF, hr_bpm=130.0,
                                             spo2_pct=97.0))
            self.sent += 1

    def __enter__(self) -> _Board:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def edge(
    tmp_path: Path, mosquitto: MosquittoBroker, device_id: str
) -> Iterator[tuple[Runtime, FakeReader, Path]]:
    path = tmp_path / "edge.toml"
    _write(path, mosquitto, device_id)
    readers: list[FakeReader] = []

    def factory(port: str, on_frame: Callable[[Frame], None], **kw: object) -> FakeReader:
        readers.append(FakeReader(port, on_frame, **kw))
        return readers[-1]

    runtime = Runtime(load_config(path), reader_factory=factory,
                      reload_config=lambda: load_config(path))
    stop = threading.Event()
    thread = threading.Thread(target=runtime.run, args=(stop,))
    thread.start()
    try:
        yield runtime, readers[0], path
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def _reload_cli(mosquitto: MosquittoBroker, device_id: str) -> int:
    return main(["reload", "--broker", f"127.0.0.1:{mosquitto.port}", "--device", device_id,
                 "--timeout", "5"])


def test_reload_applies_whole_or_not_at_all_and_loses_no_frame(
    edge: tuple[Runtime, FakeReader, Path], mosquitto: MosquittoBroker, device_id: str,
    mqtt_collector: Callable[..., MqttCollector], capsys: pytest.CaptureFixture[str],
) -> None:
    runtime, reader, path = edge
    sub = mqtt_collector(mosquitto, [f"vigil/{device_id}/#"])
    sub.wait_for(lambda m: m.topic.endswith("/status"))

    def hr_alerts(event: str) -> list[dict[str, Any]]:
        return [m.data for m in sub.snapshot() if m.topic.endswith("/alert")
                and m.data["kind"] == "hr_high" and m.data["event"] == event]

    with _Board(reader) as board:
        sub.wait_for(lambda m: m.topic.endswith("/vitals"))
        assert not hr_alerts("new")  # HR 130 is under the 140 limit

        _write(path, mosquitto, device_id, hr_medium="120.0")
        assert _reload_cli(mosquitto, device_id) == 0
        assert "OK reload on" in (out := capsys.readouterr().out)
        assert "applied limits.hr_high" in out
        new = sub.wait_for(lambda m: m.topic.endswith("/alert") and m.data["kind"] == "hr_high"
                           and m.data["event"] == "new").data
        assert new["thresholds"] == {"hr_high_bpm.medium": 120.0}

        # An invalid file and a change that needs a restart: refused, nothing applied.
        _write(path, mosquitto, device_id, hr_medium="'fast'")
        assert _reload_cli(mosquitto, device_id) == 1
        assert "limits.hr_high_bpm.medium" in capsys.readouterr().err
        _write(path, mosquitto, device_id, hr_medium="140.0", port=mosquitto.port + 1)
        assert _reload_cli(mosquitto, device_id) == 1
        err = capsys.readouterr().err
        assert "mqtt.port changed: that needs a restart" in err
        assert "nothing applied" in err
        hr_high = [r for r in runtime.config.limits.rules if r.spec.kind == "hr_high"]
        assert hr_high[0].thresholds[-1][1] == 120.0
        assert not hr_alerts("end")

        # SIGHUP (what the signal handler calls): the limit goes back up, the alert ends.
        _write(path, mosquitto, device_id, hr_medium="140.0")
        runtime.request_reload()
        end = sub.wait_for(lambda m: m.topic.endswith("/alert") and m.data["kind"] == "hr_high"
                           and m.data["event"] == "end").data
        assert end["id"] == new["id"]
        hup = sub.wait_for(lambda m: m.topic.endswith("/cmd/result")
                           and m.data["request_id"] is None).data
        assert (hup["command"], hup["ok"], hup["detail"]) == ("reload", True,
                                                               "applied limits.hr_high")
        status = sub.wait_for(lambda m: m.topic.endswith("/status") and m.data.get(
            "health", {}).get("config_reloads", {}).get("applied") == 2).data
        assert status["health"]["config_reloads"] == {"applied": 2, "refused": 2}
    for _ in range(100):  # every frame the board sent reached the core
        if runtime.core.beds["bed1"].frames == board.sent:
            break
        threading.Event().wait(0.05)
    assert runtime.core.beds["bed1"].frames == board.sent > 0
    assert runtime.frames_dropped == 0
    assert len(hr_alerts("new")) == 1


def test_reload_of_a_model_bundle_that_is_refused_keeps_the_fixed_limits(
    edge: tuple[Runtime, FakeReader, Path], mosquitto: MosquittoBroker, device_id: str,
    mqtt_collector: Callable[..., MqttCollector], tmp_path: Path,
) -> None:
    runtime, _, path = edge
    sub = mqtt_collector(mosquitto, [f"vigil/{device_id}/#"])
    sub.wait_for(lambda m: m.topic.endswith("/status"))
    assert runtime.models is not None
    assert runtime.models.status == {"state": "off", "source": "configured"}
    path.write_text(path.read_text() + f'\n[model]\nbundle = "{tmp_path / "missing"}"\n')
    runtime.request_reload()
    runtime.request_reload()

    def results() -> list[str]:
        return [m.data["detail"] for m in sub.snapshot() if m.topic.endswith("/cmd/result")]

    sub.wait_for(lambda m: len(results()) == 2)
    assert results() == ["applied model.bundle", "no changes"]
    status = sub.wait_for(lambda m: m.topic.endswith("/status")
                          and m.data.get("model", {}).get("state") == "refused").data
    assert "missing" in status["model"]["reason"]
    models = [d.model for d in runtime.core.detectors]
    assert models[-1] == "model-loader/1"
    assert "fixed-limits/1" in models
    sub.wait_for(lambda m: m.topic.endswith("/alert") and m.data["kind"] == "model_unavailable")
