"""What real bedside numerics look like, in numbers the synthetic patient generator can use.

Rules of this module:

- Statistics are taken at the recording's NATIVE sampling rate: MIMIC-III numerics are one row a
  minute and `training.datasets` holds them piecewise-constant at 1 Hz, so every
  ``native_period_s``-th row is a real reading and the rows between are copies. Measuring
  variability or autocorrelation on the copies would be measuring the hold, not the patient.
- Everything a synthetic profile is calibrated from is ROBUST (median / MAD): the minute numerics
  carry gross artefacts (a heart rate of 0 replaced by a pulse rate of 277, SpO2 of 36 % with
  the probe half off) that the generator models separately (motion, dropouts, gaps); a classical
  SD would fold them into the slow drift. The classical SD and lag-1 autocorrelation are
  reported beside them so a reader can see how much the choice matters.
- Parameters of the drift model (within-patient SD, lag-1 autocorrelation, tau, missingness) are
  pooled over patients WEIGHTED BY READINGS, as the within-group variance of a one-way ANOVA
  (a 72-minute record says less about within-patient variance than a 32-hour one); the
  per-patient figures are kept beside the pooled ones. Percentiles pool all readings (they
  describe the histogram that is plotted).
- Within-patient variability only. Two real patients cannot calibrate how patients differ from
  each other; `training.synth` takes the between-patient centre from the simulator's profile
  library and says so.
- Non-invasive (cuff) pressure is measured every few minutes and held on the display between
  readings (`firmware_bridge.sim.replay.NIBP_HOLD_S`). A vital whose consecutive native samples
  are mostly identical is marked ``intermittent``: its SD and tau come from the distinct readings
  and the median time between them, not from the held copies.

OU relations used (stationary SD sigma, time constant tau, sample period dt):
``rho(dt) = exp(-dt / tau)`` and ``var(x[t+dt] - x[t]) = 2 sigma^2 (1 - rho)``, so the robust
lag-1 autocorrelation is ``1 - sd_change^2 / (2 sd^2)`` and ``tau = -dt / ln(rho)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
from numpy.typing import NDArray

from firmware_bridge.sim.vitals import N_VITALS, VITAL_COLUMNS, Vital

__all__ = [
    "MAX_TAU_S",
    "MIN_TAU_S",
    "CalibrationResult",
    "VitalStats",
    "VitalsRecord",
    "calibrate",
    "native_samples",
    "plot_calibration",
    "tau_from_rho",
]

# 1.4826 * MAD estimates the SD of a normal distribution.
_MAD_TO_SD: Final = 1.4826
# Guards for tau = -dt / ln(rho): rho <= 0 means "decorrelated within one sample" (tau is below
# the sample period and cannot be resolved; report the floor), rho >= 1 means "no mean reversion
# visible in the record" (report the ceiling, longer than any ICU trend we model).
MIN_TAU_S: Final = 10.0
MAX_TAU_S: Final = 6.0 * 3600.0
# A vital whose consecutive native samples are identical more than this often is displayed from
# intermittent readings (cuff pressure held between inflations), not measured continuously.
_INTERMITTENT_REPEAT_FRACTION: Final = 0.5
# Pairs of intermittent readings further apart than this are not used for tau (a long gap is a
# break in monitoring, not a reading interval).
_MAX_READING_GAP_S: Final = 1800.0
# Fewer valid native samples than this in a record: the vital is "not monitored" there and the
# record is left out of that vital's statistics.
_MIN_SAMPLES: Final = 5
_PERCENTILES: Final = (5.0, 25.0, 50.0, 75.0, 95.0)


class VitalsRecord(Protocol):
    """What calibration needs of a recording (`training.datasets.PatientVitals` has it)."""

    @property
    def patient(self) -> str:
        """Patient identity: records of one patient are pooled as one patient."""
        ...

    @property
    def vitals(self) -> NDArray[np.float64]:
        """(n_seconds, 7) at 1 Hz in `VITAL_COLUMNS` order, NaN = not measured."""
        ...

    @property
    def native_period_s(self) -> float:
        """How often the source really measured, seconds."""
        ...


@dataclass(frozen=True, slots=True)
class VitalStats:
    """Statistics of one vital (units of the vital; times in seconds; fractions in [0, 1]).

    ``within_sd``: robust SD (1.4826 MAD) around each patient's own median, pooled over patients
    weighted by readings.
    ``change_sd``: robust SD of changes between consecutive samples ``sample_period_s`` apart.
    ``rho``/``tau_s``: lag-1 autocorrelation from those two, and the OU time constant it implies.
    ``within_sd_classic``/``rho_classic``: the non-robust equivalents (artefacts included).
    ``missing_fraction``/``missing_run_mean_s``: gaps where the vital is monitored at all.
    ``intermittent``: shown from intermittent readings held in between (cuff pressure); then
    ``within_sd``/``tau_s`` come from the distinct readings and ``reading_interval_s``.
    ``n_samples``/``n_patients``: valid native samples and patients this rests on.
    NaN: not measurable from these data (e.g. the vital was never recorded).
    """

    n_samples: int
    n_patients: int
    p5: float
    p25: float
    median: float
    p75: float
    p95: float
    within_sd: float
    change_sd: float
    rho: float
    tau_s: float
    within_sd_classic: float
    rho_classic: float
    missing_fraction: float
    missing_run_mean_s: float
    intermittent: bool = False
    reading_interval_s: float = math.nan

    @property
    def calibrated(self) -> bool:
        """True if the within-patient SD could be measured."""
        return math.isfinite(self.within_sd) and self.within_sd > 0

    @property
    def tau_resolved(self) -> bool:
        """True if tau is a measurement, not a guard value or a cuff artefact.

        Needs a continuously measured vital (for cuff pressure, reading-to-reading changes mix
        the drift with the cuff's own error and cannot separate them) and 0 < rho < 1.
        """
        return (
            self.calibrated
            and not self.intermittent
            and math.isfinite(self.rho)
            and 0.0 < self.rho < 1.0
        )


@dataclass(frozen=True, slots=True)
class CalibrationResult:
    """Per-vital statistics of a set of real recordings, pooled and per patient.

    ``sample_period_s``: the sampling period the statistics were taken at (60 for MIMIC
    numerics). ``duration_s``: recorded seconds per patient. ``vitals``/``per_patient``: keyed by
    `VITAL_COLUMNS` name. ``notes``: what the figures rest on, for whoever reads the JSON.
    """

    sample_period_s: float
    patients: tuple[str, ...]
    duration_s: Mapping[str, float]
    vitals: Mapping[str, VitalStats]
    per_patient: Mapping[str, Mapping[str, VitalStats]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __getitem__(self, vital: Vital) -> VitalStats:
        """Pooled statistics of ``vital``."""
        return self.vitals[VITAL_COLUMNS[vital]]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; NaN becomes None (JSON has no NaN)."""
        return {
            "sample_period_s": self.sample_period_s,
            "patients": list(self.patients),
            "duration_s": dict(self.duration_s),
            "vitals": {k: _stats_to_dict(v) for k, v in self.vitals.items()},
            "per_patient": {
                p: {k: _stats_to_dict(v) for k, v in d.items()} for p, d in self.per_patient.items()
            },
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalibrationResult:
        """Inverse of `to_dict`; KeyError/TypeError name what is missing or wrong."""
        return cls(
            sample_period_s=float(data["sample_period_s"]),
            patients=tuple(str(p) for p in data["patients"]),
            duration_s={str(k): float(v) for k, v in data["duration_s"].items()},
            vitals={str(k): _stats_from_dict(v) for k, v in data["vitals"].items()},
            per_patient={
                str(p): {str(k): _stats_from_dict(v) for k, v in d.items()}
                for p, d in data.get("per_patient", {}).items()
            },
            notes=tuple(str(n) for n in data.get("notes", ())),
        )

    def to_json(self, path: str | Path | None = None) -> str:
        """JSON text (written to ``path`` too if given)."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> CalibrationResult:
        """Read what `to_json` wrote (JSON text, or a path to a file holding it)."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text(encoding="utf-8")
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("calibration JSON must be an object")
        return cls.from_dict(data)


def _stats_to_dict(s: VitalStats) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in asdict(s).items():
        out[key] = None if isinstance(value, float) and not math.isfinite(value) else value
    return out


def _stats_from_dict(d: Mapping[str, Any]) -> VitalStats:
    kwargs: dict[str, Any] = {}
    for f in fields(VitalStats):
        if f.name not in d:
            if f.name in ("intermittent", "reading_interval_s"):
                continue  # defaults
            raise KeyError(f"calibration stats lack {f.name!r}")
        value = d[f.name]
        if f.name in ("n_samples", "n_patients"):
            kwargs[f.name] = int(value)
        elif f.name == "intermittent":
            kwargs[f.name] = bool(value)
        else:
            kwargs[f.name] = math.nan if value is None else float(value)
    return VitalStats(**kwargs)


def tau_from_rho(rho: float, period_s: float) -> float:
    """OU time constant (s) from the lag-``period_s`` autocorrelation, clipped to the guards.

    rho <= 0 gives `MIN_TAU_S`, rho >= 1 gives `MAX_TAU_S`, NaN stays NaN.
    """
    if not math.isfinite(rho):
        return math.nan
    if rho <= 0.0:
        return MIN_TAU_S
    if rho >= 1.0:
        return MAX_TAU_S
    return float(np.clip(-period_s / math.log(rho), MIN_TAU_S, MAX_TAU_S))


def native_samples(
    record: VitalsRecord, sample_period_s: float | None = None
) -> NDArray[np.float64]:
    """The rows of a 1 Hz vitals array that are real readings: every ``period``-th row.

    ``sample_period_s`` defaults to the record's ``native_period_s``; a longer period subsamples
    further (e.g. synthetic 1 Hz data at 60 s to compare with minute numerics). A period shorter
    than the native one would invent readings and is refused.
    """
    native = float(record.native_period_s)
    period = native if sample_period_s is None else float(sample_period_s)
    if period < native - 1e-9:
        raise ValueError(
            f"sample period {period:g} s is shorter than the native {native:g} s of "
            f"{record.patient}: that would count held copies as readings"
        )
    step = round(period)
    if step < 1 or abs(step - period) > 1e-9:
        raise ValueError(f"sample period must be a whole number of seconds, got {period:g}")
    v = np.asarray(record.vitals, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != N_VITALS:
        raise ValueError(f"vitals of {record.patient} must be (n, {N_VITALS}), got {v.shape}")
    out: NDArray[np.float64] = v[::step]
    return out


def _robust_sd(x: NDArray[np.float64]) -> float:
    if x.size == 0:
        return math.nan
    return float(_MAD_TO_SD * np.median(np.abs(x - np.median(x))))


def _runs(mask: NDArray[np.bool_]) -> NDArray[np.int64]:
    """Lengths of the runs of True in a 1-D mask."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    out: NDArray[np.int64] = (edges[1::2] - edges[0::2]).astype(np.int64)
    return out


@dataclass(slots=True)
class _Accumulator:
    """One patient's readings of one vital, across that patient's records."""

    values: list[NDArray[np.float64]] = field(default_factory=list)
    changes: list[NDArray[np.float64]] = field(default_factory=list)
    pairs: list[NDArray[np.float64]] = field(default_factory=list)  # (k, 2) consecutive values
    gaps_s: list[NDArray[np.float64]] = field(default_factory=list)  # time between readings
    missing: int = 0
    monitored: int = 0
    runs: list[NDArray[np.int64]] = field(default_factory=list)
    repeats: int = 0
    steps: int = 0


def _accumulate(acc: _Accumulator, x: NDArray[np.float64], period_s: float) -> None:
    finite = np.isfinite(x)
    if int(finite.sum()) < _MIN_SAMPLES:
        return  # not monitored in this record
    acc.monitored += x.size
    acc.missing += int((~finite).sum())
    acc.runs.append(_runs(~finite))
    acc.values.append(x[finite])
    both = finite[1:] & finite[:-1]
    d = (x[1:] - x[:-1])[both]
    acc.changes.append(d)
    acc.pairs.append(np.column_stack((x[:-1][both], x[1:][both])))
    acc.repeats += int(np.sum(d == 0.0))
    acc.steps += int(d.size)
    # Distinct readings (a new value, or the first value after a gap) and the time between them.
    idx = np.flatnonzero(finite)
    if idx.size:
        xi = x[idx]
        new = np.ones(idx.size, dtype=np.bool_)
        new[1:] = (xi[1:] != xi[:-1]) | (np.diff(idx) > 1)
        t_new = idx[new] * period_s
        acc.gaps_s.append(
            np.column_stack((np.diff(t_new), xi[new][1:] - xi[new][:-1])).astype(np.float64)
        )


@dataclass(frozen=True, slots=True)
class _PatientVital:
    """Per-patient robust figures of one vital and the counts to pool them with."""

    stats: VitalStats
    n_changes: int
    monitored: int
    runs: NDArray[np.int64]


def _patient_vital(acc: _Accumulator, period_s: float) -> _PatientVital | None:
    if not acc.values:
        return None
    values = np.concatenate(acc.values)
    changes = np.concatenate(acc.changes)
    pairs = np.concatenate(acc.pairs) if acc.pairs else np.empty((0, 2))
    runs = np.concatenate(acc.runs) if acc.runs else np.empty(0, dtype=np.int64)
    intermittent = acc.steps > 0 and acc.repeats / acc.steps > _INTERMITTENT_REPEAT_FRACTION
    interval = math.nan
    if intermittent:
        gaps = np.concatenate(acc.gaps_s) if acc.gaps_s else np.empty((0, 2))
        gaps = gaps[gaps[:, 0] <= _MAX_READING_GAP_S]
        # The distinct readings: the first of each held run.
        distinct = values[np.concatenate(([True], np.diff(values) != 0))]
        sd = _robust_sd(distinct - np.median(distinct))
        change_sd = _robust_sd(gaps[:, 1]) if gaps.size else math.nan
        interval = float(np.median(gaps[:, 0])) if gaps.size else math.nan
        lag_s = interval
        n_changes = int(gaps.shape[0])
    else:
        sd = _robust_sd(values - np.median(values))
        change_sd = _robust_sd(changes)
        lag_s = period_s
        n_changes = int(changes.size)
    rho = 1.0 - change_sd**2 / (2.0 * sd**2) if sd > 0 else math.nan
    classic_sd = float(np.std(values)) if values.size > 1 else math.nan
    rho_classic = math.nan
    if pairs.shape[0] > 2 and np.std(pairs[:, 0]) > 0 and np.std(pairs[:, 1]) > 0:
        rho_classic = float(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1])
    p5, p25, p50, p75, p95 = (float(q) for q in np.percentile(values, _PERCENTILES))
    stats = VitalStats(
        n_samples=int(values.size),
        n_patients=1,
        p5=p5,
        p25=p25,
        median=p50,
        p75=p75,
        p95=p95,
        within_sd=sd,
        change_sd=change_sd,
        rho=rho,
        tau_s=tau_from_rho(rho, lag_s),
        within_sd_classic=classic_sd,
        rho_classic=rho_classic,
        missing_fraction=acc.missing / acc.monitored if acc.monitored else math.nan,
        missing_run_mean_s=float(np.mean(runs)) * period_s if runs.size else 0.0,
        intermittent=intermittent,
        reading_interval_s=interval,
    )
    return _PatientVital(stats, n_changes, acc.monitored, runs)


def _weighted(pairs: Sequence[tuple[float, float]]) -> float:
    """Weighted mean of (value, weight) pairs, skipping NaN values and zero weights."""
    ok = [(v, w) for v, w in pairs if math.isfinite(v) and w > 0]
    total = sum(w for _, w in ok)
    return sum(v * w for v, w in ok) / total if total > 0 else math.nan


def _pool(
    per: Sequence[_PatientVital], all_values: NDArray[np.float64], period_s: float
) -> VitalStats:
    """Pool patients: variances weighted by readings (one-way ANOVA within-group variance).

    Weighting by readings, not one vote per patient, because a 72-minute record should not
    weigh as much as a 32-hour one in an estimate of within-patient variance; the per-patient
    figures are kept beside the pooled ones so the spread between patients stays visible.
    """
    if not per:
        nan = math.nan
        return VitalStats(0, 0, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan)
    # Same weight for both variances (pairs of consecutive readings), so that rho = 1 - change
    # variance / (2 variance) compares like with like.
    var = _weighted([(p.stats.within_sd**2, p.n_changes) for p in per])
    change_var = _weighted([(p.stats.change_sd**2, p.n_changes) for p in per])
    var_classic = _weighted([(p.stats.within_sd_classic**2, p.n_changes) for p in per])
    intermittent = sum(p.stats.n_samples for p in per if p.stats.intermittent) * 2 > sum(
        p.stats.n_samples for p in per
    )
    interval = _weighted([(p.stats.reading_interval_s, p.n_changes) for p in per])
    lag_s = interval if intermittent else period_s
    rho = 1.0 - change_var / (2.0 * var) if var > 0 else math.nan
    runs = np.concatenate([p.runs for p in per])
    missing = sum(p.stats.missing_fraction * p.monitored for p in per)
    p5, p25, p50, p75, p95 = (float(q) for q in np.percentile(all_values, _PERCENTILES))
    return VitalStats(
        n_samples=int(all_values.size),
        n_patients=len(per),
        p5=p5,
        p25=p25,
        median=p50,
        p75=p75,
        p95=p95,
        within_sd=math.sqrt(var) if math.isfinite(var) else math.nan,
        change_sd=math.sqrt(change_var) if math.isfinite(change_var) else math.nan,
        rho=rho,
        tau_s=tau_from_rho(rho, lag_s),
        within_sd_classic=math.sqrt(var_classic) if math.isfinite(var_classic) else math.nan,
        rho_classic=_weighted([(p.stats.rho_classic, p.n_changes) for p in per]),
        missing_fraction=missing / sum(p.monitored for p in per),
        missing_run_mean_s=float(np.mean(runs)) * period_s if runs.size else 0.0,
        intermittent=intermittent,
        reading_interval_s=interval if intermittent else math.nan,
    )


def calibrate(
    patients: Sequence[VitalsRecord], *, sample_period_s: float | None = None
) -> CalibrationResult:
    """Statistics of every vital of ``patients`` at their native rate (see module docstring).

    ``sample_period_s``: the period to take readings at; default the largest native period of
    the records (60 s for MIMIC numerics), so records of different rates are compared at the
    same lag. Records of one patient are pooled (changes never straddle two records).
    """
    if not patients:
        raise ValueError("calibrate needs at least one recording")
    period = (
        max(float(p.native_period_s) for p in patients)
        if sample_period_s is None
        else float(sample_period_s)
    )
    ids = sorted({p.patient for p in patients})
    accs = {pid: [_Accumulator() for _ in range(N_VITALS)] for pid in ids}
    duration: dict[str, float] = dict.fromkeys(ids, 0.0)
    for rec in patients:
        x = native_samples(rec, period)
        duration[rec.patient] += float(np.asarray(rec.vitals).shape[0])
        for col in range(N_VITALS):
            _accumulate(accs[rec.patient][col], x[:, col], period)
    pooled: dict[str, VitalStats] = {}
    per_patient: dict[str, dict[str, VitalStats]] = {pid: {} for pid in ids}
    for col, name in enumerate(VITAL_COLUMNS):
        per: list[_PatientVital] = []
        values: list[NDArray[np.float64]] = []
        for pid in ids:
            pv = _patient_vital(accs[pid][col], period)
            if pv is None:
                continue
            per.append(pv)
            per_patient[pid][name] = pv.stats
            values.extend(accs[pid][col].values)
        pooled[name] = _pool(per, np.concatenate(values) if values else np.empty(0), period)
    notes = (
        f"readings every {period:g} s (native rate; 1 Hz rows in between are held copies)",
        f"{len(ids)} patient(s): within-patient statistics only; between-patient spread is "
        "not measurable from so few patients",
        "within_sd/change_sd/rho/tau are robust (MAD); patients pooled weighted by readings "
        "(one-way ANOVA within-patient variance); percentiles pool all readings",
        "intermittent vitals (cuff pressure held between readings): SD and tau from the "
        "distinct readings and the median time between them",
    )
    return CalibrationResult(period, tuple(ids), duration, pooled, per_patient, notes)


def plot_calibration(
    real: Sequence[VitalsRecord],
    synth: Sequence[VitalsRecord],
    path: str | Path,
    *,
    sample_period_s: float = 60.0,
    vitals: Sequence[Vital] = tuple(Vital),
    synth_label: str = "synthetic",
) -> Path:
    """Real vs synthetic distributions per vital, both sampled every ``sample_period_s``; a PNG.

    Columns: values (between- and within-patient: the between-patient part is NOT calibrated),
    deviation from each patient's own median (the within-patient spread that is calibrated),
    and changes between consecutive samples (log density, so the tails show). Density
    histograms on shared bins. matplotlib is imported here (Agg backend), never at module
    level: the edge device does not have it.
    """
    import matplotlib as mpl  # noqa: PLC0415 - heavy and optional, training only

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    calib = calibrate(real, sample_period_s=sample_period_s) if real else None

    def gather(recs: Sequence[VitalsRecord], col: int) -> list[NDArray[np.float64]]:
        vals: dict[str, list[NDArray[np.float64]]] = {}
        diffs = []
        for rec in recs:
            x = native_samples(rec, sample_period_s)[:, col]
            vals.setdefault(rec.patient, []).append(x[np.isfinite(x)])
            d = np.diff(x)
            diffs.append(d[np.isfinite(d)])
        per = [np.concatenate(v) for v in vals.values()]
        per = [v for v in per if v.size]
        empty = np.empty(0)
        values = np.concatenate(per) if per else empty
        dev = np.concatenate([v - np.median(v) for v in per]) if per else empty
        return [values, dev, np.concatenate(diffs) if diffs else empty]

    n_real = len({r.patient for r in real})
    n_syn = len({s.patient for s in synth})
    fig, axes = plt.subplots(len(vitals), 3, figsize=(15, 2.7 * len(vitals)), squeeze=False)
    for row, vital in enumerate(vitals):
        name = VITAL_COLUMNS[vital].upper()
        unit = _UNITS[vital]
        xlabels = (
            f"{name} [{unit}]",
            f"{name} minus the patient's median [{unit}]",
            f"{name} change over {sample_period_s:g} s [{unit}]",
        )
        real_cols = gather(real, int(vital))
        syn_cols = gather(synth, int(vital))
        for col in range(3):
            _hist_pair(
                axes[row, col],
                real_cols[col],
                syn_cols[col],
                xlabel=xlabels[col],
                real_label=f"real MIMIC-III ({n_real} pt",
                synth_label=f"{synth_label} ({n_syn} pt",
                log=col == 2,
            )
        axes[row, 0].set_title(f"{name}: values (between-patient part not calibrated)", fontsize=8)
        axes[row, 1].set_title(
            _within_title(name, unit, calib[vital] if calib else None), fontsize=8
        )
        axes[row, 2].set_title(f"{name}: one-sample changes", fontsize=8)
    fig.suptitle(
        f"Real vs synthetic vitals, one sample every {sample_period_s:g} s",
        fontsize=11,
    )
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.985))
    out = Path(path)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def _hist_pair(
    ax: Any,
    real: NDArray[np.float64],
    synth: NDArray[np.float64],
    *,
    xlabel: str,
    real_label: str,
    synth_label: str,
    log: bool,
) -> None:
    """Real (filled) and synthetic (outline) density histograms on shared bins."""
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("density", fontsize=8)
    ax.tick_params(labelsize=7)
    both = np.concatenate((real, synth))
    if both.size == 0:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    lo, hi = np.percentile(both, [0.5, 99.5])
    if hi <= lo:
        lo, hi = lo - 1.0, hi + 1.0
    bins = np.linspace(lo, hi, 60)
    if real.size:
        label = f"{real_label}, n={real.size})"
        ax.hist(real, bins=bins, density=True, alpha=0.55, color="C0", label=label)
    else:
        ax.text(0.02, 0.92, "no real data for this vital", transform=ax.transAxes, fontsize=7)
    if synth.size:
        label = f"{synth_label}, n={synth.size})"
        ax.hist(synth, bins=bins, density=True, histtype="step", lw=1.5, color="C3", label=label)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=6, loc="upper right")


_UNITS: Final[dict[Vital, str]] = {
    Vital.HR: "bpm",
    Vital.SPO2: "%",
    Vital.RR: "breaths/min",
    Vital.SBP: "mmHg",
    Vital.DBP: "mmHg",
    Vital.MAP: "mmHg",
    Vital.TEMP: "degC",
}


def _within_title(name: str, unit: str, st: VitalStats | None) -> str:
    if st is None or not st.calibrated:
        return f"{name}: within-patient (no real data: library values)"
    tau = f"tau {st.tau_s / 60:.0f} min" if st.tau_resolved else "tau not resolved"
    cuff = ", real = cuff held between readings" if st.intermittent else ""
    return f"{name}: within-patient, real robust SD {st.within_sd:.2g} {unit}, {tau}{cuff}"
