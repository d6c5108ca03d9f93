"""ECG and PPG synthesis from a heart-rate and respiration-rate trajectory (pure numpy).

Why this shape: the waveforms must stay consistent with the heart rate the board reports, at
any sample rate, and be cheap enough for a Raspberry Pi to make in real time. So a waveform is a
function of *beat phase* (cycles since the start, R peak at every integer) and is evaluated in
one vectorized pass per chunk; nothing here loops over samples.

ECG: a sum of Gaussians for the P, Q, R, S and T waves, in the spirit of McSharry et al., "A
dynamical model for generating synthetic electrocardiogram signals", IEEE TBME 50(3), 2003. The
QRS keeps its width at any rate while the P and T offsets scale with sqrt(RR) (Bazett), so a fast
rhythm looks like a fast rhythm instead of a squeezed slow one. Amplitudes in mV (lead II).

PPG: a systolic and a dicrotic Gaussian after a pulse transit delay, in arbitrary units, with
the respiratory amplitude and baseline modulation real plethysmograms show.

Beat phase comes from integrating the heart rate, which is given once per second and taken as
linear in between; the integral is closed-form, so phase (and therefore every sample) is the same
however the time axis is cut into chunks.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "cumulative_cycles",
    "ecg_lead_ii_mv",
    "phase_at",
    "ppg_au",
]

_SECONDS_PER_MINUTE: Final = 60.0

# (amplitude mV, centre s relative to the R peak at RR = 1 s, width s, centre scales with sqrt RR)
_ECG_WAVES: Final = np.array(
    [
        (0.15, -0.20, 0.025, 1.0),  # P
        (-0.10, -0.030, 0.010, 0.0),  # Q
        (1.10, 0.0, 0.011, 0.0),  # R
        (-0.25, 0.032, 0.012, 0.0),  # S
        (0.30, 0.26, 0.050, 1.0),  # T
    ]
)
# Respiration moves the electrical axis and the baseline a little.
_ECG_RESP_WANDER_MV: Final = 0.06
_ECG_RESP_AMPLITUDE_MOD: Final = 0.05

_PULSE_TRANSIT_S: Final = 0.22  # R peak to the foot of the finger pulse
# (amplitude a.u., centre s after the pulse foot at RR = 1 s, width s, centre scales sqrt RR)
_PPG_WAVES: Final = np.array(
    [
        (1.00, 0.13, 0.065, 0.0),  # systolic upstroke and peak
        (0.42, 0.36, 0.090, 1.0),  # dicrotic (reflected) wave
    ]
)
_PPG_RESP_AMPLITUDE_MOD: Final = 0.12
_PPG_RESP_BASELINE: Final = 0.08

_NEIGHBOURS: Final = np.array([-1.0, 0.0, 1.0])


def cumulative_cycles(rate_per_min: NDArray[np.float64]) -> NDArray[np.float64]:
    """Cycles completed at each whole second for a rate given once per second (per minute).

    ``rate_per_min[k]`` is the rate at t = k s, linear in between; element k of the result is the
    exact integral from 0 to k s (trapezoids), so it has the same length as the input.
    """
    r = np.asarray(rate_per_min, dtype=np.float64)
    steps = (r[:-1] + r[1:]) / (2.0 * _SECONDS_PER_MINUTE)
    out: NDArray[np.float64] = np.concatenate(([0.0], np.cumsum(steps)))
    return out


def phase_at(
    rate_per_min: NDArray[np.float64], cum_cycles: NDArray[np.float64], t_s: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Cycles completed at times ``t_s`` (s, >= 0): the closed-form integral of the rate.

    ``rate_per_min`` and ``cum_cycles`` (from `cumulative_cycles`) must cover ``floor(t) + 1``.
    """
    t = np.asarray(t_s, dtype=np.float64)
    k = np.floor(t).astype(np.int64)
    tau = t - k
    r0 = rate_per_min[k]
    r1 = rate_per_min[k + 1]
    out: NDArray[np.float64] = cum_cycles[k] + (r0 * tau + (r1 - r0) * tau * tau / 2.0) / (
        _SECONDS_PER_MINUTE
    )
    return out


def _gaussians(
    cycle_pos: NDArray[np.float64], rr_s: NDArray[np.float64], waves: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Sum of Gaussians at position ``cycle_pos`` (cycles from the fiducial point), any beat.

    The current beat and both neighbours are evaluated so waves never get cut at a cycle edge.
    """
    frac = cycle_pos - np.round(cycle_pos)
    # shape (n, neighbours, waves)
    t_rel = ((frac[:, None] + _NEIGHBOURS[None, :]) * rr_s[:, None])[:, :, None]
    amp, centre, width, scaled = waves.T
    c = centre * np.where(scaled > 0, np.sqrt(rr_s)[:, None], 1.0)
    z = (t_rel - c[:, None, :]) / width
    out: NDArray[np.float64] = np.sum(amp * np.exp(-0.5 * z * z), axis=(1, 2))
    return out


def ecg_lead_ii_mv(
    beat_phase: NDArray[np.float64], hr_bpm: NDArray[np.float64], resp_phase: NDArray[np.float64]
) -> NDArray[np.float64]:
    """ECG lead II in mV at the given beat phases (R peak at integers) and heart rates (bpm)."""
    rr_s = _SECONDS_PER_MINUTE / np.maximum(hr_bpm, 1.0)
    resp = np.sin(2.0 * np.pi * resp_phase)
    beats = _gaussians(beat_phase, rr_s, _ECG_WAVES)
    return beats * (1.0 + _ECG_RESP_AMPLITUDE_MOD * resp) + _ECG_RESP_WANDER_MV * resp


def ppg_au(
    beat_phase: NDArray[np.float64], hr_bpm: NDArray[np.float64], resp_phase: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Finger plethysmogram (arbitrary units, about 0 to 1.3) for the same beats as the ECG."""
    rr_s = _SECONDS_PER_MINUTE / np.maximum(hr_bpm, 1.0)
    resp = np.sin(2.0 * np.pi * resp_phase)
    pulse = _gaussians(beat_phase - _PULSE_TRANSIT_S / rr_s, rr_s, _PPG_WAVES)
    return pulse * (1.0 + _PPG_RESP_AMPLITUDE_MOD * resp) + _PPG_RESP_BASELINE * resp
