"""Plain-language alert explanations (edge/explain.py) and the drivers behind them: fixed
limits, NEWS2, technical alerts and the age band from a manual reading, through `EdgeCore`."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from edge.commands import Acknowledge, ManualReading
from edge.config import parse_config
from edge.events import DIRECTIONS, AlertEvent, Driver, EventType, Priority
from edge.explain import age_band, explain
from edge.news2 import Consciousness, News2Inputs, direction, news2
from edge.payloads import alert_payload
from edge.runtime import EdgeCore
from firmware_bridge.frames import StatusFlag, StatusFrame, VitalsFrame
from tests import contract


@pytest.mark.parametrize(
    ("years", "band"),
    [(0, "under 16 years"), (15.9, "under 16 years"), (16, "16-19 years"),
     (19.99, "16-19 years"), (20, "20-29 years"), (72, "70-79 years"), (79.9, "70-79 years"),
     (89.9, "80-89 years"), (90, "90 years or over"), (120, "90 years or over")],
)
def test_age_bands(years: float, band: str) -> None:
    assert age_band(years) == band


@pytest.mark.parametrize(
    ("parameter", "value", "scale", "expected"),
    [("rr_per_min", 8, 1, "low"), ("rr_per_min", 25, 1, "high"), ("hr_bpm", 50, 1, "low"),
     ("hr_bpm", 91, 1, "high"), ("sbp_mmhg", 110, 1, "low"), ("sbp_mmhg", 220, 1, "high"),
     ("temp_c", 36.0, 1, "low"), ("temp_c", 38.1, 1, "high"), ("spo2_pct", 95, 1, "low"),
     ("spo2_pct", 87, 2, "low"), ("spo2_pct", 97, 2, "high")],
)
def test_news2_direction_is_the_side_of_the_score_zero_band(
    parameter: str, value: float, scale: int, expected: str,
) -> None:
    assert direction(parameter, value, scale=scale) == expected


def _core(**sections: object) -> EdgeCore:
    config = parse_config({"beds": [{"id": "bed1", "serial": "/dev/null"}],
                           "alarms": {"onset_s": 0.0, "technical_onset_s": 0.0},
                           **sections})
    return EdgeCore(config, now=0.0)


def _run(core: EdgeCore, frames: list[VitalsFrame | StatusFrame], t0: float = 0.0
         ) -> list[AlertEvent]:
    events = []
    for k, frame in enumerate(frames):
        core.on_frame("bed1", frame, t0 + k)
        events.extend(core.evaluate(t0 + k))
    return events


def test_a_limit_alert_names_its_reading_and_the_age_band_once_recorded() -> None:
    core = _core()
    (new,) = _run(core, [VitalsFrame(hr_bpm=80.0, spo2_pct=84.0)])
    assert new.kind == "spo2_low"
    assert new.drivers == (Driver("spo2_pct", "low", 84.0),)
    assert new.explanation == "Alarm limit crossed: SpO2 low (84 %)."
    core.command(ManualReading("bed1", {"age_years": 72.0}), 1.0)
    (ack,) = core.command(Acknowledge("bed1"), 2.0)[0]
    assert ack.explanation == "Alarm limit crossed: SpO2 low (84 %). Patient aged 70-79 years."
    payload = alert_payload("dev", ack, 1.7e9, 1.7e9)
    assert contract.errors("vigil/dev/alert", payload) == []
    assert json.loads(payload)["drivers"] == [{"name": "spo2_pct", "direction": "low"}]


def test_a_child_gets_a_caution_about_adult_limits() -> None:
    core = _core()
    core.command(ManualReading("bed1", {"age_years": 9.0}), 0.0)
    (new,) = _run(core, [VitalsFrame(hr_bpm=160.0, spo2_pct=98.0)], t0=1.0)
    assert new.explanation.startswith("Alarm limit crossed: HR high (160 bpm). Patient aged "
                                      "under 16 years. Caution: adult alarm limits")


def test_news2_names_every_scoring_parameter_highest_first() -> None:
    result = news2(News2Inputs(rr_per_min=26, spo2_pct=91, on_oxygen=True, sbp_mmhg=120,
                               hr_bpm=95, consciousness=Consciousness.VOICE, temp_c=37.0))
    core = _core(news2={"interval_s": 60.0})
    core.beds["bed1"].news2 = (result, 0.0)
    (new,) = [e for e in core.evaluate(0.0) if e.kind == "news2"]
    assert [(d.name, d.direction) for d in new.drivers] == [
        ("rr_per_min", "high"), ("spo2_pct", "low"), ("consciousness", "not alert"),
        ("on_oxygen", "on oxygen"), ("hr_bpm", "high"),
    ]
    assert new.explanation == (
        "NEWS2 total 12: RR high (26 /min, scores 3), SpO2 low (91 %, scores 3), "
        "consciousness not alert (V, scores 3)."
    )


def test_technical_alerts_say_they_are_about_the_equipment_and_skip_the_age() -> None:
    core = _core()
    core.command(ManualReading("bed1", {"age_years": 50.0}), 0.0)
    (new,) = _run(core, [StatusFrame(flags=StatusFlag.PROBE_OFF)], t0=1.0)
    assert new.technical
    assert new.drivers == ()
    assert new.explanation == (
        "Technical alarm about the equipment, not the patient: SpO2 probe off."
    )


def test_learned_alert_without_drivers_says_it_is_the_combination() -> None:
    event = AlertEvent(id="x", seq=0, event=EventType.NEW, bed="b", kind="ensemble_anomaly",
                       priority=Priority.HIGH, message="m", model="vitals-bundle/v",
                       technical=False, values={}, thresholds={}, time_s=0.0, started_s=0.0)
    assert explain(event, 34) == (
        "Unusual combination of vital signs (anomaly detectors agree); no single reading "
        "stands out, it is the combination. Patient aged 30-39 years."
    )
    forecast = replace(event, kind="early_warning",
                       drivers=(Driver("spo2_pct", "falling", 94.0, 88.5),))
    assert explain(forecast) == (
        "Deterioration forecast within minutes (trend model): SpO2 falling (94 → 88.5 %)."
    )


def test_the_schema_allows_exactly_the_directions_drivers_use() -> None:
    schema = json.loads((contract.SCHEMA_DIR / "alert.schema.json").read_text())
    assert tuple(schema["properties"]["drivers"]["items"]["properties"]["direction"]["enum"]) \
        == DIRECTIONS
