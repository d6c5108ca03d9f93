"""Commands to the edge (ack, audio pause, reading, reload): their wire form, parsed, checked.

Why a module of its own: commands arrive from the network (MQTT command topics, sent by the
``vigil-edge ack`` / ``silence`` CLI or any client), so every field is untrusted. Parsing is
pure: bytes in, a typed command or `CommandError` out, naming the field. The runtime applies
a parsed command to the alarm manager and publishes the outcome (`result_payload`).

Wire form: topic ``<prefix>/<device>/cmd/<name>``; payload one JSON object, UTF-8.

- ``cmd/ack``: ``{"bed": "bed1", "id": "<alert id>"}``; without ``id``, every announced
  alert of the bed is acknowledged.
- ``cmd/silence``: ``{"bed": "bed1", "seconds": 60}``; audio pause, at most
  ``alarms.max_silence_s``.
- ``cmd/reading``: manual readings of a bed, any of ``consciousness`` (ACVPU letter),
  ``on_oxygen`` (true/false), ``hr_bpm``, ``spo2_pct``, ``rr_per_min``, ``sbp_mmhg``,
  ``dbp_mmhg``, ``temp_c``, ``glucose`` with ``glucose_unit`` (``mmol/L`` default, or
  ``mg/dL``), ``age_years`` (0-120, `edge.plausible.AGE_YEARS`); each number inside its
  `edge.plausible.PLAUSIBLE_RANGES` entry, DBP below SBP. They enter NEWS2 (edge/news2.py)
  and, for vitals the monitor does not measure, the learned models (edge/learned.py rule 10);
  glucose is recorded, no score uses it; the age sets the band alert explanations name
  (edge/explain.py).
- ``cmd/reload``: ``{}``; read the configuration file again and apply it between two ticks,
  or nothing of it (edge/reload.py says what a reload may change). SIGHUP does the same.
- All accept ``"request_id"`` (1-64 characters), echoed in the result on ``cmd/result`` so a
  sender can wait for its own answer, and ``"sent"``, the sender's UTC time
  (``2026-11-25T01:23:45.678Z``). The edge keeps a persistent MQTT session, so the broker
  holds commands sent while it was offline and delivers them when it reconnects; with
  ``sent`` given, one older than ``mqtt.command_max_age_s`` (or as far in the future: clocks
  that disagree) is refused, not applied late (`check_fresh`). The ``vigil-edge`` commands
  always send it.

Commands are never retained by senders; the MQTT adapter drops a retained one unread (a stale
retained "silence" must not pause tomorrow's alarms).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from edge.plausible import (
    AGE_YEARS,
    GLUCOSE_MG_DL,
    GLUCOSE_UNITS,
    MG_DL_PER_MMOL_L,
    PLAUSIBLE_RANGES,
    ImplausibleValueError,
)

__all__ = [
    "COMMANDS",
    "RESULT_LEAF",
    "Acknowledge",
    "BedCommand",
    "Command",
    "CommandError",
    "ManualReading",
    "Reload",
    "Silence",
    "check_fresh",
    "parse_command",
    "result_payload",
]

RESULT_LEAF: Final = "result"
"""``cmd/<RESULT_LEAF>``: where the edge answers each command."""
_MAX_PAYLOAD: Final = 4096
_MAX_TEXT: Final = 64


class CommandError(ValueError):
    """A command that cannot be applied; the message names the field and what was wrong."""


@dataclass(frozen=True, slots=True)
class Acknowledge:
    """Acknowledge one alert (``alert_id``) or every announced alert of ``bed``."""

    bed: str
    alert_id: str | None = None
    request_id: str | None = None
    sent_s: float | None = None


@dataclass(frozen=True, slots=True)
class Silence:
    """Pause the audio of ``bed``'s announced alerts for ``seconds`` (s)."""

    bed: str
    seconds: float
    request_id: str | None = None
    sent_s: float | None = None


@dataclass(frozen=True, slots=True)
class ManualReading:
    """Readings taken at the bedside, checked: field -> value (glucose as ``glucose_mmol_l``;
    ``consciousness`` an ACVPU letter; ``on_oxygen`` a bool; the rest floats in their units)."""

    bed: str
    values: Mapping[str, float | bool | str]
    request_id: str | None = None
    sent_s: float | None = None


@dataclass(frozen=True, slots=True)
class Reload:
    """Re-read the configuration file and apply it whole or not at all (edge/reload.py)."""

    request_id: str | None = None
    sent_s: float | None = None


BedCommand = Acknowledge | Silence | ManualReading
"""Commands the core applies to one bed's alarms or readings (`edge.runtime.EdgeCore.command`)."""
Command = BedCommand | Reload

COMMANDS: Final = ("ack", "silence", "reading", "reload")
"""Command names, the last topic level."""

_NUMERIC_READINGS: Final = (
    "hr_bpm", "spo2_pct", "rr_per_min", "sbp_mmhg", "dbp_mmhg", "temp_c",
)
_READING_KEYS: Final = {
    *_NUMERIC_READINGS, "consciousness", "on_oxygen", "glucose", "glucose_unit", "age_years",
}
_ACVPU: Final = ("A", "C", "V", "P", "U")
_COMMON: Final = {"request_id", "sent"}
_KEYS: Final = {
    "ack": {"bed", "id", *_COMMON},
    "silence": {"bed", "seconds", *_COMMON},
    "reading": {"bed", *_COMMON, *_READING_KEYS},
    "reload": {*_COMMON},
}
_SENT_RE: Final = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$")


def _text(body: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= _MAX_TEXT:
        raise CommandError(f"{key}: expected a string of 1-{_MAX_TEXT} characters, got {value!r}")
    return value


def parse_command(name: str, payload: bytes) -> Command:
    """The command ``name`` (last topic level) with its JSON ``payload``; CommandError if bad."""
    if name not in _KEYS:
        raise CommandError(f"unknown command {name!r}; commands: {', '.join(COMMANDS)}")
    if len(payload) > _MAX_PAYLOAD:
        raise CommandError(f"payload of {len(payload)} bytes; at most {_MAX_PAYLOAD}")
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CommandError(f"payload is not UTF-8 JSON: {exc}") from None
    if not isinstance(body, dict):
        raise CommandError(f"payload must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - _KEYS[name])
    if unknown:
        raise CommandError(f"unknown field(s) {', '.join(unknown)}; "
                           f"{name} takes {', '.join(sorted(_KEYS[name]))}")
    request_id = _text(body, "request_id", required=False)
    sent = _sent(body)
    if name == "reload":
        return Reload(request_id, sent)
    bed = _text(body, "bed", required=True)
    assert bed is not None
    if name == "ack":
        return Acknowledge(bed, _text(body, "id", required=False), request_id, sent)
    if name == "reading":
        return ManualReading(bed, _readings(body), request_id, sent)
    seconds = body.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not (
        math.isfinite(seconds) and seconds > 0
    ):
        raise CommandError(f"seconds: expected a number of seconds > 0, got {seconds!r}")
    return Silence(bed, float(seconds), request_id, sent)


def _sent(body: dict[str, Any]) -> float | None:
    value = body.get("sent")
    if value is None:
        return None
    if not isinstance(value, str) or not _SENT_RE.match(value):
        raise CommandError(f"sent: expected a UTC time like 2026-11-25T01:23:45.678Z, got "
                           f"{value!r}")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise CommandError(f"sent: {value!r} is not a valid date and time") from None


def check_fresh(cmd: Command, now_epoch_s: float, max_age_s: float) -> None:
    """Refuse (CommandError) a command whose ``sent`` time is more than ``max_age_s`` before or
    after ``now_epoch_s``: delivered late from the broker's session store, or sent by a clock
    that disagrees with the edge's. A command without ``sent`` passes."""
    if cmd.sent_s is None:
        return
    age = now_epoch_s - cmd.sent_s
    if age > max_age_s:
        raise CommandError(
            f"sent: {age:.0f} s ago, older than mqtt.command_max_age_s ({max_age_s:g} s); not "
            "applied (held by the broker while the edge was offline?); send it again"
        )
    if -age > max_age_s:
        raise CommandError(
            f"sent: {-age:.0f} s in the future; the sender's clock and the edge's differ by "
            f"more than mqtt.command_max_age_s ({max_age_s:g} s)"
        )

def _number(body: dict[str, Any], key: str) -> float:
    value = body[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandError(f"{key}: expected a number, got {value!r}")
    return float(value)


def _glucose_mmol_l(body: dict[str, Any]) -> float:
    unit = body.get("glucose_unit", GLUCOSE_UNITS[0])
    if unit not in GLUCOSE_UNITS:
        raise CommandError(f"glucose_unit: {unit!r}; use {' or '.join(GLUCOSE_UNITS)}")
    value = _number(body, "glucose")
    if unit == GLUCOSE_UNITS[0]:
        PLAUSIBLE_RANGES["glucose_mmol_l"].check(value, "glucose")
        return value
    GLUCOSE_MG_DL.check(value, "glucose")
    return value / MG_DL_PER_MMOL_L


def _measured(body: dict[str, Any]) -> dict[str, float]:
    """The numeric readings (and glucose, in mmol/L), each inside its plausible range."""
    out: dict[str, float] = {}
    try:
        for key in _NUMERIC_READINGS:
            if key in body:
                value = _number(body, key)
                PLAUSIBLE_RANGES[key].check(value, key)
                out[key] = value
        if "age_years" in body:
            out["age_years"] = _number(body, "age_years")
            AGE_YEARS.check(out["age_years"], "age_years")
        if "glucose" in body:
            out["glucose_mmol_l"] = _glucose_mmol_l(body)
        elif "glucose_unit" in body:
            raise CommandError("glucose_unit: given without glucose")
    except ImplausibleValueError as exc:
        raise CommandError(str(exc)) from None
    if "dbp_mmhg" in out and "sbp_mmhg" in out and not out["dbp_mmhg"] < out["sbp_mmhg"]:
        raise CommandError(f"dbp_mmhg: {out['dbp_mmhg']:g} must be below sbp_mmhg "
                           f"{out['sbp_mmhg']:g}")
    return out


def _readings(body: dict[str, Any]) -> dict[str, float | bool | str]:
    """The readings of a ``reading`` command, each checked (module doc)."""
    out: dict[str, float | bool | str] = dict(_measured(body))
    if "consciousness" in body:
        level = body["consciousness"]
        if not isinstance(level, str) or level.upper() not in _ACVPU:
            raise CommandError(f"consciousness: {level!r}; one of {', '.join(_ACVPU)} (ACVPU)")
        out["consciousness"] = level.upper()
    if "on_oxygen" in body:
        if not isinstance(body["on_oxygen"], bool):
            raise CommandError(f"on_oxygen: expected true or false, got {body['on_oxygen']!r}")
        out["on_oxygen"] = body["on_oxygen"]
    if not out:
        raise CommandError(f"no reading given; reading takes {', '.join(sorted(_READING_KEYS))}")
    return out


def result_payload(
    name: str, request_id: str | None, *, ok: bool, detail: str, events: int, time: str
) -> bytes:
    """The edge's answer to one command (published on ``cmd/result``, QoS 1, not retained)."""
    return json.dumps(
        {"command": name, "request_id": request_id, "ok": ok, "detail": detail,
         "events": events, "time": time},
        separators=(",", ":"),
    ).encode("utf-8")
