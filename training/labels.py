"""Weak labels by per-patient z-score (the original design), and how they compare with truth.

The original design labelled a second anomalous when any vital was far from that patient's own
recent baseline: ``|x - baseline| / scale > threshold``. It needs no annotation, which is why it
was proposed, and it is a WEAK label: it flags artefacts as readily as deterioration, misses
slow changes that drag the baseline along, and says nothing about which clinical event it saw.
The simulator's injected events (`training.synth`) give real ground truth with onset times; this
module measures the weak labels against them (`compare_labels`) so the choice is made on numbers.

Rules of the z-score labeller:

- CAUSAL: the baseline of second t uses only seconds before t. It is re-estimated every
  ``step_s`` seconds (default 60, like a monitor refreshing its reference each minute) from the
  ``baseline_s`` seconds before that refresh, so it lags t by up to ``step_s``; changing any
  value at or after t never changes the label of a second before t.
- ROBUST: baseline = median, scale = 1.4826 x MAD, floored per vital at `SCALE_FLOOR` (about the
  resolution of a bedside reading), so a flat stretch (SpO2 at 100 %, a held cuff pressure) does
  not turn a one-unit change into an infinite z.
- A baseline needs at least ``min_valid_fraction`` of its window measured; before that (warm-up,
  long gaps) the second is not labelled anomalous. A value that is not measured (NaN) is not
  anomalous: gaps are technical, not clinical.
- Threshold tuning (`tune_zscore_threshold`) sees training patients only and maximises the
  pooled per-second F1 against "any clinical event active"; ties go to the higher threshold
  (fewer alerts).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from firmware_bridge.sim.events import CLINICAL_KINDS, EventKind
from firmware_bridge.sim.vitals import N_VITALS, Vital

__all__ = [
    "DEFAULT_THRESHOLDS",
    "KIND_VITALS",
    "MAX_WINDOW_POINTS",
    "SCALE_FLOOR",
    "LabelAgreement",
    "LabelledVitals",
    "ThresholdTuning",
    "ZScoreEvaluation",
    "compare_labels",
    "evaluate_zscore",
    "tune_zscore_threshold",
    "zscore",
    "zscore_labels",
    "zscore_labels_per_vital",
]

_MAD_TO_SD: Final = 1.4826
# Smallest scale of a z-score, per vital, in the vital's unit: about the display resolution and
# reading-to-reading noise of a bedside monitor (HR +-1-2 bpm, SpO2 +-1 %, RR +-1 /min,
# cuff pressure +-3 mmHg, temperature +-0.1 degC).
SCALE_FLOOR: Final[dict[Vital, float]] = {
    Vital.HR: 2.0,
    Vital.SPO2: 1.0,
    Vital.RR: 1.5,
    Vital.SBP: 3.0,
    Vital.DBP: 3.0,
    Vital.MAP: 3.0,
    Vital.TEMP: 0.1,
}
_FLOOR: Final = np.array([SCALE_FLOOR[v] for v in Vital])
# Thresholds tried by the tuner (|z|).
DEFAULT_THRESHOLDS: Final = tuple(float(x) for x in np.round(np.arange(2.0, 10.01, 0.25), 2))
# Baseline windows processed per chunk (bounds memory: chunk x 7 x window points floats).
_CHUNK_BLOCKS: Final = 64
# A baseline window is subsampled to at most this many points (every k-th second, counted back
# from the newest): a median of 600 points is as good a baseline as one of 3600 correlated ones
# and six times cheaper.
MAX_WINDOW_POINTS: Final = 600

# Which vitals each clinical event kind moves (firmware_bridge.sim.events); a per-kind weak label
# is a flag on any of them.
KIND_VITALS: Final[dict[EventKind, tuple[Vital, ...]]] = {
    EventKind.DESATURATION: (Vital.SPO2,),
    EventKind.TACHYCARDIA: (Vital.HR,),
    EventKind.BRADYCARDIA: (Vital.HR,),
    EventKind.TACHYPNOEA: (Vital.RR,),
    EventKind.BRADYPNOEA: (Vital.RR,),
    EventKind.APNOEA: (Vital.RR,),
    EventKind.HYPOTENSION: (Vital.SBP, Vital.DBP, Vital.MAP),
    EventKind.FEVER: (Vital.TEMP, Vital.HR),
}


class LabelledVitals(Protocol):
    """A patient with 1 Hz vitals and per-second truth (`training.synth.SynthPatient` has it)."""

    @property
    def patient(self) -> str:
        """Patient identity."""
        ...

    @property
    def vitals(self) -> NDArray[np.float64]:
        """(n, 7) at 1 Hz, NaN = not measured."""
        ...

    @property
    def labels(self) -> Mapping[EventKind, NDArray[np.bool_]]:
        """Per kind, True where such an event is active."""
        ...


def _check(vitals: NDArray[np.float64]) -> NDArray[np.float64]:
    v = np.asarray(vitals, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != N_VITALS:
        raise ValueError(f"vitals must be (n, {N_VITALS}), got {v.shape}")
    return v


def zscore(
    vitals: NDArray[np.float64],
    *,
    baseline_s: int,
    step_s: int = 60,
    min_valid_fraction: float = 0.5,
) -> NDArray[np.float64]:
    """Per-vital causal robust z-score (n, 7); NaN where there is no baseline or no value.

    Second t in block b = t // step_s is scored against the median and MAD of seconds
    [b * step_s - baseline_s, b * step_s): the past only (see module docstring); windows
    longer than `MAX_WINDOW_POINTS` seconds use every k-th second of it.
    """
    v = _check(vitals)
    if baseline_s < 1 or step_s < 1:
        raise ValueError(f"baseline_s={baseline_s} and step_s={step_s} must be >= 1 s")
    n = v.shape[0]
    n_blocks = -(-n // step_s)
    padded = np.vstack((np.full((baseline_s, N_VITALS), np.nan), v))
    # Window of block b = padded rows [b * step, b * step + baseline_s) = v[b*step - baseline_s,
    # b*step): strictly before the block's first second.
    windows = sliding_window_view(padded, baseline_s, axis=0)  # (n + 1, 7, baseline_s) view
    centre = np.full((n_blocks, N_VITALS), np.nan)
    scale = np.full((n_blocks, N_VITALS), np.nan)
    stride = max(1, -(-baseline_s // MAX_WINDOW_POINTS))
    need = min_valid_fraction * len(range(0, baseline_s, stride))
    for start in range(0, n_blocks, _CHUNK_BLOCKS):
        blocks = np.arange(start, min(start + _CHUNK_BLOCKS, n_blocks))
        w = windows[blocks * step_s][:, :, ::-stride]  # (k, 7, <= MAX_WINDOW_POINTS) copy
        valid = np.isfinite(w).sum(axis=2)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            # An all-NaN window (warm-up, long gap) is expected; `ok` below handles it.
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(w, axis=2)
            mad = np.nanmedian(np.abs(w - med[:, :, None]), axis=2)
        ok = valid >= need
        centre[blocks] = np.where(ok, med, np.nan)
        scale[blocks] = np.where(ok, np.maximum(_MAD_TO_SD * mad, _FLOOR), np.nan)
    block_of = np.arange(n) // step_s
    out: NDArray[np.float64] = (v - centre[block_of]) / scale[block_of]
    return out


def zscore_labels_per_vital(
    vitals: NDArray[np.float64], *, baseline_s: int, threshold: float, step_s: int = 60
) -> NDArray[np.bool_]:
    """(n, 7) bool: |z| > ``threshold`` per vital (see `zscore`)."""
    z = zscore(vitals, baseline_s=baseline_s, step_s=step_s)
    with np.errstate(invalid="ignore"):
        out: NDArray[np.bool_] = np.abs(z) > threshold  # NaN compares False: not anomalous
    return out


def zscore_labels(
    vitals: NDArray[np.float64], *, baseline_s: int, threshold: float, step_s: int = 60
) -> NDArray[np.bool_]:
    """(n,) bool: a second is anomalous when |z| > ``threshold`` on any vital."""
    per_vital = zscore_labels_per_vital(
        vitals, baseline_s=baseline_s, threshold=threshold, step_s=step_s
    )
    out: NDArray[np.bool_] = np.any(per_vital, axis=1)
    return out


def _truth_any(labels: Mapping[EventKind, NDArray[np.bool_]], n: int) -> NDArray[np.bool_]:
    out = np.zeros(n, dtype=np.bool_)
    for kind in CLINICAL_KINDS:
        if kind in labels:
            out |= np.asarray(labels[kind], dtype=np.bool_)
    return out


def _f1(tp: float, fp: float, fn: float) -> float:
    return 2.0 * tp / (2.0 * tp + fp + fn) if tp > 0 else 0.0


@dataclass(frozen=True, slots=True)
class ThresholdTuning:
    """Result of `tune_zscore_threshold`: the chosen |z| and the F1 of every candidate."""

    threshold: float
    f1: float
    baseline_s: int
    thresholds: tuple[float, ...]
    f1_per_threshold: tuple[float, ...]
    n_patients: int
    rule: str = "max pooled per-second F1 vs any clinical event; ties to the higher threshold"


def tune_zscore_threshold(
    train_vitals: Sequence[NDArray[np.float64]],
    labels_truth: Sequence[NDArray[np.bool_] | Mapping[EventKind, NDArray[np.bool_]]],
    *,
    baseline_s: int,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    step_s: int = 60,
) -> ThresholdTuning:
    """Pick the |z| threshold on TRAINING patients only (one array per patient).

    ``labels_truth``: per patient, a per-second bool array or the `event_labels` mapping (then
    any clinical kind counts). Rule: maximise the per-second F1 pooled over the patients; ties
    go to the higher threshold. The z-scores are computed once per patient.
    """
    if len(train_vitals) != len(labels_truth) or not train_vitals:
        raise ValueError(
            f"need one truth per training patient, got {len(train_vitals)} vitals and "
            f"{len(labels_truth)} truths"
        )
    grid = np.asarray(sorted(thresholds), dtype=np.float64)
    tp = np.zeros(grid.size)
    fp = np.zeros(grid.size)
    fn = np.zeros(grid.size)
    for v, truth in zip(train_vitals, labels_truth, strict=True):
        z = zscore(v, baseline_s=baseline_s, step_s=step_s)
        with np.errstate(invalid="ignore"):
            zmax = np.nanmax(np.where(np.isfinite(z), np.abs(z), -np.inf), axis=1)
        y = (
            _truth_any(truth, z.shape[0])
            if isinstance(truth, Mapping)
            else np.asarray(truth, dtype=np.bool_)
        )
        if y.shape[0] != z.shape[0]:
            raise ValueError(f"truth has {y.shape[0]} seconds, vitals {z.shape[0]}")
        flagged = zmax[None, :] > grid[:, None]  # (thresholds, n)
        tp += (flagged & y).sum(axis=1)
        fp += (flagged & ~y).sum(axis=1)
        fn += (~flagged & y).sum(axis=1)
    f1 = np.array([_f1(a, b, c) for a, b, c in zip(tp, fp, fn, strict=True)])
    best = int(np.flatnonzero(f1 == f1.max())[-1])
    return ThresholdTuning(
        threshold=float(grid[best]),
        f1=float(f1[best]),
        baseline_s=baseline_s,
        thresholds=tuple(float(x) for x in grid),
        f1_per_threshold=tuple(float(x) for x in f1),
        n_patients=len(train_vitals),
    )


@dataclass(frozen=True, slots=True)
class LabelAgreement:
    """Weak labels vs truth for one event kind (or "any"), pooled over patients.

    Per second: ``precision`` = flagged seconds inside such an event / flagged seconds (flags on
    the vitals the kind moves; for "any", flags on any vital vs any clinical event);
    ``recall`` = event seconds flagged / event seconds. ``prevalence`` is the precision a
    random labeller would get. Per event: ``event_recall`` = events with at least one flag
    between onset and end; ``median_latency_s`` = onset to first flag, over detected events.
    """

    kind: str
    precision: float
    recall: float
    f1: float
    prevalence: float
    flag_rate: float
    support_s: int
    n_events: int
    event_recall: float
    median_latency_s: float


def _runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))


def compare_labels(
    weak: Sequence[NDArray[np.bool_]],
    truth: Sequence[Mapping[EventKind, NDArray[np.bool_]]],
) -> dict[str, LabelAgreement]:
    """Agreement of weak labels with the injected ground truth, per clinical kind and "any".

    ``weak``: per patient, (n, 7) per-vital flags (`zscore_labels_per_vital`) or (n,) flags
    (then every kind is judged on the same flags). ``truth``: per patient, the `event_labels`
    mapping; kinds that never occur are left out. Patients are pooled by summing counts
    (events never straddle two patients).
    """
    if len(weak) != len(truth):
        raise ValueError(f"{len(weak)} weak label arrays for {len(truth)} truths")
    kinds = sorted(
        {k for t in truth for k in t if k in CLINICAL_KINDS and np.any(t[k])},
        key=lambda k: k.value,
    )
    names = ["any", *(k.value for k in kinds)]
    counts = {name: np.zeros(4) for name in names}  # tp, fp, fn, n
    events: dict[str, list[float]] = {name: [] for name in names}  # latency, NaN = missed
    for w_in, t in zip(weak, truth, strict=True):
        w: NDArray[np.bool_] = np.asarray(w_in, dtype=np.bool_)
        per_vital = w.ndim == 2  # (n, 7) per-vital flags, else (n,)
        n = w.shape[0]
        flag_any: NDArray[np.bool_] = np.any(w, axis=1) if per_vital else w
        for name in names:
            if name == "any":
                y = _truth_any(t, n)
                f = flag_any
            else:
                kind = EventKind(name)
                y = np.asarray(t[kind], dtype=np.bool_)
                cols = [int(c) for c in KIND_VITALS[kind]]
                f = np.any(w[:, cols], axis=1) if per_vital else flag_any
            counts[name] += (
                float((f & y).sum()),
                float((f & ~y).sum()),
                float((~f & y).sum()),
                float(n),
            )
            for lo, hi in _runs(y):
                hit = np.flatnonzero(f[lo:hi])
                events[name].append(float(hit[0]) if hit.size else math.nan)
    out: dict[str, LabelAgreement] = {}
    for name in names:
        tp, fp, fn, n_total = counts[name]
        lat = np.array(events[name])
        detected = lat[np.isfinite(lat)]
        out[name] = LabelAgreement(
            kind=name,
            precision=tp / (tp + fp) if tp + fp > 0 else math.nan,
            recall=tp / (tp + fn) if tp + fn > 0 else math.nan,
            f1=_f1(tp, fp, fn),
            prevalence=(tp + fn) / n_total if n_total else math.nan,
            flag_rate=(tp + fp) / n_total if n_total else math.nan,
            support_s=int(tp + fn),
            n_events=int(lat.size),
            event_recall=float(detected.size / lat.size) if lat.size else math.nan,
            median_latency_s=float(np.median(detected)) if detected.size else math.nan,
        )
    return out


@dataclass(frozen=True, slots=True)
class ZScoreEvaluation:
    """Threshold tuned on training patients, agreement measured on test patients."""

    tuning: ThresholdTuning
    train_patients: tuple[str, ...]
    test_patients: tuple[str, ...]
    agreement: dict[str, LabelAgreement]


def evaluate_zscore(
    train: Sequence[LabelledVitals],
    test: Sequence[LabelledVitals],
    *,
    baseline_s: int,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    step_s: int = 60,
) -> ZScoreEvaluation:
    """Tune the threshold on ``train``, compare weak labels with truth on ``test``.

    Refuses a patient that is in both groups: splits are by patient, never by sample.
    """
    train_ids = {p.patient for p in train}
    test_ids = {p.patient for p in test}
    if shared := train_ids & test_ids:
        raise ValueError(f"patients in both train and test: {sorted(shared)[:5]}")
    tuning = tune_zscore_threshold(
        [p.vitals for p in train],
        [p.labels for p in train],
        baseline_s=baseline_s,
        thresholds=thresholds,
        step_s=step_s,
    )
    weak = [
        zscore_labels_per_vital(
            p.vitals, baseline_s=baseline_s, threshold=tuning.threshold, step_s=step_s
        )
        for p in test
    ]
    agreement = compare_labels(weak, [p.labels for p in test])
    return ZScoreEvaluation(tuning, tuple(sorted(train_ids)), tuple(sorted(test_ids)), agreement)
