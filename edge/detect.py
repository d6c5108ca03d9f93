"""Detectors: look at one bed's state at time ``now`` and say which conditions are present.

A detector is stateless from the alarm manager's point of view: it reports what it sees on every
call and nothing else (no onset delay, no de-duplication, no memory of alerts). That is what lets
the learned models of later work plug in next to the fixed limits: anything with a ``model``
version string and an ``update(bed, now) -> list[Detection]`` method is a `Detector`.

Rules for every detector:

- Never raise a physiological detection from a value the board marked not valid, nor from
  vitals older than ``alarms.stale_s`` (``BedState.fresh_vitals`` enforces both).
- Report at most one detection per kind, at its most urgent crossed priority.
"""

from __future__ import annotations

import logging
from typing import Final, Protocol, runtime_checkable

from edge.bedstate import BedState
from edge.config import (
    NEWS2_KIND,
    AlarmConfig,
    EcgConfig,
    EdgeConfig,
    LimitsConfig,
    News2Config,
    TechnicalConfig,
)
from edge.ecg import EcgDetector
from edge.events import Detection, Driver
from edge.news2 import News2, direction
from firmware_bridge.frames import StatusFlag

__all__ = [
    "Detector", "FixedLimitsDetector", "News2Detector", "TechnicalDetector",
    "configured_detectors", "default_detectors",
    "news2_drivers",
]

_log = logging.getLogger(__name__)


@runtime_checkable
class Detector(Protocol):
    """Anything that turns a bed's state into detections; ``model`` names it and its version."""

    @property
    def model(self) -> str:
        """Detector name and version as published in alerts, e.g. ``fixed-limits/1``."""
        ...

    def update(self, bed: BedState, now: float) -> list[Detection]:
        """Conditions present for ``bed`` at edge monotonic time ``now`` (s)."""
        ...


class FixedLimitsDetector:
    """Compares the latest valid vitals with the configured clinical limits."""

    MODEL: Final = "fixed-limits/1"

    def __init__(self, limits: LimitsConfig, alarms: AlarmConfig) -> None:
        self._limits = limits
        self._stale_s = alarms.stale_s

    @property
    def model(self) -> str:
        """See `Detector.model`."""
        return self.MODEL

    def update(self, bed: BedState, now: float) -> list[Detection]:
        """One detection per crossed limit, from vitals no older than ``alarms.stale_s``."""
        sample = bed.fresh_vitals(now, self._stale_s)
        if sample is None:
            return []
        out: list[Detection] = []
        for rule in self._limits.rules:
            spec = rule.spec
            value = sample.get(spec.vital)
            if value is None:
                continue
            crossed = rule.crossed_all(value)
            if not crossed:
                continue
            relation = "<" if spec.direction == "low" else ">"
            # Every crossed limit is named with its level, so the text stays true while the
            # alarm manager still announces a lower priority (its onset delay per level).
            limits = ", ".join(
                f"{relation} {t:g} {spec.unit} ({p.label})" for p, t in reversed(crossed)
            )
            out.append(
                Detection(
                    kind=spec.kind,
                    priority=crossed[0][0],
                    message=f"{spec.label} {value:g} {spec.unit} {limits}",
                    model=self.MODEL,
                    values={spec.vital: value},
                    thresholds={f"{spec.key}.{p.label}": t for p, t in rule.thresholds},
                    drivers=(Driver(spec.vital, spec.direction, value),),
                )
            )
        return out


_FLAG_KINDS: Final = (
    (StatusFlag.LEAD_OFF, "lead_off", "ECG lead off"),
    (StatusFlag.PROBE_OFF, "probe_off", "SpO2 probe off"),
    (StatusFlag.SENSOR_FAULT, "sensor_fault", "sensor fault"),
    (StatusFlag.NIBP_FAULT, "nibp_fault", "NIBP fault"),
    (StatusFlag.TEMP_PROBE_OFF, "temp_probe_off", "temperature probe off"),
    (StatusFlag.BATTERY_LOW, "battery_low", "board battery low"),
)


class TechnicalDetector:
    """Technical conditions: STATUS flags from the board, and a silent link.

    While the link is lost the last STATUS is stale, so only ``link_lost`` is reported.
    """

    MODEL: Final = "board-status/1"

    def __init__(self, technical: TechnicalConfig, alarms: AlarmConfig) -> None:
        self._technical = technical
        self._link_timeout_s = alarms.link_timeout_s

    @property
    def model(self) -> str:
        """See `Detector.model`."""
        return self.MODEL

    def update(self, bed: BedState, now: float) -> list[Detection]:
        """One detection per active technical condition with a priority that is not off."""
        since = bed.last_frame_s if bed.last_frame_s is not None else bed.created_s
        silent_s = now - since
        if silent_s > self._link_timeout_s:
            priority = self._technical.priority("link_lost")
            if priority is None:
                return []
            what = "no frame received" if bed.last_frame_s is None else "no frame"
            return [
                Detection(
                    kind="link_lost",
                    priority=priority,
                    message=f"board silent: {what} for {silent_s:.0f} s",
                    model=self.MODEL,
                    technical=True,
                    values={"silent_s": round(silent_s, 1)},
                    thresholds={"alarms.link_timeout_s": self._link_timeout_s},
                )
            ]
        status = bed.status
        if status is None:
            return []
        out: list[Detection] = []
        for flag, kind, text in _FLAG_KINDS:
            if not status.flags & flag:
                continue
            priority = self._technical.priority(kind)
            if priority is None:
                continue
            values: dict[str, float] = {}
            message = text
            if flag is StatusFlag.SENSOR_FAULT and status.fault_code:
                values["fault_code"] = float(status.fault_code)
                message = f"{text} (code {status.fault_code})"
            if flag is StatusFlag.BATTERY_LOW and status.battery_pct is not None:
                values["battery_pct"] = float(status.battery_pct)
                message = f"{text} ({status.battery_pct} %)"
            out.append(
                Detection(
                    kind=kind,
                    priority=priority,
                    message=message,
                    model=self.MODEL,
                    technical=True,
                    values=values,
                )
            )
        return out


class News2Detector:
    """``news2`` (medium) while the bed's latest NEWS2 needs a response (edge/news2.py rule 4).

    The score is computed by `edge.runtime.EdgeCore.news2_due` once per ``news2.interval_s``;
    one older than two intervals is not acted on (scoring has stopped: no data).
    """

    MODEL: Final = "news2/rcp-2017"

    def __init__(self, news2: News2Config) -> None:
        self._max_age_s = 2.0 * news2.interval_s

    @property
    def model(self) -> str:
        """See `Detector.model`."""
        return self.MODEL

    def update(self, bed: BedState, now: float) -> list[Detection]:
        """The bed's NEWS2 as a detection when its response is low-medium or above."""
        if bed.news2 is None:
            return []
        result, scored_s = bed.news2
        priority = result.alarm_priority
        if priority is None or now - scored_s > self._max_age_s:
            return []
        missing = f"; not scored: {', '.join(result.missing)}" if result.missing else ""
        red = f"; 3 in {', '.join(result.red)}" if result.red else ""
        return [
            Detection(
                kind=NEWS2_KIND,
                priority=priority,
                message=(f"NEWS2 {result.total} ({result.response.value} clinical risk{red}): "
                         f"{result.response.action}{missing}"),
                model=self.MODEL,
                values={"news2.total": float(result.total),
                        **{f"news2.{k}": float(v) for k, v in result.subscores.items()}},
                thresholds={"news2.urgent_total": 5.0, "news2.emergency_total": 7.0},
                drivers=news2_drivers(result),
            )
        ]


def news2_drivers(result: News2) -> tuple[Driver, ...]:
    """The parameters that scored, highest sub-score first, with their direction."""
    out: list[Driver] = []
    for name, score in sorted(result.subscores.items(), key=lambda kv: -kv[1]):
        value = result.values.get(name)
        if score == 0 or value is None:
            continue
        if name == "on_oxygen":
            out.append(Driver(name, "on oxygen"))
        elif name == "consciousness":
            out.append(Driver(name, "not alert", str(value)))
        else:
            v = float(value)
            out.append(Driver(name, direction(name, v, scale=result.scale), v))
    return tuple(out)


def default_detectors(
    limits: LimitsConfig, technical: TechnicalConfig, alarms: AlarmConfig,
    news2: News2Config | None = None, ecg: EcgConfig | None = None,
) -> list[Detector]:
    """The detectors the runtime uses when none are given: technical first, then limits, then
    NEWS2 when its configuration is given, then the ECG head when enabled (edge/ecg.py)."""
    _log.debug("using default detectors")
    out: list[Detector] = [
        TechnicalDetector(technical, alarms), FixedLimitsDetector(limits, alarms)
    ]
    if news2 is not None:
        out.append(News2Detector(news2))
    if ecg is not None and ecg.enabled:
        out.append(EcgDetector(ecg.rhythm()))
    return out


def configured_detectors(config: EdgeConfig) -> list[Detector]:
    """`default_detectors` of a whole configuration: NEWS2 and, when enabled, the ECG head."""
    return default_detectors(config.limits, config.technical, config.alarms, config.news2,
                             config.ecg)

