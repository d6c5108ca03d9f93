"""Is the ECG readable, and is there a pulse on the PPG or arterial pressure?

Why: an ECG alarm is only as good as the signal under it. A lead that came loose, an amplifier
at its rail or a patient brushing their teeth produces "no beats" or hundreds of false ones;
a monitor must say "unreadable" then (a technical alarm) and hold its rhythm alarms
(edge/rhythm.py rule 1). Pure numpy over a window of a few seconds; units mV for the ECG, any
unit for the pulse waveforms (only their shape matters).

Rules for `ecg_quality` (window of `WINDOW_S` seconds, NaN = samples lost)
------------------------------------------------------------------------------

1. **Lost**: more than half the samples NaN.
2. **Flat line**: peak-to-peak below `FLAT_MV` (0.02 mV, a few ADC steps). A connected ECG
   amplifier always shows more than that (baseline noise, P and T waves, even in asystole,
   whose baseline still wanders); an exact flat line is a disconnected input or a dead channel.
3. **Saturated**: more than `SATURATED_FRACTION` (10 %) of the samples pinned at the window's
   own extreme values (the amplifier's rail, whatever the gain).
4. **Noisy**: more than a quarter of its half-second pieces have a noise floor above
   `NOISE_FLOOR_MV` (the median distance from a 40 ms moving average): muscle and motion
   artefact are broadband and last, a QRS is short. Mild noise stays readable.
5. ``sqi`` in 0..1: the fraction of the window that is none of the above; ``usable`` when no
   rule fired for the window as a whole and ``sqi`` is at least 0.5.

`pulse_present` (PPG or ABP window of at least 3 s): a pulse is seen when the autocorrelation
of the detrended signal has a peak above `PULSE_CORR` (0.5) at a lag of 0.3-2 s (30-200 bpm)
and the waveform is not flat: a periodic pulsatile signal, as a perfusing heart makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "FLAT_MV",
    "PULSE_CORR",
    "WINDOW_S",
    "EcgQuality",
    "ecg_quality",
    "pulse_present",
]

WINDOW_S: Final = 4.0
"""Seconds of ECG judged at once."""
FLAT_MV: Final = 0.02
SATURATED_FRACTION: Final = 0.10
NOISE_FLOOR_MV: Final = 0.05
"""Rule 4: median |ECG - its 40 ms moving average| of a half-second piece (mV) above which the
piece is noisy. The QRS fills under a fifth of a piece, so the median is the noise floor:
about 0.01 mV on clean MIT-BIH records (99th percentile of pieces 0.03-0.09 mV, records with
noise episodes included), 0.07 mV with 0.1 mV RMS of white noise added, at 125-500 Hz."""
_SMOOTH_S: Final = 0.04
_PIECE_S: Final = 0.5
_NOISY_PIECES: Final = 0.25
PULSE_CORR: Final = 0.5
_PULSE_LAGS_S: Final = (0.3, 2.0)


@dataclass(frozen=True, slots=True)
class EcgQuality:
    """What `ecg_quality` found: ``sqi`` 0..1, whether the window is ``usable``, and why not."""

    sqi: float
    usable: bool
    reason: str = ""


def _noisy_fraction(x: npt.NDArray[np.float64], fs: float) -> float:
    """Rule 4: the share of half-second pieces whose noise floor exceeds `NOISE_FLOOR_MV`."""
    k = max(3, round(_SMOOTH_S * fs))
    c = np.concatenate(([0.0], np.cumsum(x)))
    smooth = np.empty_like(x)
    half = k // 2
    idx = np.arange(x.size)
    lo = np.clip(idx - half, 0, x.size)
    hi = np.clip(idx - half + k, 0, x.size)
    smooth[:] = (c[hi] - c[lo]) / (hi - lo)
    residual = np.abs(x - smooth)
    piece = max(8, int(_PIECE_S * fs))
    n = x.size // piece
    if n == 0:
        return 0.0
    floor = np.median(residual[: n * piece].reshape(n, piece), axis=1)
    return float(np.mean(floor > NOISE_FLOOR_MV))


def ecg_quality(window_mv: npt.ArrayLike, fs_hz: float) -> EcgQuality:
    """Judge a window of ECG (mV; NaN = lost) sampled at ``fs_hz`` (module rules 1-5)."""
    x = np.asarray(window_mv, dtype=np.float64)
    if x.size == 0:
        return EcgQuality(0.0, False, "no samples")
    valid = ~np.isnan(x)
    kept = float(valid.mean())
    if kept < 0.5:
        return EcgQuality(round(kept, 2), False, "signal lost")
    v = x[valid]
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < FLAT_MV:
        return EcgQuality(0.0, False, "flat line")
    pinned = float(np.mean((v <= lo) | (v >= hi)))
    if pinned > SATURATED_FRACTION:
        return EcgQuality(round(1.0 - pinned, 2), False, "saturated")
    noisy = _noisy_fraction(np.nan_to_num(x, nan=float(np.median(v))), fs_hz)
    sqi = round(kept * (1.0 - noisy), 2)
    if noisy > _NOISY_PIECES:
        return EcgQuality(sqi, False, "noise")
    return EcgQuality(sqi, sqi >= 0.5, "" if sqi >= 0.5 else "poor signal")


def pulse_present(window: npt.ArrayLike, fs_hz: float) -> bool:
    """True when the PPG / ABP ``window`` shows a periodic pulse (module doc)."""
    x = np.asarray(window, dtype=np.float64)
    x = x[~np.isnan(x)]
    if x.size < 3 * fs_hz or float(np.ptp(x)) <= 0.0:
        return False
    t = np.arange(x.size)
    x = x - np.polyval(np.polyfit(t, x, 1), t)
    x /= float(np.std(x)) or 1.0
    lo, hi = (int(s * fs_hz) for s in _PULSE_LAGS_S)
    hi = min(hi, x.size // 2)
    if hi <= lo:
        return False
    spectrum = np.fft.rfft(x, 2 * x.size)
    ac = np.fft.irfft(spectrum * np.conj(spectrum))[: x.size] / x.size
    return bool(np.max(ac[lo:hi + 1]) >= PULSE_CORR)
