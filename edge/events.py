"""Typed values that travel between the edge's pure parts: priorities, detections, alert events.

A *detection* is what a detector sees right now ("SpO2 is below the high limit"); an *alert
event* is what the alarm manager decides to tell the world ("alert 3f2a... is new / escalated /
ended"). Keeping the two apart is what lets a detector be stateless and noisy while the published
stream stays calm: onset delay, escalation and clearing live in one place (`edge.alarms`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["DIRECTIONS", "AlertEvent", "Detection", "Driver", "EventType", "Priority"]


class Priority(enum.IntEnum):
    """Alarm priority (IEC 60601-1-8 uses the same three levels). Higher value = more urgent."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3

    @property
    def label(self) -> str:
        """Lower-case name as it appears in configuration files and JSON: low, medium, high."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Priority:
        """Inverse of `label`; raises ValueError for anything else."""
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown priority {text!r}") from None


class EventType(enum.StrEnum):
    """Lifecycle of one alert: one ``new``, zero or more ``update`` (escalation), one ``end``."""

    NEW = "new"
    UPDATE = "update"
    END = "end"


DIRECTIONS = ("high", "low", "rising", "falling", "on oxygen", "not alert")
"""How a driver reading departs from usual: a level above or below (``high``, ``low``), a trend
(``rising``, ``falling``, forecast or seen), or a NEWS2 manual item (``on oxygen``,
``not alert``)."""


@dataclass(frozen=True, slots=True)
class Driver:
    """One reading behind a detection and the direction it pushed (edge/explain.py).

    ``name``: a vital (``spo2_pct``) or ``consciousness`` / ``on_oxygen``; ``direction``: one of
    `DIRECTIONS`; ``value``: the reading in the vital's unit (an ACVPU letter for
    consciousness); ``to``: where a forecast puts it (same unit), for ``rising`` / ``falling``
    from the forecaster.
    """

    name: str
    direction: str
    value: float | str | None = None
    to: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Detection:
    """A condition a detector sees at this instant for one bed.

    ``kind`` is the stable condition name (``spo2_low``, ``probe_off``); one bed has at most one
    detection per kind at a time. ``values`` holds the measurements that triggered it, keyed with
    units (``spo2_pct``); ``thresholds`` the limits involved, keyed like the configuration.
    ``model`` names the detector and its version (``fixed-limits/1``,
    ``vitals-bundle/<bundle_version>``) so an alert can be traced to the logic that raised it.
    Learned detectors also fill ``scores`` (every model score behind the decision, keyed like
    the bundle's thresholds, e.g. ``iforest.score``) and ``votes`` (per ensemble member, whether
    it flagged the row); rule-based detectors leave both empty.
    """

    kind: str
    priority: Priority
    message: str
    model: str
    technical: bool = False
    values: Mapping[str, float] = field(default_factory=dict)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    scores: Mapping[str, float] = field(default_factory=dict)
    votes: Mapping[str, bool] = field(default_factory=dict)
    drivers: tuple[Driver, ...] = ()
    """The readings that drove it, most important first (edge/explain.py): the vital past a
    fixed limit, NEWS2's scoring parameters, the learned models' most unusual vitals."""
    hold_s: float = 0.0
    """Extra onset delay (s) on top of ``alarms.onset_s``: the LSTM artefact gate sets it on a
    fixed-limit detection whose breach the trend does not support (`edge.runtime.EdgeCore`),
    bounded by ``model.artefact_hold_s``; 0 for everything else."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertEvent:
    """One step in an alert's life, ready to be serialised.

    ``id`` is a UUID shared by every event of one alert; ``seq`` counts that alert's events
    (0 for ``new``), so ``(id, seq)`` identifies a message and subscribers can de-duplicate
    re-deliveries. Times are monotonic seconds of the edge's clock; the adapter converts them
    to wall-clock UTC when it publishes. ``scores`` and ``votes`` are those of the detection
    (empty for fixed limits and technical alerts). ``reason`` says why the event was emitted,
    ``acknowledged`` / ``latched`` / ``silenced_until_s`` the acknowledgement state
    (edge/alarms.py rules 7-10). ``drivers`` come from the detection; ``explanation`` is the
    plain-language sentence `edge.explain.explain` makes of them and of the patient's age band.
    """

    id: str
    seq: int
    event: EventType
    bed: str
    kind: str
    priority: Priority
    message: str
    model: str
    technical: bool
    values: Mapping[str, float]
    thresholds: Mapping[str, float]
    time_s: float
    started_s: float
    scores: Mapping[str, float] = field(default_factory=dict)
    votes: Mapping[str, bool] = field(default_factory=dict)
    reason: str = ""
    acknowledged: bool = False
    latched: bool = False
    silenced_until_s: float | None = None
    drivers: tuple[Driver, ...] = ()
    explanation: str = ""
