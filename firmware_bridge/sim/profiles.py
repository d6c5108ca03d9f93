"""Patient profiles for the built-in generator: typical resting ranges of each vital.

Each range is the band where a resting patient of that kind spends most of the time (the
generator's slow drift has its mean in the middle and a stationary standard deviation of a
quarter of the band, so about 95 % of the time is spent inside it). Ranges are ordinary
textbook values for the population, not thresholds: alarm limits live in the edge scorer.

| profile | HR bpm | SpO2 % | RR /min | SBP mmHg | DBP mmHg | temp degC |
|---|---|---|---|---|---|---|
| adult   | 60-85  | 96-99  | 12-18   | 110-130  | 70-85    | 36.5-37.2 |
| elderly | 60-80  | 94-98  | 14-20   | 130-150  | 70-85    | 36.2-37.0 |
| copd    | 80-100 | 88-93  | 18-24   | 125-145  | 75-90    | 36.5-37.3 |
| athlete | 42-58  | 97-100 | 10-14   | 105-120  | 60-75    | 36.4-37.1 |
| septic  | 105-125| 91-95  | 22-28   | 88-102   | 48-60    | 38.4-39.4 |

COPD: chronic hypoxaemia with a target SpO2 of 88-92 % (BTS oxygen guideline). Septic: the
SIRS/qSOFA picture of tachycardia, tachypnoea, fever and low-normal pressure (Singer 2016).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["PROFILES", "PatientProfile", "VitalRange", "get_profile"]


@dataclass(frozen=True, slots=True)
class VitalRange:
    """Typical band of one vital and how it moves.

    ``low``/``high``: the band (physical unit of the vital). ``tau_s``: time constant of the
    Ornstein-Uhlenbeck drift in seconds (how slowly the value wanders). ``noise_sd``: measurement
    noise added to each reading, same unit.
    """

    low: float
    high: float
    tau_s: float
    noise_sd: float

    @property
    def mean(self) -> float:
        """Centre of the band: the drift's long-run mean."""
        return (self.low + self.high) / 2.0

    @property
    def drift_sd(self) -> float:
        """Stationary standard deviation of the drift: a quarter of the band."""
        return (self.high - self.low) / 4.0


@dataclass(frozen=True, slots=True)
class PatientProfile:
    """A kind of patient: resting bands of every vital and how often artefacts happen.

    Blood pressure is modelled as systolic pressure plus pulse pressure, so the diastolic band is
    given through ``dbp`` and the pulse pressure follows from the two bands.
    Artefact rates are episodes per hour.
    """

    name: str
    description: str
    hr: VitalRange
    spo2: VitalRange
    rr: VitalRange
    sbp: VitalRange
    dbp: VitalRange
    temp: VitalRange
    motion_per_hour: float = 6.0
    spo2_dropout_per_hour: float = 4.0


# Drift time constants: heart rate and respiration wander within minutes, pressure a little
# slower, temperature over an hour.
_TAU_FAST_S: Final = 120.0
_TAU_BP_S: Final = 300.0
_TAU_SPO2_S: Final = 180.0
_TAU_TEMP_S: Final = 3600.0

# Measurement noise of a typical bedside monitor reading.
_HR_NOISE_BPM: Final = 1.0
_SPO2_NOISE_PCT: Final = 0.4
_RR_NOISE_PER_MIN: Final = 0.6
_BP_NOISE_MMHG: Final = 1.5
_TEMP_NOISE_C: Final = 0.02


def _hr(low: float, high: float) -> VitalRange:
    return VitalRange(low, high, _TAU_FAST_S, _HR_NOISE_BPM)


def _spo2(low: float, high: float) -> VitalRange:
    return VitalRange(low, high, _TAU_SPO2_S, _SPO2_NOISE_PCT)


def _rr(low: float, high: float) -> VitalRange:
    return VitalRange(low, high, _TAU_FAST_S, _RR_NOISE_PER_MIN)


def _bp(low: float, high: float) -> VitalRange:
    return VitalRange(low, high, _TAU_BP_S, _BP_NOISE_MMHG)


def _temp(low: float, high: float) -> VitalRange:
    return VitalRange(low, high, _TAU_TEMP_S, _TEMP_NOISE_C)


PROFILES: Final[dict[str, PatientProfile]] = {
    p.name: p
    for p in (
        PatientProfile(
            "adult",
            "healthy adult at rest",
            _hr(60, 85),
            _spo2(96, 99),
            _rr(12, 18),
            _bp(110, 130),
            _bp(70, 85),
            _temp(36.5, 37.2),
        ),
        PatientProfile(
            "elderly",
            "older adult: higher systolic pressure, slightly lower SpO2 and temperature",
            _hr(60, 80),
            _spo2(94, 98),
            _rr(14, 20),
            _bp(130, 150),
            _bp(70, 85),
            _temp(36.2, 37.0),
            motion_per_hour=4.0,
        ),
        PatientProfile(
            "copd",
            "chronic obstructive pulmonary disease: chronic hypoxaemia, fast breathing",
            _hr(80, 100),
            _spo2(88, 93),
            _rr(18, 24),
            _bp(125, 145),
            _bp(75, 90),
            _temp(36.5, 37.3),
            spo2_dropout_per_hour=6.0,
        ),
        PatientProfile(
            "athlete",
            "trained young adult: resting bradycardia, slow breathing",
            _hr(42, 58),
            _spo2(97, 100),
            _rr(10, 14),
            _bp(105, 120),
            _bp(60, 75),
            _temp(36.4, 37.1),
        ),
        PatientProfile(
            "septic",
            "sepsis: tachycardia, tachypnoea, fever, low-normal pressure, restless",
            _hr(105, 125),
            _spo2(91, 95),
            _rr(22, 28),
            _bp(88, 102),
            _bp(48, 60),
            _temp(38.4, 39.4),
            motion_per_hour=10.0,
            spo2_dropout_per_hour=8.0,
        ),
    )
}


def get_profile(name: str) -> PatientProfile:
    """Profile by name; raises ValueError naming the known profiles."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(PROFILES)
        raise ValueError(f"unknown patient profile {name!r}; known profiles: {known}") from None
