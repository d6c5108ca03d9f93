"""Home Assistant MQTT discovery: the retained config messages that make each bed a device.

Why: a family or a small ward often already runs Home Assistant; with discovery on
(``[homeassistant] enabled = true``) each bed appears there with its vitals, its NEWS2 and a
"high alarm" binary sensor, without any YAML. Pure: config in, (topic, payload) pairs out; the
runtime publishes them retained at every connect.

What each entity reads (topics of docs/mqtt.md, so discovery adds no topic of its own):

- HR, SpO2, RR, SBP, DBP, temperature: ``state/<bed>``, ``value_json.vitals.<field>``
  (``None`` renders as unknown in Home Assistant while a vital is not measured);
- NEWS2: ``news2/<bed>``, ``value_json.total``;
- High alarm (binary sensor, device class ``problem``): ``state/<bed>``, on while the most
  urgent announced physiological alert is high.

Availability of every entity is the edge's retained status (``{"state": "online"}``, and the
last will ``{"state": "offline"}``), so a dead edge shows as unavailable, never as "no alarm".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from edge.config import EdgeConfig

__all__ = ["SENSORS", "discovery_messages"]


@dataclass(frozen=True, slots=True)
class _Sensor:
    key: str
    name: str
    field: str
    unit: str
    device_class: str | None
    icon: str


SENSORS: Final = (
    _Sensor("hr", "Heart rate", "hr_bpm", "bpm", None, "mdi:heart-pulse"),
    _Sensor("spo2", "SpO2", "spo2_pct", "%", None, "mdi:water-percent"),
    _Sensor("rr", "Respiration rate", "rr_per_min", "/min", None, "mdi:lungs"),
    _Sensor("sbp", "Systolic BP", "sbp_mmhg", "mmHg", "pressure", "mdi:heart"),
    _Sensor("dbp", "Diastolic BP", "dbp_mmhg", "mmHg", "pressure", "mdi:heart"),
    _Sensor("temp", "Temperature", "temp_c", "°C", "temperature", "mdi:thermometer"),
)
"""The vitals sensors of each bed; ``field`` is the key in ``state/<bed>`` ``vitals``."""


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _entity(
    prefix: str, component: str, node: str, key: str, *, common: dict[str, object],
    body: dict[str, object],
) -> tuple[str, bytes]:
    payload = {"unique_id": f"{node}_{key}", "object_id": f"{node}_{key}", **common, **body}
    return f"{prefix}/{component}/{node}/{key}/config", _dumps(payload)


def discovery_messages(config: EdgeConfig, version: str) -> list[tuple[str, bytes]]:
    """Every discovery config message (topic, payload), to publish retained (QoS 1)."""
    prefix = config.homeassistant.discovery_prefix
    device_id = config.device.id
    availability = [{
        "topic": config.topic("status"),
        "value_template": "{{ value_json.state }}",
        "payload_available": "online",
        "payload_not_available": "offline",
    }]
    out: list[tuple[str, bytes]] = []
    for bed in config.beds:
        node = f"vigil_{device_id}_{bed.id}"
        device = {
            "identifiers": [node],
            "name": f"Vigil {device_id} {bed.id}",
            "manufacturer": "Vigil",
            "model": "bedside monitor",
            "sw_version": version,
        }
        state_topic = config.topic(f"state/{bed.id}")
        common: dict[str, object] = {"availability": availability, "device": device, "qos": 1}

        for s in SENSORS:
            body: dict[str, object] = {
                "name": s.name,
                "state_topic": state_topic,
                "value_template": (
                    f"{{{{ value_json.vitals.{s.field} if value_json.vitals else None }}}}"
                ),
                "unit_of_measurement": s.unit,
                "state_class": "measurement",
                "icon": s.icon,
            }
            if s.device_class is not None:
                body["device_class"] = s.device_class
            out.append(_entity(prefix, "sensor", node, s.key, common=common, body=body))
        out.append(_entity(prefix, "sensor", node, "news2", common=common, body={
            "name": "NEWS2",
            "state_topic": config.topic(f"news2/{bed.id}"),
            "value_template": "{{ value_json.total }}",
            "state_class": "measurement",
            "icon": "mdi:clipboard-pulse",
            "json_attributes_topic": config.topic(f"news2/{bed.id}"),
            "json_attributes_template": (
                '{{ {"response": value_json.response, "complete": value_json.complete} '
                "| tojson }}"
            ),
        }))
        out.append(_entity(prefix, "binary_sensor", node, "high_alarm", common=common, body={
            "name": "High alarm",
            "state_topic": state_topic,
            "value_template": "{{ 'ON' if value_json.highest == 'high' else 'OFF' }}",
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "problem",
            "icon": "mdi:alarm-light",
        }))
    return out
