"""Home Assistant discovery: the config messages carry what Home Assistant's MQTT discovery
needs (device, unique_id, state_topic, availability), point at topics of our contract, and
their templates, rendered with Jinja2 as Home Assistant does, read our real payloads."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import jinja2
import pytest
from conftest import MqttCollector
from mosquitto import MosquittoBroker
from test_edge_commands import _edge

from edge.alarms import ActiveAlert
from edge.bedstate import VitalsSample
from edge.config import parse_config
from edge.events import Priority
from edge.homeassistant import SENSORS, discovery_messages
from edge.news2 import News2Inputs, news2
from edge.payloads import OFFLINE_PAYLOAD, news2_payload, state_payload
from tests import contract

TOPIC_RE = re.compile(
    r"^homeassistant/(sensor|binary_sensor)/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/config$"
)
# Home Assistant's accepted units for these device classes (sensor device classes docs).
UNITS = {"pressure": {"cbar", "bar", "hPa", "mmHg", "inHg", "kPa", "mbar", "Pa", "psi"},
         "temperature": {"°C", "°F", "K"}}


def _config(**ha: Any) -> Any:
    return parse_config({
        "device": {"id": "ward-3"},
        "beds": [{"id": "bed1", "serial": "/x"}, {"id": "bed2", "serial": "/y"}],
        "homeassistant": {"enabled": True, **ha},
    })


def _render(template: str, payload: bytes) -> str:
    # Home Assistant renders these as plain text, not HTML: no autoescape, as there.
    return jinja2.Environment(autoescape=False).from_string(template).render(  # noqa: S701
        value_json=json.loads(payload)
    )


def test_every_config_has_what_discovery_requires_and_reads_contract_topics() -> None:
    config = _config()
    messages = discovery_messages(config, "1.2.3")
    assert len(messages) == 2 * (len(SENSORS) + 2)
    ids = set()
    for topic, raw in messages:
        assert TOPIC_RE.match(topic), topic
        body = json.loads(raw)
        assert body["unique_id"] not in ids
        ids.add(body["unique_id"])
        assert body["device"]["identifiers"]
        assert body["device"]["name"].startswith("Vigil ward-3 bed")
        assert body["device"]["sw_version"] == "1.2.3"
        (availability,) = body["availability"]
        assert availability["topic"] == config.topic("status")
        assert (availability["payload_available"], availability["payload_not_available"]) == (
            "online", "offline")
        assert contract.schema_for(body["state_topic"]) in {"state", "news2"}
        if body.get("device_class") in UNITS:
            assert body["unit_of_measurement"] in UNITS[body["device_class"]]
    assert discovery_messages(_config(discovery_prefix="ha/test"), "1")[0][0].startswith("ha/test/")


def test_templates_read_our_real_payloads() -> None:
    by_key = {t.split("/")[-2]: json.loads(p) for t, p in discovery_messages(_config(), "1")
              if "_bed1/" in t}
    sample = VitalsSample(1.0, {"hr_bpm": 72.0, "spo2_pct": None, "rr_per_min": 14.0,
                                "sbp_mmhg": 118.0, "dbp_mmhg": 76.0, "map_mmhg": 90.0,
                                "temp_c": 37.25})
    high = ActiveAlert(id="a", kind="spo2_low", priority=Priority.HIGH, technical=False,
                       acknowledged=False, latched=False, silenced_until_s=None, started_s=0.0,
                       message="SpO2 82 %")
    state = state_payload("ward-3", "bed1", 1.7e9, alerts=[high], to_epoch=float, sample=sample,
                          news2=None)
    quiet = state_payload("ward-3", "bed1", 1.7e9, alerts=[], to_epoch=float, sample=None,
                          news2=None)
    assert _render(by_key["hr"]["value_template"], state) == "72.0"
    assert _render(by_key["temp"]["value_template"], state) == "37.25"
    assert _render(by_key["spo2"]["value_template"], state) == "None"  # not measured: unknown
    assert _render(by_key["hr"]["value_template"], quiet) == "None"
    alarm = by_key["high_alarm"]
    assert _render(alarm["value_template"], state) == alarm["payload_on"]
    assert _render(alarm["value_template"], quiet) == alarm["payload_off"]
    result = news2(News2Inputs(rr_per_min=26, spo2_pct=97, hr_bpm=72))
    scored = news2_payload("ward-3", "bed1", result, {"rr_per_min": "monitor"}, 1.7e9)
    assert _render(by_key["news2"]["value_template"], scored) == "3"
    assert json.loads(_render(by_key["news2"]["json_attributes_template"], scored)) == {
        "response": "low-medium", "complete": False}
    avail = by_key["hr"]["availability"][0]
    assert _render(avail["value_template"], OFFLINE_PAYLOAD) == avail["payload_not_available"]


def test_the_runtime_publishes_discovery_retained_only_when_enabled(
    mosquitto: MosquittoBroker, device_id: str, mqtt_collector: Callable[..., MqttCollector],
) -> None:
    ha = mqtt_collector(mosquitto, ["homeassistant/#"])
    with _edge(mosquitto, device_id, homeassistant={"enabled": True}):
        ha.wait_for(lambda m: m.topic.endswith("/high_alarm/config"))
    late = mqtt_collector(mosquitto, ["homeassistant/#"])
    got = late.wait_for(lambda m: m.topic.endswith("/high_alarm/config"))
    assert got.retain
    assert got.data["state_topic"] == f"vigil/{device_id}/state/bed1"
    other = f"{device_id}-off"
    off = mqtt_collector(mosquitto, [f"homeassistant/+/vigil_{other}_bed1/#"])
    with _edge(mosquitto, other):
        pass
    assert off.snapshot() == []


@pytest.mark.parametrize("bad", [{"enabled": "yes"}, {"discovery_prefix": "a/+/b"}])
def test_bad_settings_name_the_key(bad: dict[str, Any]) -> None:
    from edge.config import ConfigError  # noqa: PLC0415

    with pytest.raises(ConfigError, match=r"homeassistant\.(enabled|discovery_prefix)"):
        _config(**bad)
