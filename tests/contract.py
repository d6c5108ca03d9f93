"""The MQTT contract (docs/mqtt.md, docs/schemas/): which schema a topic's payload must meet.

Used by the collectors of every MQTT test (conftest.py): each message they received on a
``vigil/...`` topic is validated at teardown, so the contract is checked against what the real
edge really published, not against hand-written samples.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from edge.transfer import decode_chunk

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "docs" / "schemas"
PREFIX = "vigil"

# Topic below <prefix>/<device>/ -> schema file stem ("*" = one level, e.g. a bed id).
TOPICS: dict[str, str] = {
    "vitals": "vitals",
    "alert": "alert",
    "status": "status",
    "news2/*": "news2",
    "state/*": "state",
    "model/state": "model-state",
    "model/offer": "model-offer",
    "model/chunk": "model-chunk",
    "model/progress": "model-progress",
    "cmd/ack": "cmd-ack",
    "cmd/silence": "cmd-silence",
    "cmd/reading": "cmd-reading",
    "cmd/reload": "cmd-reload",
    "cmd/result": "cmd-result",
}


@cache
def validator(stem: str) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / f"{stem}.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def schema_for(topic: str) -> str | None:
    """Schema stem of a ``vigil/<device>/...`` topic; None when the contract has no such topic."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != PREFIX:
        return None
    rest = parts[2:]
    for pattern, stem in TOPICS.items():
        want = pattern.split("/")
        if len(want) == len(rest) and all(w in ("*", r) for w, r in zip(want, rest, strict=True)):
            return stem
    return None


def errors(topic: str, payload: bytes) -> list[str]:
    """Why ``payload`` breaks the contract of ``topic`` (empty when it keeps it).

    An empty payload is allowed on command topics only: it clears a retained message.
    """
    stem = schema_for(topic)
    if stem is None:
        return [f"{topic}: not a topic of the contract (docs/mqtt.md)"]
    if not payload:
        return [] if stem.startswith("cmd-") else [f"{topic}: empty payload"]
    if stem == "model-chunk":  # binary by design (docs/flashing.md)
        try:
            decode_chunk(payload)
        except ValueError as exc:
            return [f"{topic}: not a chunk ({exc})"]
        return []
    try:
        data: Any = json.loads(payload)
    except ValueError as exc:
        return [f"{topic}: not JSON ({exc})"]
    return [f"{topic}: {e.json_path}: {e.message}" for e in validator(stem).iter_errors(data)]
