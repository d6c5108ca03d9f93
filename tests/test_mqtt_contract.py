"""The MQTT contract itself: valid schemas, documented topics, payload builders that keep it.

The live check (every message the real edge publishes in the MQTT tests) runs in conftest.py;
this module checks the contract's own consistency and that it rejects what it must.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
from jsonschema import Draft202012Validator

from edge.alarms import ActiveAlert
from edge.bedstate import VitalsSample
from edge.commands import result_payload
from edge.events import AlertEvent, EventType, Priority
from edge.news2 import Consciousness, News2Inputs, news2
from edge.payloads import (
    OFFLINE_PAYLOAD,
    alert_payload,
    news2_payload,
    state_payload,
    vitals_payload,
)
from tests import contract

DOC = contract.SCHEMA_DIR.parent / "mqtt.md"
ALERT = AlertEvent(
    id="3f2a1b2c-0000-4000-8000-000000000000", seq=0, event=EventType.NEW, bed="bed1",
    kind="spo2_low", priority=Priority.HIGH, message="SpO2 84 %", model="fixed-limits/1",
    technical=False, values={"spo2_pct": 84.0}, thresholds={"spo2_low_pct.high": 85.0},
    time_s=10.0, started_s=5.0, reason="onset",
)


@pytest.mark.parametrize("stem", sorted(set(contract.TOPICS.values())))
def test_every_schema_is_valid_and_documented(stem: str) -> None:
    schema = json.loads((contract.SCHEMA_DIR / f"{stem}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    assert f"(schemas/{stem}.schema.json)" in DOC.read_text()


def test_every_documented_topic_is_in_the_contract_and_back() -> None:
    documented = set(re.findall(r"`<prefix>/<device>/([a-z0-9/<>]+)`", DOC.read_text()))
    assert {t.replace("<bed>", "*") for t in documented} == set(contract.TOPICS)
    assert {p.stem.removesuffix(".schema") for p in contract.SCHEMA_DIR.glob("*.json")} == set(
        contract.TOPICS.values()
    )


def test_the_payload_builders_keep_the_contract() -> None:
    t = "vigil/dev"
    paused = replace(ALERT, event=EventType.UPDATE, reason="audio paused", silenced_until_s=70.0)
    result = news2(News2Inputs(rr_per_min=22, spo2_pct=93, on_oxygen=False, sbp_mmhg=105,
                               hr_bpm=95, consciousness=Consciousness.ALERT, temp_c=38.2))
    sample = VitalsSample(3.0, {"hr_bpm": 72.0, "spo2_pct": None, "rr_per_min": 14.0,
                                "sbp_mmhg": None, "dbp_mmhg": None, "map_mmhg": None,
                                "temp_c": 36.9})
    for topic, payload in [
        (f"{t}/alert", alert_payload("dev", ALERT, 1.7e9, 1.7e9 - 5)),
        (f"{t}/alert", alert_payload("dev", paused, 1.7e9, 1.7e9 - 5)),
        (f"{t}/status", OFFLINE_PAYLOAD),
        (f"{t}/vitals", vitals_payload("dev", "bed1", sample, 1.7e9)),
        (f"{t}/news2/bed1", news2_payload("dev", "bed1", result, {"hr_bpm": "monitor"}, 1.7e9)),
        (f"{t}/cmd/result", result_payload("ack", None, ok=False, detail="bed: no bed 'x'",
                                           events=0, time="2026-11-24T20:43:05.120Z")),
        (f"{t}/cmd/reading", b'{"bed": "bed1", "consciousness": "C", "glucose": 7.5}'),
        (f"{t}/cmd/silence", b""),  # clearing a retained command
        (f"{t}/cmd/reload", b'{"request_id": "r1"}'),
        (f"{t}/cmd/reading", b'{"bed": "bed1", "age_years": 72}'),
        (f"{t}/state/bed1", state_payload(
            "dev", "bed1", 1.7e9, alerts=[ActiveAlert(
                id=ALERT.id, kind="spo2_low", priority=Priority.HIGH, technical=False,
                acknowledged=True, latched=False, silenced_until_s=12.0, started_s=5.0,
                message="SpO2 84 %")],
            to_epoch=lambda s: 1.7e9 + s, sample=sample, news2=result)),
        (f"{t}/state/bed1", state_payload("dev", "bed1", 1.7e9, alerts=[], to_epoch=float,
                                          sample=None, news2=None)),
    ]:
        assert contract.errors(topic, payload) == [], topic


@pytest.mark.parametrize(
    ("topic", "payload", "why"),
    [
        ("vigil/dev/alert", b'{"id": "x", "seq": 0}', "'event' is a required property"),
        ("vigil/dev/status", b'{"state": "online"}', "not valid under any of the given schemas"),
        ("vigil/dev/vitals", b"", "empty payload"),
        ("vigil/dev/cmd/silence", b'{"bed": "b", "seconds": 0}', "less than or equal to the min"),
        ("vigil/dev/cmd/reading", b'{"bed": "b"}', "does not have enough properties"),
        ("vigil/dev/cmd/reload", b'{"bed": "b"}', "Additional properties are not allowed"),
        ("vigil/dev/cmd/reading", b'{"bed": "b", "age_years": 130}', "is greater than the max"),
        ("vigil/dev/telemetry", b"{}", "not a topic of the contract"),
        ("vigil/dev/alert", b"not json", "not JSON"),
    ],
)
def test_the_contract_rejects_what_it_must(topic: str, payload: bytes, why: str) -> None:
    problems = contract.errors(topic, payload)
    assert problems, topic
    assert any(why in p for p in problems), problems


def test_alert_fields_match_the_schema_exactly() -> None:
    """A field added to alert_payload without the schema (or the reverse) fails here."""
    schema = json.loads((contract.SCHEMA_DIR / "alert.schema.json").read_text())
    sent = json.loads(alert_payload("dev", ALERT, 1.7e9, 1.7e9))
    assert set(sent) == set(schema["properties"]) == set(schema["required"])
