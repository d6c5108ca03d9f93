"""The vitals vector shared by the generator, the event injector, replay and the board.

One row per instant, columns in `VITAL_COLUMNS` order, physical units: heart rate (bpm), SpO2
(%), respiration rate (breaths/min), systolic / diastolic / mean arterial pressure (mmHg) and
temperature (degC). ``NaN`` means "not measured" and becomes a cleared validity flag on the wire.
"""

from __future__ import annotations

import enum
from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "N_VITALS",
    "VITAL_COLUMNS",
    "VITAL_LIMITS",
    "Vital",
    "clamp_vitals",
    "mean_arterial_pressure",
]


class Vital(enum.IntEnum):
    """Column index of each vital in a vitals row."""

    HR = 0  # heart rate [bpm]
    SPO2 = 1  # peripheral oxygen saturation [%]
    RR = 2  # respiration rate [breaths/min]
    SBP = 3  # systolic blood pressure [mmHg]
    DBP = 4  # diastolic blood pressure [mmHg]
    MAP = 5  # mean arterial pressure [mmHg]
    TEMP = 6  # core temperature [degC]


VITAL_COLUMNS: Final = tuple(v.name.lower() for v in Vital)
N_VITALS: Final = len(Vital)

# What a bedside monitor can display; values outside are clipped, not rejected, so an event with
# a large magnitude saturates like a real sensor does.
VITAL_LIMITS: Final[dict[Vital, tuple[float, float]]] = {
    Vital.HR: (0.0, 300.0),
    Vital.SPO2: (0.0, 100.0),
    Vital.RR: (0.0, 80.0),
    Vital.SBP: (20.0, 300.0),
    Vital.DBP: (10.0, 250.0),
    Vital.MAP: (15.0, 270.0),
    Vital.TEMP: (25.0, 45.0),
}
_LO: Final = np.array([VITAL_LIMITS[v][0] for v in Vital])
_HI: Final = np.array([VITAL_LIMITS[v][1] for v in Vital])

# MAP ~ DBP + (SBP - DBP) / 3: the diastole lasts about two thirds of the cardiac cycle.
_MAP_SYSTOLIC_WEIGHT: Final = 1.0 / 3.0


def mean_arterial_pressure(
    sbp_mmhg: NDArray[np.float64], dbp_mmhg: NDArray[np.float64]
) -> NDArray[np.float64]:
    """MAP in mmHg from systolic and diastolic pressure (the usual one-third rule)."""
    return dbp_mmhg + (sbp_mmhg - dbp_mmhg) * _MAP_SYSTOLIC_WEIGHT


def clamp_vitals(vitals: NDArray[np.float64]) -> NDArray[np.float64]:
    """Clip every column to what a monitor can display; ``NaN`` (not measured) stays ``NaN``."""
    return np.clip(vitals, _LO, _HI)
