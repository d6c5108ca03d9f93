"""National Early Warning Score 2 (Royal College of Physicians, 2017): pure scoring.

Why here and pure: the edge scores NEWS2 once a minute from the latest valid vitals plus the
manual readings the board cannot measure (consciousness, supplemental oxygen); the bands are a
published clinical table, so they live in one place, as data, and every boundary is tested.

Rules
-----
1. **Bands** (`BANDS`): RCP NEWS2 Chart 1. SpO2 has two scales: scale 1 for most patients;
   scale 2 (target 88-92 %) for hypercapnic respiratory failure, chosen per bed by a clinician,
   where 93 % or more scores 0 on air but 1-3 on oxygen.
2. **Resolution.** The chart is read in whole units (temperature in 0.1 degC). A monitor
   reading is first rounded to that resolution, half away from zero (91.5 % -> 92 %,
   36.05 degC -> 36.1 degC), then banded, so no value falls between two bands.
3. **Missing.** A parameter that is None or NaN is not scored; it is listed in ``missing`` and
   the result is not ``complete``: its total is then a lower bound, and the response level is
   what the scored parameters already demand (a low score is never reported as reassuring
   when parameters are missing: ``complete`` says so). SpO2 on scale 2 needs the oxygen
   status only at 93 % or more.
4. **Response** (`Response`), from the RCP clinical-risk table: total >= 7 high (emergency
   response); 5-6 medium (urgent response); a single parameter scoring 3 with a total below 5
   low-medium (urgent ward review); otherwise low. The alarm priority for a NEWS2 alert is
   medium from low-medium upwards (`News2.alarm_priority`).
5. **Plausibility.** A value outside its `edge.plausible.PLAUSIBLE_RANGES` entry (e.g. a
   negative rate) is an input error, not a score: `ImplausibleValueError` names the field and
   the range. One exception: a respiration rate from 0 up to the range's 1 /min (apnoea, or
   a monitor's fractional rate ramping into it) is scored 3, although no alarm limit or typed
   rate may be below 1.

Units: respiration rate breaths/min, SpO2 %, systolic BP mmHg, pulse beats/min, temperature
degC.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from edge.events import Priority
from edge.plausible import PLAUSIBLE_RANGES

__all__ = [
    "BANDS",
    "Consciousness",
    "News2",
    "News2Inputs",
    "Response",
    "direction",
    "news2",
    "news2_inputs",
    "subscore",
]


class Consciousness(enum.StrEnum):
    """ACVPU: alert, or new Confusion, responds to Voice, to Pain, Unresponsive."""

    ALERT = "A"
    CONFUSION = "C"
    VOICE = "V"
    PAIN = "P"
    UNRESPONSIVE = "U"


class Response(enum.StrEnum):
    """RCP clinical risk and the response it triggers (rule 4)."""

    LOW = "low"
    LOW_MEDIUM = "low-medium"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def action(self) -> str:
        """The RCP response, in words for a nurse's screen."""
        return _ACTIONS[self]


_ACTIONS: Final[Mapping[Response, str]] = {
    Response.LOW: "ward-based response: continue routine monitoring",
    Response.LOW_MEDIUM: "urgent ward-based review (a single parameter scores 3)",
    Response.MEDIUM: "urgent review by a clinician competent in acute illness",
    Response.HIGH: "emergency response: critical-care team assessment",
}

# (lowest value of the band, in chart units, score), ascending; a value takes the last band
# whose lower edge it reaches. Chart units: whole units, temperature tenths of a degC.
BANDS: Final[Mapping[str, tuple[tuple[int, int], ...]]] = {
    "rr_per_min": ((-10**9, 3), (9, 1), (12, 0), (21, 2), (25, 3)),
    "spo2_scale1_pct": ((-10**9, 3), (92, 2), (94, 1), (96, 0)),
    "spo2_scale2_pct": ((-10**9, 3), (84, 2), (86, 1), (88, 0)),
    "spo2_scale2_on_oxygen_pct": ((93, 1), (95, 2), (97, 3)),
    "sbp_mmhg": ((-10**9, 3), (91, 2), (101, 1), (111, 0), (220, 3)),
    "hr_bpm": ((-10**9, 3), (41, 1), (51, 0), (91, 1), (111, 2), (131, 3)),
    "temp_dc": ((-10**9, 3), (351, 1), (361, 0), (381, 1), (391, 2)),
}
"""RCP NEWS2 Chart 1 as data (rule 1). ``temp_dc`` is in tenths of a degC."""


_SPO2_SCALE2_OXYGEN_FROM: Final = 93
_OXYGEN_SCORE: Final = 2
_RED: Final = 3
_MEDIUM_TOTAL: Final = 5
_HIGH_TOTAL: Final = 7


def _chart(value: float, tenths: bool = False) -> int:
    """Rule 2: the value in chart units, rounded half away from zero."""
    q = Decimal(repr(float(value))) * (10 if tenths else 1)
    return int(q.to_integral_value(rounding=ROUND_HALF_UP))


def _band(table: tuple[tuple[int, int], ...], chart_value: int) -> int:
    score = table[0][1]
    for lower, s in table:
        if chart_value >= lower:
            score = s
    return score


def subscore(parameter: str, value: float, *, scale: int = 1, on_oxygen: bool = False) -> int:
    """Score of one measured parameter (rules 1-2).

    ``parameter``: ``rr_per_min``, ``spo2_pct``, ``sbp_mmhg``, ``hr_bpm`` or ``temp_c``.
    ``scale`` (SpO2 only): 1 or 2; ``on_oxygen`` matters only on scale 2 at 93 % or more.
    """
    if parameter == "spo2_pct":
        v = _chart(value)
        if scale == 1:
            return _band(BANDS["spo2_scale1_pct"], v)
        if scale != 2:
            raise ValueError(f"SpO2 scale must be 1 or 2, got {scale}")
        if v >= _SPO2_SCALE2_OXYGEN_FROM:
            return _band(BANDS["spo2_scale2_on_oxygen_pct"], v) if on_oxygen else 0
        return _band(BANDS["spo2_scale2_pct"], v)
    if parameter == "temp_c":
        return _band(BANDS["temp_dc"], _chart(value, tenths=True))
    if parameter not in BANDS:
        raise ValueError(f"unknown NEWS2 parameter {parameter!r}")
    return _band(BANDS[parameter], _chart(value))


@dataclass(frozen=True, slots=True, kw_only=True)
class News2Inputs:
    """The latest valid readings; None (or NaN) = not available (rule 3).

    ``on_oxygen``: supplemental oxygen (manual reading); ``consciousness``: ACVPU (manual).
    """

    rr_per_min: float | None = None
    spo2_pct: float | None = None
    on_oxygen: bool | None = None
    sbp_mmhg: float | None = None
    hr_bpm: float | None = None
    consciousness: Consciousness | None = None
    temp_c: float | None = None


@dataclass(frozen=True, slots=True)
class News2:
    """A scored set: total, sub-scores of the scored parameters, what was missing, response."""

    total: int
    subscores: Mapping[str, int]
    missing: tuple[str, ...]
    scale: int
    response: Response
    red: tuple[str, ...] = field(default_factory=tuple)
    """Parameters scoring 3."""
    values: Mapping[str, float | str | bool] = field(default_factory=dict, compare=False)
    """The scored inputs (consciousness as its ACVPU letter), for explanations."""

    @property
    def complete(self) -> bool:
        """Every parameter was scored (else the total is a lower bound)."""
        return not self.missing

    @property
    def alarm_priority(self) -> Priority | None:
        """Medium from low-medium upwards (rule 4); None when no NEWS2 alert is due."""
        return None if self.response is Response.LOW else Priority.MEDIUM


def _present(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def _check(name: str, value: float) -> None:
    if name == "rr_per_min" and 0.0 <= value < PLAUSIBLE_RANGES[name].low:
        # Apnoea, or a monitor's fractional rate ramping into it (0.2 /min): below the range a
        # limit or a typed rate may take, but scored, as <= 8 (rule 5).
        return
    PLAUSIBLE_RANGES[name].check(value, name)


def _score_spo2(inputs: News2Inputs, scale: int, sub: dict[str, int], missing: list[str]) -> None:
    spo2 = inputs.spo2_pct
    if spo2 is None or math.isnan(spo2):
        missing.append("spo2_pct")
        return
    _check("spo2_pct", spo2)
    if scale == 2 and _chart(spo2) >= _SPO2_SCALE2_OXYGEN_FROM and inputs.on_oxygen is None:
        missing.append("spo2_pct")  # scale 2 at >= 93 %: unscorable without the O2 status
        return
    sub["spo2_pct"] = subscore("spo2_pct", spo2, scale=scale, on_oxygen=bool(inputs.on_oxygen))


def _response(total: int, red: tuple[str, ...]) -> Response:
    if total >= _HIGH_TOTAL:
        return Response.HIGH
    if total >= _MEDIUM_TOTAL:
        return Response.MEDIUM
    return Response.LOW_MEDIUM if red else Response.LOW


def news2(inputs: News2Inputs, *, scale: int = 1) -> News2:
    """Score ``inputs`` on SpO2 ``scale`` 1 or 2 (module rules)."""
    if scale not in (1, 2):
        raise ValueError(f"SpO2 scale must be 1 or 2, got {scale}")
    sub: dict[str, int] = {}
    missing: list[str] = []
    for name in ("rr_per_min", "sbp_mmhg", "hr_bpm", "temp_c"):
        value = getattr(inputs, name)
        if not _present(value):
            missing.append(name)
            continue
        _check(name, value)
        sub[name] = subscore(name, value)
    _score_spo2(inputs, scale, sub, missing)
    if inputs.on_oxygen is None:
        missing.append("on_oxygen")
    else:
        sub["on_oxygen"] = _OXYGEN_SCORE if inputs.on_oxygen else 0
    if inputs.consciousness is None:
        missing.append("consciousness")
    else:
        sub["consciousness"] = 0 if inputs.consciousness is Consciousness.ALERT else _RED
    total = sum(sub.values())
    red = tuple(name for name, s in sub.items() if s >= _RED)
    scored = {name: getattr(inputs, name) for name in sub}
    if "consciousness" in scored:
        scored["consciousness"] = Consciousness(scored["consciousness"]).value
    return News2(total, sub, tuple(missing), scale, _response(total, red), red, scored)


def direction(parameter: str, value: float, *, scale: int = 1) -> str:
    """``low`` or ``high``: the side of the score-0 band ``value`` is on (for a parameter that
    scored). SpO2 on scale 1 only scores low; on scale 2 at 93 % or more (on oxygen) it is high.
    """
    if parameter == "spo2_pct":
        return "high" if scale == 2 and _chart(value) >= _SPO2_SCALE2_OXYGEN_FROM else "low"
    temp = parameter == "temp_c"
    table = BANDS["temp_dc" if temp else parameter]
    zero = next(lower for lower, s in table if s == 0)
    return "low" if _chart(value, tenths=temp) < zero else "high"


_MEASURED: Final = ("rr_per_min", "spo2_pct", "sbp_mmhg", "hr_bpm", "temp_c")


def news2_inputs(
    monitor: Mapping[str, tuple[float, float]],
    manual: Mapping[str, tuple[float | bool | str, float]],
    now: float,
    *,
    vitals_max_age_s: float,
    manual_max_age_s: float,
) -> tuple[News2Inputs, dict[str, str]]:
    """The inputs to score at ``now`` (s), and where each came from (``monitor`` / ``manual``).

    ``monitor``: vital -> (latest valid value, its time); ``manual``: field -> (value, time),
    consciousness an ACVPU letter and on_oxygen a bool. For each measured parameter the newer
    of the two is used, each only within its maximum age; consciousness and oxygen come only
    from manual readings.
    """
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for name in _MEASURED:
        best: tuple[float, float, str] | None = None
        m = monitor.get(name)
        if m is not None and now - m[1] <= vitals_max_age_s:
            best = (m[0], m[1], "monitor")
        h = manual.get(name)
        if h is not None and now - h[1] <= manual_max_age_s and (best is None or h[1] > best[1]):
            best = (float(h[0]), h[1], "manual")
        if best is not None:
            values[name], sources[name] = best[0], best[2]
    for name in ("consciousness", "on_oxygen"):
        h = manual.get(name)
        if h is not None and now - h[1] <= manual_max_age_s:
            values[name] = Consciousness(str(h[0])) if name == "consciousness" else bool(h[0])
            sources[name] = "manual"
    return News2Inputs(**values), sources  # type: ignore[arg-type]

