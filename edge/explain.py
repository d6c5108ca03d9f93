"""Plain-language explanations of alerts: which readings drove one, which way, the age band.

Why: ``iforest 0.41 < 0.45`` tells a nurse nothing; "Unusual combination of vital signs: HR
high (128 bpm), RR rising (26 /min). Patient aged 70-79 years." says what to look at. Pure: an
alert event (kind, model, values, drivers) and the bed's recorded age in, one short text out.

Rules
-----

1. **Headline from what raised it**: a fixed alarm limit, NEWS2 (with its total), the anomaly
   ensemble, the risk model, the forecaster, or a technical condition, which is said to be
   about the equipment, not the patient.
2. **Drivers** (`edge.events.Driver`) in the detector's order, at most `MAX_DRIVERS`, as
   ``<label> <direction> (<value> <unit>)``; a forecast reads ``SpO2 falling (94 → 89 %)``
   and a NEWS2 parameter adds its sub-score. Where the drivers come from is each detector's
   business (edge/detect.py, edge/learned.py); a learned alert with none says that no single
   reading stands out.
3. **Age band** when an age was recorded (manual reading ``age_years``): decades from 20
   (``70-79 years``), ``16-19``, ``under 16``, ``90 or over``. Under 16 adds a caution: the
   adult limits, NEWS2 and the bundle's models are not validated for children.
4. Technical alerts get neither drivers nor age: they describe equipment.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

from edge.config import LEARNED_KINDS, NEWS2_KIND
from edge.events import AlertEvent, Driver

__all__ = ["MAX_DRIVERS", "VITAL_LABELS", "age_band", "explain"]

MAX_DRIVERS: Final = 3

VITAL_LABELS: Final[Mapping[str, tuple[str, str]]] = {
    "hr_bpm": ("HR", "bpm"),
    "spo2_pct": ("SpO2", "%"),
    "rr_per_min": ("RR", "/min"),
    "sbp_mmhg": ("SBP", "mmHg"),
    "dbp_mmhg": ("DBP", "mmHg"),
    "map_mmhg": ("MAP", "mmHg"),
    "temp_c": ("Temp", "°C"),
    "ecg_hr_bpm": ("ECG HR", "bpm"),
}
"""Vital key -> (short label, unit) as a bedside screen shows them."""

_ITEM_LABELS: Final = {"consciousness": "consciousness", "on_oxygen": "supplemental oxygen"}
_HEADLINES: Final = {
    "ensemble_anomaly": "Unusual combination of vital signs (anomaly detectors agree)",
    "risk_high": "High risk of deterioration (risk model)",
    "early_warning": "Deterioration forecast within minutes (trend model)",
}
_CHILD_AGE_Y: Final = 16
_ADULT_DECADES_FROM_Y: Final = 20
_OLDEST_BAND_Y: Final = 90


def age_band(age_years: float) -> str:
    """``70-79 years``, ``16-19 years``, ``under 16 years`` or ``90 or over`` (rule 3)."""
    if age_years < _CHILD_AGE_Y:
        return "under 16 years"
    if age_years < _ADULT_DECADES_FROM_Y:
        return "16-19 years"
    if age_years >= _OLDEST_BAND_Y:
        return "90 years or over"
    low = int(age_years // 10 * 10)
    return f"{low}-{low + 9} years"


def _number(value: float, unit: str) -> str:
    return f"{value:.3g}" if unit == "" else f"{value:.4g} {unit}"


def _phrase(d: Driver, values: Mapping[str, float]) -> str:
    label, unit = VITAL_LABELS.get(d.name, (_ITEM_LABELS.get(d.name, d.name), ""))
    text = label if d.direction == "on oxygen" else f"{label} {d.direction}"
    shown: list[str] = []
    if isinstance(d.value, str):
        shown.append(d.value)
    elif d.value is not None and math.isfinite(d.value):
        if d.to is not None and math.isfinite(d.to):
            shown.append(f"{d.value:.4g} → {d.to:.4g}" + (f" {unit}" if unit else ""))
        else:
            shown.append(_number(d.value, unit))
    score = values.get(f"news2.{d.name}")
    if score is not None:
        shown.append(f"scores {score:.0f}")
    return f"{text} ({', '.join(shown)})" if shown else text


def _headline(event: AlertEvent) -> str:
    if event.kind == NEWS2_KIND:
        total = event.values.get("news2.total")
        return "NEWS2 needs a response" if total is None else f"NEWS2 total {total:.0f}"
    if event.kind in LEARNED_KINDS:
        return _HEADLINES.get(event.kind, "Learned model alert")
    return "Alarm limit crossed"


def explain(event: AlertEvent, age_years: float | None = None) -> str:
    """One or two short sentences for ``event`` (module rules); ``age_years`` None = unknown."""
    if event.technical:
        return f"Technical alarm about the equipment, not the patient: {event.message}."
    phrases = [_phrase(d, event.values) for d in event.drivers[:MAX_DRIVERS]]
    if phrases:
        text = f"{_headline(event)}: {', '.join(phrases)}."
    elif event.kind in LEARNED_KINDS:
        text = f"{_headline(event)}; no single reading stands out, it is the combination."
    else:
        text = f"{_headline(event)}: {event.message}."
    if age_years is not None:
        text += f" Patient aged {age_band(age_years)}."
        if age_years < _CHILD_AGE_Y:
            text += (" Caution: adult alarm limits, NEWS2 and the learned models are not "
                     "validated for children.")
    return text
