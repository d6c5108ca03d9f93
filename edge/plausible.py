"""Plausible ranges of bedside readings: what a typed or transmitted value may be.

Why one module: a value typed at the bedside (`vigil-edge assess`, a manual reading over MQTT)
and a value scored by NEWS2 are judged by the same ranges, and a configured alarm limit must
lie inside them (`edge.config`). The ranges are wide on purpose: they catch typos and wrong
units (degF, mg/dL), not abnormal patients; a deranged but real value must pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from edge.config import HR_RANGE_BPM, RR_RANGE_PER_MIN, SPO2_RANGE_PCT, TEMP_RANGE_C

__all__ = [
    "AGE_YEARS",
    "GLUCOSE_MG_DL",
    "GLUCOSE_UNITS",
    "MG_DL_PER_MMOL_L",
    "PLAUSIBLE_RANGES",
    "ImplausibleValueError",
    "PlausibleRange",
]


_EN_DASH: Final = "\u2013"
"""Between the bounds of a range in messages (``50\u2013100 %``), as typeset clinical text."""


class ImplausibleValueError(ValueError):
    """A value outside its plausible range (or not a number); the message names the field.

    ``flag`` names the offending field as its sender wrote it: a command-line flag (``--spo2``)
    or a message field (``spo2_pct``); ``value`` is the value as given (text or number).
    """

    def __init__(self, flag: str, value: object, message: str) -> None:
        super().__init__(f"{flag}: {message}")
        self.flag = flag
        self.value = value


# ----------------------------------------------------------------------------- plausible ranges


@dataclass(frozen=True, slots=True)
class PlausibleRange:
    """Values a person could type for one field and mean it (bounds included).

    Wide on purpose: they catch typos and wrong units (°F, mg/dL), not abnormal patients; a
    deranged but real value must pass so that the risk model can see it. ``why``: the source.
    """

    key: str
    """Key in `parse_manual`'s input (the flag without its dashes)."""
    label: str
    unit: str
    low: float
    high: float
    why: str
    hint_high: str = ""
    """Appended to an error for a value above the range: the likely mistake (a unit)."""
    hint_low: str = ""
    """Appended to an error for a value below the range."""

    @property
    def flag(self) -> str:
        """The command-line flag, ``--hr``."""
        return f"--{self.key.replace('_', '-')}"

    def describe(self) -> str:
        """``50\u2013100 %``: the range with its unit, as error messages show it."""
        return f"{self.low:g}{_EN_DASH}{self.high:g} {self.unit}"

    def check(self, value: float, name: str | None = None) -> None:
        """Raise `ImplausibleValueError` unless ``value`` is finite and within [low, high].

        ``name``: how the error names the field (default: the command-line flag).
        """
        if not (math.isfinite(value) and self.low <= value <= self.high):
            hint = (
                self.hint_high if value > self.high
                else self.hint_low if value < self.low
                else ""
            )
            hint = f" ({hint})" if hint else ""
            raise ImplausibleValueError(
                name or self.flag, value,
                f"{value:g} {self.unit} is outside the plausible range {self.describe()}{hint}",
            )


MG_DL_PER_MMOL_L: Final = 18.016
"""Glucose mg/dL per mmol/L: the molar mass of glucose, 180.16 g/mol, / 10 (dL per L)."""

GLUCOSE_UNITS: Final = ("mmol/L", "mg/dL")
"""Accepted ``glucose_unit`` values (matched case-insensitively); the first is the default."""

# HR, SpO2, RR and temperature use the plausible *threshold* ranges of `edge.config` (a
# configured alarm limit must lie inside them), so a manual value and an alarm limit are judged
# alike; the pressures have ranges of their own (a cuff reading, not a configured limit).
PLAUSIBLE_RANGES: Final[Mapping[str, PlausibleRange]] = {
    "hr_bpm": PlausibleRange(
        "hr", "HR", "bpm", *HR_RANGE_BPM,
        "below 20 bpm is agonal or asystole, not a rate to score; about 300 bpm is the fastest "
        "conducted adult rhythm (pre-excited atrial fibrillation); same as edge.config HR limits",
    ),
    "spo2_pct": PlausibleRange(
        "spo2", "SpO2", "%", *SPO2_RANGE_PCT,
        "a saturation cannot exceed 100 %; pulse oximeters are only specified down to 70 % "
        "(ISO 80601-2-61) and read meaninglessly below about 50 %; same as edge.config limits",
    ),
    "rr_per_min": PlausibleRange(
        "rr", "RR", "/min", *RR_RANGE_PER_MIN,
        "0 is apnoea (an emergency, not a risk score); 80 /min is beyond even neonatal "
        "tachypnoea; same as edge.config RR limits",
    ),
    "sbp_mmhg": PlausibleRange(
        "sbp", "SBP", "mmHg", 40.0, 300.0,
        "cuffs rarely obtain a reading below 40 mmHg; automated cuffs measure up to about "
        "250-300 mmHg (narrower than the 20-300 mmHg a configured pressure limit may take)",
    ),
    "dbp_mmhg": PlausibleRange(
        "dbp", "DBP", "mmHg", 20.0, 200.0,
        "outside 20-200 mmHg a diastolic reading is an artefact or a typo; it must also be "
        "below the systolic pressure",
    ),
    "temp_c": PlausibleRange(
        "temp", "Temp", "°C", *TEMP_RANGE_C,
        "covers severe accidental hypothermia (below 28 °C) up to extreme hyperthermia; "
        "outside it is almost always °F or a typo; same as edge.config limits",
        hint_high="a temperature in °F? enter °C",
    ),
    "glucose_mmol_l": PlausibleRange(
        "glucose", "Glucose", "mmol/L", 1.0, 50.0,
        "below 1 mmol/L is near the floor of laboratory assays; point-of-care meters read "
        "about 1.1-33.3 mmol/L (20-600 mg/dL) and lab values above 50 are exceptional, so a "
        "larger number is most likely mg/dL",
        hint_high="a value in mg/dL? add --glucose-unit mg/dL",
    ),
}
"""Field of `ManualVitals` -> its plausible range, unit and source."""

AGE_YEARS: Final = PlausibleRange(
    "age", "Age", "years", 0.0, 120.0,
    "0 (a newborn) to 120 (older than any verified human); the age only sets the band an "
    "alert's explanation names (edge/explain.py), no score uses it",
)
"""The patient's age, a manual reading of its own (not in `PLAUSIBLE_RANGES`: not a vital)."""

_GLUCOSE = PLAUSIBLE_RANGES["glucose_mmol_l"]
GLUCOSE_MG_DL: Final = PlausibleRange(
    "glucose", "Glucose", "mg/dL", _GLUCOSE.low * MG_DL_PER_MMOL_L,
    _GLUCOSE.high * MG_DL_PER_MMOL_L, f"{_GLUCOSE.describe()} converted at {MG_DL_PER_MMOL_L}",
    hint_low="a value in mmol/L? drop --glucose-unit mg/dL",
)
