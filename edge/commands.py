"""Commands to the edge (acknowledge, audio pause): their wire form, parsed and checked.

Why a module of its own: commands arrive from the network (MQTT command topics, sent by the
``vigil-edge ack`` / ``silence`` CLI or any client), so every field is untrusted. Parsing is
pure: bytes in, a typed command or `CommandError` out, naming the field. The runtime applies
a parsed command to the alarm manager and publishes the outcome (`result_payload`).

Wire form: topic ``<prefix>/<device>/cmd/<name>``; payload one JSON object, UTF-8.

- ``cmd/ack``: ``{"bed": "bed1", "id": "<alert id>"}``; without ``id``, every announced
  alert of the bed is acknowledged.
- ``cmd/silence``: ``{"bed": "bed1", "seconds": 60}``; audio pause, at most
  ``alarms.max_silence_s``.
- Both accept ``"request_id"`` (1-64 characters), echoed in the result on ``cmd/result`` so a
  sender can wait for its own answer.

Commands are never retained by senders; the MQTT adapter drops a retained one unread (a stale
retained "silence" must not pause tomorrow's alarms).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "COMMANDS",
    "RESULT_LEAF",
    "Acknowledge",
    "Command",
    "CommandError",
    "Silence",
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


@dataclass(frozen=True, slots=True)
class Silence:
    """Pause the audio of ``bed``'s announced alerts for ``seconds`` (s)."""

    bed: str
    seconds: float
    request_id: str | None = None


Command = Acknowledge | Silence

COMMANDS: Final = ("ack", "silence")
"""Command names, the last topic level."""

_KEYS: Final = {"ack": {"bed", "id", "request_id"}, "silence": {"bed", "seconds", "request_id"}}


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
    bed = _text(body, "bed", required=True)
    assert bed is not None
    request_id = _text(body, "request_id", required=False)
    if name == "ack":
        return Acknowledge(bed, _text(body, "id", required=False), request_id)
    seconds = body.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not (
        math.isfinite(seconds) and seconds > 0
    ):
        raise CommandError(f"seconds: expected a number of seconds > 0, got {seconds!r}")
    return Silence(bed, float(seconds), request_id)


def result_payload(
    name: str, request_id: str | None, *, ok: bool, detail: str, events: int, time: str
) -> bytes:
    """The edge's answer to one command (published on ``cmd/result``, QoS 1, not retained)."""
    return json.dumps(
        {"command": name, "request_id": request_id, "ok": ok, "detail": detail,
         "events": events, "time": time},
        separators=(",", ":"),
    ).encode("utf-8")
