"""JSON payloads of the MQTT topics (the wire contract with nurse stations and dashboards).

Pure functions: they take values and a wall-clock time (seconds since the Unix epoch) and
return bytes. Topics are ``<prefix>/<device>/vitals``, ``.../alert`` and ``.../status``.
Times are ISO-8601 UTC with milliseconds and a ``Z`` suffix. Keys carry units
(``spo2_pct``, ``hr_bpm``); a value that is not valid is ``null``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from edge.alarms import ActiveAlert
from edge.bedstate import VitalsSample
from edge.events import AlertEvent
from edge.news2 import News2

__all__ = [
    "OFFLINE_PAYLOAD",
    "alert_payload",
    "iso_utc",
    "news2_payload",
    "state_payload",
    "status_payload",
    "vitals_payload",
]

# Wire resolutions (PROTOCOL.md): 0.1 for rates, saturation and pressures, 0.01 degC.
_DECIMALS: Final = {"temp_c": 2}
_DEFAULT_DECIMALS: Final = 1

OFFLINE_PAYLOAD: Final = b'{"state":"offline"}'
"""Retained on ``.../status`` by the last will (unclean death) and by a clean shutdown."""


def iso_utc(epoch_s: float) -> str:
    """``2024-05-01T12:00:00.000Z`` for a Unix time in seconds."""
    stamp = datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _dumps(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _rounded(values: Mapping[str, float | None]) -> dict[str, float | None]:
    return {
        k: None if v is None else round(v, _DECIMALS.get(k, _DEFAULT_DECIMALS))
        for k, v in values.items()
    }


def vitals_payload(
    device: str, bed: str, sample: VitalsSample, epoch_s: float,
    ecg: Mapping[str, Any] | None = None,
) -> bytes:
    """``{"device", "bed", "time", "values": {"hr_bpm": 72.0, "spo2_pct": null, ...}}``, plus
    ``"ecg"`` (`edge.ecg.EcgDetector.summary`) for a bed whose ECG head runs."""
    body: dict[str, Any] = {
        "device": device,
        "bed": bed,
        "time": iso_utc(epoch_s),
        "values": _rounded(sample.values),
    }
    if ecg is not None:
        body["ecg"] = dict(ecg)
    return _dumps(body)


def news2_payload(
    device: str, bed: str, result: News2, sources: Mapping[str, str], epoch_s: float
) -> bytes:
    """A bed's NEWS2 (retained on ``news2/<bed>``): total, sub-scores, what is missing, response,
    and for each scored input whether it came from the monitor or a manual reading."""
    return _dumps(
        {
            "device": device,
            "bed": bed,
            "time": iso_utc(epoch_s),
            "total": result.total,
            "subscores": dict(result.subscores),
            "scale": result.scale,
            "complete": result.complete,
            "missing": list(result.missing),
            "red": list(result.red),
            "response": result.response.value,
            "action": result.response.action,
            "sources": dict(sources),
        }
    )


def state_payload(
    device: str,
    bed: str,
    epoch_s: float,
    *,
    alerts: Sequence[ActiveAlert],
    to_epoch: Callable[[float], float],
    sample: VitalsSample | None,
    news2: News2 | None,
) -> bytes:
    """A bed's current state (retained on ``state/<bed>``): its announced alerts, the most
    urgent physiological priority among them, its latest vitals and NEWS2. ``to_epoch`` turns
    edge seconds into epoch seconds."""
    physiological = [a.priority for a in alerts if not a.technical]
    return _dumps(
        {
            "device": device,
            "bed": bed,
            "time": iso_utc(epoch_s),
            "highest": max(physiological).label if physiological else None,
            "technical": any(a.technical for a in alerts),
            "alerts": [
                {
                    "id": a.id, "kind": a.kind, "priority": a.priority.label,
                    "technical": a.technical, "acknowledged": a.acknowledged,
                    "latched": a.latched, "message": a.message,
                    "started": iso_utc(to_epoch(a.started_s)),
                    "silenced_until": (None if a.silenced_until_s is None
                                       else iso_utc(to_epoch(a.silenced_until_s))),
                }
                for a in alerts
            ],
            "vitals": _rounded(sample.values) if sample is not None else None,
            "news2": (None if news2 is None else
                      {"total": news2.total, "response": news2.response.value,
                       "complete": news2.complete}),
        }
    )


def alert_payload(device: str, event: AlertEvent, epoch_s: float, started_epoch_s: float) -> bytes:
    """One alert event; ``(id, seq)`` identifies the message for de-duplication."""
    return _dumps(
        {
            "id": event.id,
            "seq": event.seq,
            "event": event.event.value,
            "time": iso_utc(epoch_s),
            "started": iso_utc(started_epoch_s),
            "device": device,
            "bed": event.bed,
            "priority": event.priority.label,
            "kind": event.kind,
            "technical": event.technical,
            "message": event.message,
            "values": _rounded(event.values),
            "thresholds": dict(event.thresholds),
            "model": event.model,
            "scores": dict(event.scores),
            "votes": dict(event.votes),
            "reason": event.reason,
            "acknowledged": event.acknowledged,
            "latched": event.latched,
            "explanation": event.explanation,
            "drivers": [
                {"name": d.name, "direction": d.direction} for d in event.drivers
            ],
            "silenced_until": (
                None if event.silenced_until_s is None
                else iso_utc(epoch_s + event.silenced_until_s - event.time_s)
            ),
        }
    )


def status_payload(
    device: str,
    epoch_s: float,
    *,
    version: str,
    beds: Mapping[str, Mapping[str, Any]],
    alerts: Mapping[str, Any],
    model: Mapping[str, Any] | None = None,
    health: Mapping[str, Any] | None = None,
) -> bytes:
    """Retained ``{"state": "online", ...}`` with link and queue counters.

    ``model`` (when given) says which learned model scores: ``{"state": "loaded", "version"}``,
    ``{"state": "refused", "reason"}`` or ``{"state": "off"}``.
    """
    body: dict[str, Any] = {
        "state": "online",
        "device": device,
        "time": iso_utc(epoch_s),
        "version": version,
        "beds": dict(beds),
        "alerts": dict(alerts),
    }
    if model is not None:
        body["model"] = dict(model)
    if health is not None:
        body["health"] = dict(health)
    return _dumps(body)
