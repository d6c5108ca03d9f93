"""Randomized synthetic patients, calibrated against real numerics, with ground-truth events.

What is calibrated from the real data and what is not (two real patients cannot say how
patients differ from each other, only how one patient varies around their own level):

- Centre of each vital (the between-patient level): NOT calibrated. The simulator's profile
  library gives it: a base profile drawn with `PROFILE_WEIGHTS`, its centre moved by up to one
  drift SD of that profile (a prior, not a measurement).
- Within-patient SD of HR, SpO2, RR, SBP, DBP: the real robust within-patient SD
  (`CalibrationResult`), less the measurement noise the generator adds, times a per-patient
  log-normal factor normalised so that the cohort's mean variance equals the real one (the
  factor's spread is a prior).
- Drift time constant tau: the real lag-1-minute autocorrelation corrected for measurement
  noise, times a per-patient log-normal factor (prior spread). Cuff pressure, whose readings
  cannot resolve tau, keeps the library's tau.
- Measurement noise: the library's, capped so it explains at most half of the real
  one-minute change variance (minute numerics are smoother than 1 Hz readings).
- Gaps (not measured) of HR, SpO2, RR and pressure: the real missing fraction (per-patient
  log-normal factor) and mean gap length at the native rate.
- Temperature: library only; the real numerics have none.
- Short motion artefacts and SpO2 dropouts (seconds): library rates; one-a-minute numerics
  cannot show them.
- How the readings arrive (`synth_cohort` ``no_temp_fraction`` / ``held_fraction``, priors):
  some beds have no temperature probe (the real numerics have none at all), and some feed
  numerics once every ``held_period_s`` (60 s, as the MIMIC-III numerics do, and as bedside
  monitors that forward minute numerics do), each reading held until the next. A model that
  only ever saw a probe on every bed and fresh 1 Hz readings reads a flat, held series as
  abnormal (its within-window SDs are zero), which is what a real record looks like.
- Clinical events: random, injected with `firmware_bridge.sim.events` (pure), ground truth per
  second from `event_labels`.

Generation is vectorized: the simulator's per-second `SyntheticPatient.physiology_block` and
`readings` loops cost about 3 s per simulated 6 h; `_physiology` and `_measure` compute the same
numbers (same hashed random streams, same formulas) in a few milliseconds, and
``tests/test_training_calibration.py`` checks that they agree with the simulator, so a change in
the generator cannot silently make training data differ from what the simulator shows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray
from scipy.signal import lfilter

from firmware_bridge.sim._noise import hashed_normal
from firmware_bridge.sim.events import (
    CLINICAL_KINDS,
    DEFAULT_MAGNITUDE,
    Event,
    EventKind,
    apply_events,
    event_labels,
)
from firmware_bridge.sim.generator import (
    _MOTION_HR_SD_BPM,
    _MOTION_RR_SD_PER_MIN,
    _MOTION_SPO2_DROP_PCT,
    _S_DRIFT,
    _S_INIT,
    _S_MOTION_HIT,
    _S_NOISE,
    SyntheticPatient,
)
from firmware_bridge.sim.profiles import PROFILES, PatientProfile, VitalRange
from firmware_bridge.sim.vitals import N_VITALS, Vital, clamp_vitals, mean_arterial_pressure
from training.calibration import CalibrationResult, VitalStats
from training.datasets import PatientVitals

__all__ = [
    "EVENT_KINDS",
    "PROFILE_WEIGHTS",
    "GapSpec",
    "SynthPatient",
    "random_events",
    "random_gaps",
    "random_profile",
    "synth_cohort",
    "synth_patient",
]

# Base-profile mix of a synthetic cohort: a prior for a monitored ward/ICU population (mostly
# adults and elderly, a fifth septic, some COPD, few athletes), not measured from the real data.
PROFILE_WEIGHTS: Final[dict[str, float]] = {
    "adult": 0.35,
    "elderly": 0.30,
    "septic": 0.20,
    "copd": 0.10,
    "athlete": 0.05,
}

# Per-patient spread of within-patient variability and of tau: log-normal with this SD of the
# log (a factor of 2 either way covers 95 % of patients). A prior: two patients cannot measure it
# (the two real ones differ by x3.5 in HR variability, which says only that it is wide).
_VARIABILITY_LOG_SD: Final = math.log(2.0) / 2.0
_TAU_LOG_SD: Final = math.log(2.0) / 2.0
_MISSING_LOG_SD: Final = math.log(2.0) / 2.0
_MAX_MISSING_FRACTION: Final = 0.6
# Drift SD is at least this fraction of the target within-patient SD, whatever the noise.
_MIN_DRIFT_FRACTION: Final = 0.5
# rho of the drift alone is kept below this (tau stays finite after noise correction).
_MAX_DRIFT_RHO: Final = 0.9995
# A gap at the native 60 s rate shorter than a second is not a gap.
_MIN_GAP_S: Final = 1.0
_SECONDS_PER_HOUR: Final = 3600.0

# Which calibrated statistic sets which profile field (MAP follows from SBP and DBP).
_PROFILE_FIELDS: Final[dict[Vital, str]] = {
    Vital.HR: "hr",
    Vital.SPO2: "spo2",
    Vital.RR: "rr",
    Vital.SBP: "sbp",
    Vital.DBP: "dbp",
    Vital.TEMP: "temp",
}
# Gaps: one sensor per group; pressure is one cuff or line for all three columns.
_GAP_GROUPS: Final[dict[Vital, tuple[Vital, ...]]] = {
    Vital.HR: (Vital.HR,),
    Vital.SPO2: (Vital.SPO2,),
    Vital.RR: (Vital.RR,),
    Vital.SBP: (Vital.SBP, Vital.DBP, Vital.MAP),
}
# Systolic-diastolic coupling of the generator (generator._BP_CORRELATION): the diastolic drift
# is 0.8 of the systolic one plus a residual, so its autocorrelation mixes the two taus.
_BP_COUPLING: Final = 0.8

# Clinical events of a cohort, and the shape of each kind: (duration range s, ramp range s).
# Magnitudes are the simulator's defaults times a factor in `_MAGNITUDE_FACTOR`.
EVENT_KINDS: Final = (
    EventKind.DESATURATION,
    EventKind.TACHYCARDIA,
    EventKind.BRADYCARDIA,
    EventKind.TACHYPNOEA,
    EventKind.APNOEA,
    EventKind.HYPOTENSION,
    EventKind.FEVER,
)
_EVENT_SHAPE: Final[dict[EventKind, tuple[tuple[float, float], tuple[float, float]]]] = {
    EventKind.DESATURATION: ((60.0, 300.0), (15.0, 60.0)),
    EventKind.TACHYCARDIA: ((120.0, 900.0), (30.0, 120.0)),
    EventKind.BRADYCARDIA: ((60.0, 300.0), (10.0, 60.0)),
    EventKind.TACHYPNOEA: ((300.0, 1200.0), (60.0, 180.0)),
    # apnoea: 20 s is the usual central-apnoea alarm delay; abrupt onset
    EventKind.APNOEA: ((20.0, 60.0), (0.0, 5.0)),
    EventKind.HYPOTENSION: ((300.0, 1800.0), (60.0, 300.0)),
    # fever rises over a quarter to half an hour and lasts hours
    EventKind.FEVER: ((1800.0, 7200.0), (900.0, 1800.0)),
}
_MAGNITUDE_FACTOR: Final = (0.6, 1.4)
# Events of one patient are at least this far apart (end to next onset), so each has a clean
# onset to detect.
_EVENT_SEPARATION_S: Final = 600.0
_MAX_EVENTS: Final = 50
_PLACEMENT_TRIES: Final = 20


@dataclass(frozen=True, slots=True)
class GapSpec:
    """Gaps of one sensor: fraction of time not measured and mean gap length (s)."""

    fraction: float
    mean_length_s: float


@dataclass(frozen=True, slots=True)
class SynthPatient:
    """One synthetic patient: 1 Hz vitals (n, 7) with events and gaps, and the ground truth.

    Has ``patient``, ``name``, ``vitals`` and ``native_period_s`` like
    `training.datasets.PatientVitals`, so calibration and evaluation code takes either.
    ``labels``: for every `EventKind`, True at the seconds an event of that kind is active.
    """

    patient: str
    name: str
    vitals: NDArray[np.float64]
    profile: PatientProfile
    events: tuple[Event, ...]
    labels: Mapping[EventKind, NDArray[np.bool_]]
    gaps: Mapping[Vital, GapSpec] = field(default_factory=dict)
    seed: int = 0
    native_period_s: float = 1.0

    @property
    def truth(self) -> NDArray[np.bool_]:
        """True at seconds inside any clinical event."""
        out = np.zeros(self.vitals.shape[0], dtype=np.bool_)
        for kind in CLINICAL_KINDS:
            if kind in self.labels:
                out |= self.labels[kind]
        return out

    def to_patient_vitals(self) -> PatientVitals:
        """The vitals alone, as the dataset loader would give them."""
        return PatientVitals(self.patient, self.name, self.vitals, self.native_period_s)


def _lognormal_unit_power(rng: np.random.Generator, log_sd: float) -> float:
    """exp(s Z - s^2): median below 1 and E[f^2] = 1, so mean variance is unchanged."""
    return float(math.exp(log_sd * rng.standard_normal() - log_sd**2))


def _drift_params(
    stats: VitalStats, base: VitalRange, factor: float, tau_factor: float, period_s: float
) -> VitalRange:
    """Band, tau and noise reproducing ``stats`` once the generator adds measurement noise.

    Observed = OU drift (SD d) + white noise (SD n): var = d^2 + n^2, variance of a one-sample
    change = 2 d^2 (1 - rho_d) + 2 n^2, rho_obs = rho_d d^2 / (d^2 + n^2). The library's noise
    is per 1 Hz reading; minute numerics are smoother (their one-minute changes can be smaller
    than that noise alone would make), so the noise is capped to explain at most half of the
    real change variance: n <= change_sd / 2. The band is centred on the base range's mean.
    """
    within = stats.within_sd * factor
    noise = base.noise_sd
    if math.isfinite(stats.change_sd) and not stats.intermittent:
        noise = min(noise, stats.change_sd * factor / 2.0)
    drift = math.sqrt(max(within**2 - noise**2, (_MIN_DRIFT_FRACTION * within) ** 2))
    tau = base.tau_s
    if stats.tau_resolved:
        rho_d = min(stats.rho * within**2 / drift**2, _MAX_DRIFT_RHO)
        tau = (-period_s / math.log(rho_d) if rho_d > 0 else period_s) * tau_factor
    centre = base.mean
    return VitalRange(centre - 2.0 * drift, centre + 2.0 * drift, tau, noise)


def random_profile(rng: np.random.Generator, calib: CalibrationResult) -> PatientProfile:
    """A patient profile: library centre, calibrated within-patient variability and tau.

    See the module docstring for which part comes from where. The returned profile is a plain
    `PatientProfile`, usable by `SyntheticPatient` and the simulator as is.
    """
    names = list(PROFILE_WEIGHTS)
    weights = np.array([PROFILE_WEIGHTS[n] for n in names])
    base = PROFILES[names[int(rng.choice(len(names), p=weights / weights.sum()))]]
    ranges: dict[str, VitalRange] = {}
    for vital, attr in _PROFILE_FIELDS.items():
        br: VitalRange = getattr(base, attr)
        centre = br.mean + br.drift_sd * float(rng.uniform(-1.0, 1.0))
        stats = calib[vital]
        factor = _lognormal_unit_power(rng, _VARIABILITY_LOG_SD)
        tau_factor = float(math.exp(_TAU_LOG_SD * rng.standard_normal()))
        if not stats.calibrated:
            ranges[attr] = VitalRange(
                centre - 2.0 * br.drift_sd, centre + 2.0 * br.drift_sd, br.tau_s, br.noise_sd
            )
            continue
        centred = VitalRange(
            centre - 2.0 * br.drift_sd, centre + 2.0 * br.drift_sd, br.tau_s, br.noise_sd
        )
        vr = _drift_params(stats, centred, factor, tau_factor, calib.sample_period_s)
        if vital is Vital.DBP and stats.tau_resolved and calib[Vital.SBP].tau_resolved:
            tau = _dbp_residual_tau(vr.tau_s, ranges["sbp"].tau_s, calib.sample_period_s)
            vr = VitalRange(vr.low, vr.high, tau, vr.noise_sd)
        ranges[attr] = vr
    return PatientProfile(
        name=f"{base.name}-calibrated",
        description=f"{base.description}; variability calibrated on real numerics",
        hr=ranges["hr"],
        spo2=ranges["spo2"],
        rr=ranges["rr"],
        sbp=ranges["sbp"],
        dbp=ranges["dbp"],
        temp=ranges["temp"],
        motion_per_hour=base.motion_per_hour,
        spo2_dropout_per_hour=base.spo2_dropout_per_hour,
    )


def _dbp_residual_tau(target_tau_s: float, sbp_tau_s: float, period_s: float) -> float:
    """tau of the diastolic residual so that DBP as a whole has ``target_tau_s``.

    DBP = 0.8 * (scaled SBP drift) + residual (variance 0.36), so its lag autocorrelation is
    0.64 rho_sbp + 0.36 rho_res.
    """
    c2 = _BP_COUPLING**2
    rho_t = math.exp(-period_s / target_tau_s)
    rho_s = math.exp(-period_s / sbp_tau_s)
    rho_r = float(np.clip((rho_t - c2 * rho_s) / (1.0 - c2), 1e-3, _MAX_DRIFT_RHO))
    return -period_s / math.log(rho_r)


def random_gaps(rng: np.random.Generator, calib: CalibrationResult) -> dict[Vital, GapSpec]:
    """Per-sensor gap fraction and length from the real missingness (fraction jittered)."""
    out: dict[Vital, GapSpec] = {}
    for vital in _GAP_GROUPS:
        st = calib[vital]
        if not (math.isfinite(st.missing_fraction) and st.missing_fraction > 0):
            continue
        # exp(s Z - s^2 / 2) has mean 1: the cohort's mean missing fraction is the real one.
        f = st.missing_fraction * math.exp(
            _MISSING_LOG_SD * rng.standard_normal() - _MISSING_LOG_SD**2 / 2.0
        )
        length = max(st.missing_run_mean_s, _MIN_GAP_S)
        out[vital] = GapSpec(min(f, _MAX_MISSING_FRACTION), length)
    return out


def _gap_mask(rng: np.random.Generator, n: int, spec: GapSpec) -> NDArray[np.bool_]:
    """Poisson gaps with exponential lengths covering ``spec.fraction`` of time on average.

    For starts at rate lam and mean length L, a point is covered with probability
    1 - exp(-lam L) (Boolean model), so lam = -ln(1 - f) / L.
    """
    mask = np.zeros(n, dtype=np.bool_)
    if spec.fraction <= 0 or n == 0:
        return mask
    lam = -math.log1p(-spec.fraction) / spec.mean_length_s
    span = n + spec.mean_length_s * 5.0  # starts before 0 can reach into the record
    count = int(rng.poisson(lam * span))
    starts = rng.uniform(-spec.mean_length_s * 5.0, n, size=count)
    lengths = rng.exponential(spec.mean_length_s, size=count)
    # Mark starts and ends with a difference array: vectorized over gaps.
    lo = np.clip(np.ceil(starts), 0, n).astype(np.int64)
    hi = np.clip(np.ceil(starts + lengths), 0, n).astype(np.int64)
    keep = hi > lo
    diff = np.zeros(n + 1, dtype=np.int64)
    np.add.at(diff, lo[keep], 1)
    np.add.at(diff, hi[keep], -1)
    mask = np.cumsum(diff[:n]) > 0
    return mask


def random_events(rng: np.random.Generator, duration_s: float, rate_per_hour: float) -> list[Event]:
    """Clinical events of one patient: Poisson count (at least one), kinds uniform, apart.

    Events never overlap and are at least `_EVENT_SEPARATION_S` apart; one that does not fit
    after a bounded number of tries is left out.
    """
    count = min(
        max(1, int(rng.poisson(rate_per_hour * duration_s / _SECONDS_PER_HOUR))), _MAX_EVENTS
    )
    placed: list[Event] = []
    for _ in range(count):
        kind = EVENT_KINDS[int(rng.integers(len(EVENT_KINDS)))]
        (d_lo, d_hi), (r_lo, r_hi) = _EVENT_SHAPE[kind]
        ramp = float(rng.uniform(r_lo, r_hi))
        dur = float(rng.uniform(d_lo, d_hi))
        if 2 * ramp + dur >= duration_s:
            continue
        magnitude = DEFAULT_MAGNITUDE[kind] * float(rng.uniform(*_MAGNITUDE_FACTOR))
        if kind is EventKind.APNOEA:
            magnitude = 1.0  # breathing stops: a fraction, not scaled
        for _try in range(_PLACEMENT_TRIES):
            onset = float(np.floor(rng.uniform(0.0, duration_s - 2 * ramp - dur)))
            ev = Event(kind, onset, dur, ramp, magnitude)
            if all(
                ev.end_s + _EVENT_SEPARATION_S <= o.onset_s
                or o.end_s + _EVENT_SEPARATION_S <= ev.onset_s
                for o in placed
            ):
                placed.append(ev)
                break
    return sorted(placed, key=lambda e: e.onset_s)


def _physiology(sp: SyntheticPatient, n: int) -> NDArray[np.float64]:
    """`SyntheticPatient.physiology_block(n)` computed as a linear filter (same numbers).

    Reads the generator's private parameters (``_mean``, ``_sd``, ``_decay``, ``_innov``, ...)
    on purpose: they are the single source of the model; a test checks the two agree.
    """
    seed = sp.seed
    width = sp._mean.size
    if n <= 0:
        return np.empty((0, N_VITALS))
    keys = np.arange(n * width, dtype=np.int64).reshape(n, width)
    z = hashed_normal(seed, _S_DRIFT, keys.ravel()).reshape(n, width)
    u = sp._innov * z
    u[0] = sp._sd * hashed_normal(seed, _S_INIT, keys[0])
    dev = np.empty_like(u)
    for j in range(width):
        dev[:, j] = lfilter([1.0], [1.0, -float(sp._decay[j])], u[:, j])
    state = sp._mean + dev
    rows = np.empty((n, N_VITALS))
    rows[:, Vital.HR] = state[:, 0]
    rows[:, Vital.SPO2] = state[:, 1]
    rows[:, Vital.RR] = state[:, 2]
    rows[:, Vital.SBP] = state[:, 3]
    rows[:, Vital.DBP] = sp._dbp_mean + sp._dbp_per_sbp * (state[:, 3] - sp._sbp_mean) + state[:, 4]
    rows[:, Vital.MAP] = mean_arterial_pressure(rows[:, Vital.SBP], rows[:, Vital.DBP])
    rows[:, Vital.TEMP] = state[:, 5]
    return clamp_vitals(rows)


def _measure(sp: SyntheticPatient, true_rows: NDArray[np.float64]) -> NDArray[np.float64]:
    """`SyntheticPatient.measure` for every second 0..n-1 at once (same numbers)."""
    n = true_rows.shape[0]
    k = np.arange(n, dtype=np.int64)
    width = sp._noise_sd.size
    z = hashed_normal(sp.seed, _S_NOISE, (k[:, None] * width + np.arange(width)).ravel())
    z = z.reshape(n, width) * sp._noise_sd
    row = np.array(true_rows, dtype=np.float64, copy=True)
    row[:, Vital.HR] += z[:, 0]
    row[:, Vital.SPO2] += z[:, 1]
    row[:, Vital.RR] += z[:, 2]
    row[:, Vital.SBP] += z[:, 3]
    row[:, Vital.DBP] += z[:, 4]
    row[:, Vital.TEMP] += z[:, 5]
    row[:, Vital.MAP] = mean_arterial_pressure(row[:, Vital.SBP], row[:, Vital.DBP])
    motion = np.flatnonzero(sp.motion(k))
    if motion.size:
        hit = hashed_normal(
            sp.seed, _S_MOTION_HIT, (motion[:, None] * 3 + np.arange(3)).ravel()
        ).reshape(-1, 3)
        row[motion, Vital.HR] += hit[:, 0] * _MOTION_HR_SD_BPM
        row[motion, Vital.RR] += hit[:, 1] * _MOTION_RR_SD_PER_MIN
        row[motion, Vital.SPO2] -= np.abs(hit[:, 2]) * _MOTION_SPO2_DROP_PCT
    row[sp.spo2_dropout(k), Vital.SPO2] = np.nan
    return clamp_vitals(row)


def synth_patient(
    profile: PatientProfile,
    seconds: int,
    *,
    seed: int,
    events: Sequence[Event] = (),
    gaps: Mapping[Vital, GapSpec] | None = None,
    patient: str = "synthetic",
    temperature: bool = True,
    held_period_s: int | None = None,
) -> SynthPatient:
    """One patient of ``profile`` for ``seconds`` s at 1 Hz: drift, events, noise, artefacts, gaps.

    Clinical events act on the true physiology before measurement (`events.apply_events`), as
    the simulator does; gaps are applied last and are not clinical events. ``temperature``
    False: no probe, the column is NaN throughout. ``held_period_s``: one reading every that
    many seconds (from second 0), held piecewise-constant in between (a NaN reading stays NaN
    until the next); the labels stay per second of the true physiology.
    """
    if held_period_s is not None and held_period_s < 1:
        raise ValueError(f"held_period_s={held_period_s} must be at least 1 s")
    sp = SyntheticPatient(profile, seed)
    t = np.arange(seconds, dtype=np.float64)
    true_rows = apply_events(_physiology(sp, seconds), t, events, seed=seed)
    vitals = _measure(sp, true_rows)
    gap_specs = dict(gaps or {})
    rng = np.random.default_rng([seed, 0x6A95])
    for vital, spec in gap_specs.items():
        mask = _gap_mask(rng, seconds, spec)
        for col in _GAP_GROUPS.get(vital, (vital,)):
            vitals[mask, col] = np.nan
    if not temperature:
        vitals[:, Vital.TEMP] = np.nan
    if held_period_s is not None:
        vitals = vitals[(np.arange(seconds) // held_period_s) * held_period_s]
    return SynthPatient(
        patient=patient,
        name=f"{patient}:{profile.name}",
        vitals=vitals,
        profile=profile,
        events=tuple(events),
        labels=event_labels(t, list(events)),
        gaps=gap_specs,
        seed=seed,
        native_period_s=float(held_period_s or 1),
    )


def synth_cohort(
    n_patients: int,
    hours: float,
    calib: CalibrationResult,
    seed: int,
    *,
    event_free_fraction: float = 0.25,
    events_per_hour: float = 0.5,
    gaps: bool = True,
    no_temp_fraction: float = 0.0,
    held_fraction: float = 0.0,
    held_period_s: int = 60,
) -> list[SynthPatient]:
    """``n_patients`` calibrated random patients of ``hours`` each, with per-second labels.

    A fraction ``event_free_fraction`` of patients (rounded, chosen at random) has no clinical
    event; the others get `random_events` at ``events_per_hour`` (at least one). Fractions
    ``no_temp_fraction`` (no temperature probe) and ``held_fraction`` (readings every
    ``held_period_s`` s, held) are drawn the same way, independently (module doc: how the
    readings arrive); both 0 by default: a board's 1 Hz readings with every probe on. Patient
    ids are ``synth:NNNN``: split them with `training.datasets.split_by_patient`, never by
    sample. Deterministic for a seed; the two fractions use their own random stream, so
    changing them leaves every patient's physiology and events as they were.
    """
    if n_patients < 1 or hours <= 0:
        raise ValueError(f"need n_patients >= 1 and hours > 0, got {n_patients}, {hours}")
    for name, value in (("event_free_fraction", event_free_fraction),
                        ("no_temp_fraction", no_temp_fraction),
                        ("held_fraction", held_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name}={value} must be in [0, 1]")
    seconds = round(hours * _SECONDS_PER_HOUR)
    root = np.random.default_rng(seed)
    free = set(
        root.choice(
            n_patients, size=round(event_free_fraction * n_patients), replace=False
        ).tolist()
    )
    setup = np.random.default_rng([seed, 0x5E7])
    no_temp = set(
        setup.choice(n_patients, size=round(no_temp_fraction * n_patients), replace=False).tolist()
    )
    held = set(
        setup.choice(n_patients, size=round(held_fraction * n_patients), replace=False).tolist()
    )
    out = []
    for i, child in enumerate(np.random.SeedSequence(seed).spawn(n_patients)):
        rng = np.random.default_rng(child)
        profile = random_profile(rng, calib)
        gap_specs = random_gaps(rng, calib) if gaps else {}
        evs = [] if i in free else random_events(rng, float(seconds), events_per_hour)
        out.append(
            synth_patient(
                profile,
                seconds,
                seed=int(rng.integers(2**31 - 1)),
                events=evs,
                gaps=gap_specs,
                patient=f"synth:{i:04d}",
                temperature=i not in no_temp,
                held_period_s=held_period_s if i in held else None,
            )
        )
    return out
