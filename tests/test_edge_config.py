"""Configuration: defaults, errors that name the key, overrides, and `config --check`."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from edge.cli import main
from edge.config import (
    DEFAULT_LIMITS,
    DEFAULT_TECHNICAL,
    ConfigError,
    apply_overrides,
    default_config_text,
    load_config,
    parse_config,
)
from edge.events import Priority

MINIMAL: dict[str, Any] = {"beds": [{"id": "bed1", "serial": "/dev/ttyACM0"}]}


def _errors(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return list(info.value.errors)


def _with(**sections: Any) -> dict[str, Any]:
    return {**MINIMAL, **sections}


def test_packaged_default_is_valid_and_matches_code_defaults() -> None:
    from_file = load_config()
    from_code = parse_config(MINIMAL)
    assert from_file.beds[0].serial == "/dev/ttyACM0"
    # Everything but the beds comes from the code defaults: the file documents them faithfully.
    for section in ("device", "mqtt", "alarms", "limits", "technical", "buffers", "news2"):
        assert getattr(from_file, section) == getattr(from_code, section), section
    assert from_file.mqtt.client_id == "vigil-edge-vigil-edge-1"
    assert from_file.topic("alert") == "vigil/vigil-edge-1/alert"
    # The one deliberate difference: the packaged file turns the shipped bundle on; a file
    # without [model] (every test's) runs fixed limits only.
    assert from_file.model.bundle == "default"
    assert from_code.model.bundle == ""
    assert from_file.journal.state_dir == "~/.local/state/vigil"  # the packaged file keeps one
    assert from_code.journal.state_dir == ""  # tests' configs: memory only, no shared file
    assert from_file.model.artefact_hold_s == from_code.model.artefact_hold_s


def test_default_limits_cover_every_spec_and_are_ordered() -> None:
    config = parse_config(MINIMAL)
    assert {r.spec.key for r in config.limits.rules} == set(DEFAULT_LIMITS)
    spo2 = config.limits.rule("spo2_low_pct")
    assert spo2 is not None
    assert spo2.thresholds == ((Priority.HIGH, 85.0), (Priority.MEDIUM, 90.0))
    assert spo2.crossed(89.9) == (Priority.MEDIUM, 90.0)
    assert spo2.crossed(84.0) == (Priority.HIGH, 85.0)
    assert spo2.crossed(90.0) is None  # strictly below
    assert config.technical.priority("link_lost") is DEFAULT_TECHNICAL["link_lost"]


def test_out_of_range_names_key_value_and_range() -> None:
    errors = _errors(_with(limits={"spo2_low_pct": {"medium": 90.0, "high": 150.0}}))
    assert len(errors) == 1
    assert errors[0].startswith("limits.spo2_low_pct.high: 150.0 is out of range")
    assert "50..100" in errors[0]


def test_priority_order_is_checked() -> None:
    errors = _errors(_with(limits={"hr_high_bpm": {"medium": 150.0, "high": 120.0}}))
    assert errors == [
        "limits.hr_high_bpm.high: 120 must be above limits.hr_high_bpm.medium (150): "
        "a more urgent priority needs a more extreme threshold"
    ]


def test_unknown_keys_with_did_you_mean() -> None:
    errors = _errors(_with(mqtt={"prot": 1883}, limits={"spo2_low": {"medium": 90}}))
    assert any(e.startswith("mqtt.prot: unknown key; did you mean 'port'?") for e in errors)
    assert any(
        e.startswith("limits.spo2_low: unknown key; did you mean 'spo2_low_pct'?") for e in errors
    )
    errors = _errors({**MINIMAL, "alarm": {}})
    assert errors[0].startswith("alarm: unknown key; did you mean 'alarms'?")


def test_type_errors_and_missing_beds_are_all_reported() -> None:
    errors = _errors(
        {
            "mqtt": {"port": "1883", "keepalive_s": True, "queue_max": 1.5},
            "alarms": {"onset_s": -1},
            "technical": {"probe_off": "urgent"},
        }
    )
    joined = "\n".join(errors)
    assert 'mqtt.port: expected an integer, got "1883"; allowed 1..65535' in joined
    assert "mqtt.keepalive_s: expected an integer, got true" in joined
    assert "mqtt.queue_max: expected an integer, got 1.5" in joined
    assert "alarms.onset_s: -1 is out of range; allowed 0..120" in joined
    assert (
        'technical.probe_off: "urgent" is not allowed; allowed values: low, medium, high, off'
        in joined
    )
    assert "beds: at least one [[beds]] table is required" in joined
    assert len(errors) == 6


def test_bed_errors_name_the_index() -> None:
    errors = _errors(
        {
            "beds": [
                {"id": "bed1", "serial": "/dev/a"},
                {"id": "bed1", "serial": "/dev/b", "baud": 12345},
                {"id": "bed 3"},
            ]
        }
    )
    assert 'beds[1].id: "bed1" is already used by beds[0]' in errors
    assert any(
        e.startswith("beds[1].baud: 12345 is not allowed; allowed values: 9600") for e in errors
    )
    assert any(e.startswith('beds[2].id: "bed 3" is not allowed') for e in errors)
    assert "beds[2].serial: required key is missing" in errors


def test_disabled_limit_and_off_technical() -> None:
    config = parse_config(_with(limits={"temp_low_c": {}}, technical={"battery_low": "off"}))
    assert config.limits.rule("temp_low_c") is None
    assert config.technical.priority("battery_low") is None


def test_overrides() -> None:
    data = {"beds": [{"id": "bed1", "serial": "/dev/x"}]}
    out = apply_overrides(data, serial=["/dev/y"], broker="10.0.0.2:1999", device_id="icu-3")
    config = parse_config(out)
    assert config.beds[0].serial == "/dev/y"
    assert (config.mqtt.host, config.mqtt.port) == ("10.0.0.2", 1999)
    assert config.device.id == "icu-3"
    assert config.mqtt.client_id == "vigil-edge-icu-3"
    assert data["beds"][0]["serial"] == "/dev/x"  # the input is not modified

    two = {"beds": [{"id": "a", "serial": "/1"}, {"id": "b", "serial": "/2"}]}
    assert parse_config(apply_overrides(two, serial=["b=/dev/z"])).beds[1].serial == "/dev/z"
    with pytest.raises(ConfigError, match="2 beds are configured; use --serial BED=PATH"):
        apply_overrides(two, serial=["/dev/z"])
    with pytest.raises(ConfigError, match="no bed with id 'c'"):
        apply_overrides(two, serial=["c=/dev/z"])
    with pytest.raises(ConfigError, match="--broker: port 'x' is not an integer"):
        apply_overrides(two, broker="host:x")
    # An override is validated like the file.
    with pytest.raises(ConfigError, match=r"mqtt\.port: 0 is out of range"):
        parse_config(apply_overrides(two, broker="host:0"))


def test_config_check_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[device]\nid = "icu-1"\n[[beds]]\nid = "bed1"\nserial = "/dev/ttyUSB0"\n')
    assert main(["config", "--check", str(good)]) == 0
    assert capsys.readouterr().out.startswith("OK ")

    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text() + "[alarms]\nonset_s = 500\nonset = 1\n")
    assert main(["config", "--check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "2 error(s)" in out
    assert "alarms.onset_s: 500 is out of range; allowed 0..120" in out
    assert "alarms.onset: unknown key; did you mean 'onset_s'?" in out

    broken = tmp_path / "broken.toml"
    broken.write_text("[device\n")
    assert main(["config", "--check", str(broken)]) == 1
    assert "TOML syntax error" in capsys.readouterr().out

    assert main(["config", "--check", str(tmp_path / "missing.toml")]) == 1
    assert "cannot read" in capsys.readouterr().out


def test_print_default_is_the_packaged_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--print-default"]) == 0
    out = capsys.readouterr().out
    assert out == default_config_text()
    tomllib.loads(out)


def test_artefact_hold_is_bounded() -> None:
    assert parse_config(MINIMAL).model.artefact_hold_s == 10.0
    assert parse_config(_with(model={"artefact_hold_s": 0})).model.artefact_hold_s == 0.0
    (error,) = _errors(_with(model={"artefact_hold_s": 45}))
    assert error.startswith("model.artefact_hold_s: 45 is out of range")
    assert "0..30" in error


def test_rhythm_event_kinds_have_their_own_onset_unless_configured() -> None:
    """edge/rhythm.py KIND_ONSET_S: runs and asystole announce without the general onset (their
    rule already waits); [alarms.kinds] still wins."""
    from edge.rhythm import KIND_ONSET_S  # noqa: PLC0415

    cfg = parse_config({**MINIMAL, "alarms": {"onset_s": 5.0, "clear_s": 3.0}})
    assert cfg.alarms.kinds["ventricular_run"] == (0.0, 3.0)
    assert cfg.alarms.kinds["asystole"] == (0.0, 3.0)
    assert "irregular_rhythm" not in cfg.alarms.kinds
    assert set(KIND_ONSET_S) <= set(cfg.alarms.kinds)
    mine = parse_config({**MINIMAL, "alarms": {"kinds": {"asystole": {"onset_s": 2.0},
                                                         "ventricular_run": {"clear_s": 9.0}}}})
    assert mine.alarms.kinds["asystole"] == (2.0, 3.0)
    assert mine.alarms.kinds["ventricular_run"] == (0.0, 9.0)  # its own onset kept


def test_ecg_af_irregularity_reaches_the_rhythm_rules() -> None:
    assert parse_config(MINIMAL).ecg.rhythm().af_irregularity == 0.08
    mine = parse_config(_with(ecg={"enabled": True, "af_irregularity": 0.12}))
    assert mine.ecg.rhythm().af_irregularity == 0.12
    (error,) = _errors(_with(ecg={"af_irregularity": 0.0}))
    assert error.startswith("ecg.af_irregularity: 0.0 is out of range")
    assert "0.02..0.5" in error
