"""Manual assessment: typed-in vitals scored by the vitals bundle's risk model, with its reasons.

``vigil-edge assess --hr 128 --spo2 88 ...`` lands here (the CLI only loads the bundle and
prints). Pure: numpy and the bundle's loaded components, no I/O, no scikit-learn or TensorFlow.

Rules
-----

1. **Validate first.** Every value must be a finite number inside its `PLAUSIBLE_RANGES` entry
   (bounds included), and DBP below SBP. `AssessError` names the flag, the bad value and the
   plausible range; nothing is scored from a value that is probably a typo or a wrong unit.
2. **Glucose is checked, not used.** Glucose (mmol/L, or mg/dL converted at `MG_DL_PER_MMOL_L`)
   is validated, but a vitals bundle (models/BUNDLE.md) has no glucose input: the assessment
   says so, naming the bundle version, instead of pretending it counted.
3. **The same pipeline as the monitor.** The manual vitals are held steady for the longest
   feature window (300 rows at 1 Hz with the default spec) and run through `compute_features`;
   the last row is scored exactly as `edge.learned` rule 4 does: ``z = scaler(features)``,
   autoencoder ``mse``, IsolationForest score, DBSCAN ratio, risk ``P(event)`` on
   ``[z, mse, iforest, dbscan]`` against the manifest's ``risk.probability`` threshold. So the
   result is what the bedside monitor would report after five minutes of these exact values.
   A steady series has zero deltas, zero slopes and zero variability whatever was typed, so
   only the levels (and which vitals are missing) make one manual entry differ from another.
   Those zeros are not zero after scaling (real signals are never that still), so they add the
   same fixed offset to every entry: `Factor.parts` shows it as ``held steady``.
4. **Missing vitals.** Only DBP is optional. Without it DBP and MAP are NaN ("not measured")
   and `models.features` rule 1 applies: their level is the bundle's fill value and their
   missing flag is set, as for a monitor without a blood-pressure cuff. The output says so.
5. **Factors are the model's own arithmetic.** ``LogisticScorer.contributions`` gives
   ``coef_j * z_j`` per risk input; a vital's factor is the sum over that vital's features, the
   three detector scores are factors of their own. ``intercept + sum(factors)`` is the logit of
   the reported probability.
6. **Same refusal as the runtime.** A bundle the edge would refuse (`LearnedDetector`, rule 6
   of `edge.learned`) is refused here with the same `LearnedModelError`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from edge.explain import VITAL_LABELS
from edge.learned import ENSEMBLE, THRESHOLD_KEYS, LearnedDetector
from edge.plausible import (
    GLUCOSE_MG_DL,
    GLUCOSE_UNITS,
    MG_DL_PER_MMOL_L,
    PLAUSIBLE_RANGES,
    ImplausibleValueError,
    PlausibleRange,
)
from models.bundle import Bundle
from models.features import VITAL_NAMES, FeatureSpec, compute_features
from models.logistic import LogisticScorer
from models.scaler import Standardizer

__all__ = [
    "GLUCOSE_UNITS",
    "MG_DL_PER_MMOL_L",
    "PLAUSIBLE_RANGES",
    "AssessError",
    "Assessment",
    "Factor",
    "ManualVitals",
    "PlausibleRange",
    "assess",
    "format_assessment",
    "parse_manual",
]

_log = logging.getLogger(__name__)


AssessError = ImplausibleValueError
"""Manual input that cannot be assessed (the plausibility error of edge/plausible.py)."""

_GLUCOSE = PLAUSIBLE_RANGES["glucose_mmol_l"]
_REQUIRED: Final = ("hr_bpm", "spo2_pct", "rr_per_min", "sbp_mmhg", "temp_c")
_KEY_TO_FIELD: Final = {r.key: name for name, r in PLAUSIBLE_RANGES.items()}
_UNIT_KEY: Final = "glucose_unit"


# --------------------------------------------------------------------------------- the input


@dataclass(frozen=True, slots=True)
class ManualVitals:
    """Vitals typed in at the bedside, validated on construction (`AssessError`).

    Units are in the names. ``dbp_mmhg`` is optional (without it DBP and MAP are "not
    measured"); ``glucose_mmol_l`` is optional and not used by a vitals bundle (rule 2).
    """

    hr_bpm: float
    spo2_pct: float
    rr_per_min: float
    sbp_mmhg: float
    dbp_mmhg: float | None
    temp_c: float
    glucose_mmol_l: float | None = None

    def __post_init__(self) -> None:
        """Check every value against `PLAUSIBLE_RANGES` and DBP < SBP."""
        for name, spec in PLAUSIBLE_RANGES.items():
            value = getattr(self, name)
            if value is not None:
                spec.check(float(value))
        if self.dbp_mmhg is not None and not self.dbp_mmhg < self.sbp_mmhg:
            raise AssessError(
                "--dbp", self.dbp_mmhg,
                f"{self.dbp_mmhg:g} mmHg is not below --sbp {self.sbp_mmhg:g} mmHg; a diastolic "
                "pressure is always lower than the systolic (swapped?)",
            )

    @property
    def map_mmhg(self) -> float | None:
        """Mean arterial pressure by the one-third rule, DBP + (SBP - DBP) / 3; None without DBP.

        The same rule as the feature fill values (models.features): a cuff's MAP estimate.
        """
        if self.dbp_mmhg is None:
            return None
        return self.dbp_mmhg + (self.sbp_mmhg - self.dbp_mmhg) / 3.0

    def vitals_row(self) -> npt.NDArray[np.float64]:
        """One (7,) vitals row in `VITAL_NAMES` order, NaN where not measured (DBP, MAP)."""
        values = {
            "hr_bpm": self.hr_bpm, "spo2_pct": self.spo2_pct, "rr_per_min": self.rr_per_min,
            "sbp_mmhg": self.sbp_mmhg, "dbp_mmhg": self.dbp_mmhg, "map_mmhg": self.map_mmhg,
            "temp_c": self.temp_c,
        }
        return np.array(
            [math.nan if values[n] is None else values[n] for n in VITAL_NAMES], dtype=np.float64
        )


def _number(spec: PlausibleRange, text: str) -> float:
    """``text`` as a finite float, or `AssessError` naming the flag and the range."""
    try:
        value = float(text.strip())
    except (ValueError, AttributeError):
        value = math.nan
    if not math.isfinite(value):
        raise AssessError(
            spec.flag, text, f"{text!r} is not a number; plausible {spec.describe()}"
        )
    return value


def parse_manual(raw: Mapping[str, str]) -> ManualVitals:
    """Validated `ManualVitals` from text, keyed like the flags: ``hr``, ``spo2``, ``rr``,
    ``sbp``, ``dbp`` (optional), ``temp``, ``glucose`` (optional), ``glucose_unit``.

    ``glucose_unit`` is ``mmol/L`` (default) or ``mg/dL``; an mg/dL value is checked against
    the mmol/L range converted to mg/dL, then converted. Raises `AssessError` on the first
    problem: unknown key, missing or non-numeric value, value out of range, DBP >= SBP.
    """
    unknown = sorted(set(raw) - set(_KEY_TO_FIELD) - {_UNIT_KEY})
    if unknown:
        known = ", ".join([*_KEY_TO_FIELD, _UNIT_KEY])
        raise AssessError(unknown[0], raw[unknown[0]], f"unknown field; known: {known}")
    values: dict[str, float | None] = {}
    for key, name in _KEY_TO_FIELD.items():
        spec = PLAUSIBLE_RANGES[name]
        text = raw.get(key)
        if text is None:
            if name in _REQUIRED:
                raise AssessError(spec.flag, None, f"missing; plausible {spec.describe()}")
            values[name] = None
            continue
        if name == "glucose_mmol_l":
            values[name] = _glucose_mmol_l(text, raw.get(_UNIT_KEY, GLUCOSE_UNITS[0]))
        else:
            values[name] = _number(spec, text)
    required = {n: v for n, v in values.items() if n in _REQUIRED and v is not None}
    return ManualVitals(
        **required, dbp_mmhg=values["dbp_mmhg"], glucose_mmol_l=values["glucose_mmol_l"]
    )


def _glucose_mmol_l(text: str, unit_text: str) -> float:
    """Glucose in mmol/L from text in ``unit_text``; mg/dL is range-checked in mg/dL first."""
    unit = {u.lower(): u for u in GLUCOSE_UNITS}.get(unit_text.strip().lower())
    if unit is None:
        raise AssessError(
            "--glucose-unit", unit_text,
            f"{unit_text!r} is not a known unit; use {' or '.join(GLUCOSE_UNITS)}",
        )
    if unit == "mmol/L":
        return _number(_GLUCOSE, text)
    mg_dl = _number(GLUCOSE_MG_DL, text)
    GLUCOSE_MG_DL.check(mg_dl)
    # mg/dL bounds are the mmol/L bounds times the factor; dividing back can miss a bound by
    # one ulp, which must not turn an accepted mg/dL value into a refused mmol/L one.
    return min(max(mg_dl / MG_DL_PER_MMOL_L, _GLUCOSE.low), _GLUCOSE.high)


# ---------------------------------------------------------------------------- the assessment

_DETECTOR_LABELS: Final[Mapping[str, str]] = {
    "autoencoder": "Autoencoder reconstruction error",
    "iforest": "Isolation-forest score",
    "dbscan": "DBSCAN distance / eps",
}

Direction = Literal["raises", "lowers", "neutral"]

_SHOWN_PART: Final = 0.005
"""Parts of a factor smaller than this (log-odds) print as nothing: they round to 0.00."""
_STEADY_KINDS: Final = ("delta", "std_", "slope_")


def _part(feature: str) -> str:
    """Which part of its vital's factor a feature belongs to (see `Factor.parts`)."""
    kind = feature.split(".", 1)[1] if "." in feature else ""
    if kind == "missing":
        return "missing flag"
    return "held steady" if kind.startswith(_STEADY_KINDS) else "level"


@dataclass(frozen=True, slots=True)
class Factor:
    """One input of the risk model and how far it pushed the logit (log-odds units).

    ``name``: a vital (`VITAL_NAMES`) or a detector score key (``iforest.score``). ``value``
    in ``unit`` (the detector scores are unitless). ``note``: where the value came from when it
    was not typed in (derived, fill value) or the detector's vote threshold.
    """

    name: str
    label: str
    value: float
    unit: str
    contribution: float
    note: str = ""
    parts: Mapping[str, float] = field(default_factory=dict)
    """A vital's contribution split by feature kind (sums to ``contribution``): ``level``
    (level and window means), ``held steady`` (delta, std, slope: all zero in a steady
    series, so this part is how the model reads "no change, no variability") and ``missing
    flag``. Empty for a detector score."""

    @property
    def direction(self) -> Direction:
        """Whether this factor ``raises`` or ``lowers`` the risk (``neutral``: exactly 0)."""
        if self.contribution > 0:
            return "raises"
        return "lowers" if self.contribution < 0 else "neutral"

    def describe(self) -> str:
        """``SpO2 88 % raises risk by 1.92`` (log-odds), with the note in brackets."""
        value = f"{self.value:.4g}" + (f" {self.unit}" if self.unit else "")
        note = f" ({self.note})" if self.note else ""
        shown = [f"{k} {v:+.2f}" for k, v in self.parts.items() if abs(v) >= _SHOWN_PART]
        parts = f" [{', '.join(shown)}]" if shown else ""
        if self.direction == "neutral":
            return f"{self.label} {value}{note}: no effect on risk{parts}"
        return (
            f"{self.label} {value}{note} {self.direction} risk by "
            f"{abs(self.contribution):.2f}{parts}"
        )


@dataclass(frozen=True, slots=True)
class Assessment:
    """What the bundle's risk model says about the manual vitals, and why.

    ``probability``: P(event) of the risk component; ``threshold``: the manifest's
    ``risk.probability`` (the monitor raises ``risk_high`` when ``probability > threshold``).
    ``logit = intercept + sum(f.contribution for f in factors)``. ``factors`` are sorted by
    |contribution|, largest first. ``contributions``: every risk input by feature name.
    ``detector_scores`` / ``votes``: the unsupervised detectors on the same row.
    """

    bundle_version: str
    manual: ManualVitals
    probability: float
    threshold: float
    logit: float
    intercept: float
    factors: tuple[Factor, ...]
    detector_scores: Mapping[str, float]
    votes: Mapping[str, bool]
    contributions: Mapping[str, float]
    series_s: float
    notes: tuple[str, ...] = field(default=())

    @property
    def above_threshold(self) -> bool:
        """True when the monitor would raise ``risk_high`` for this row (p > threshold)."""
        return self.probability > self.threshold

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``vigil-edge assess --json``); floats at full precision."""
        m = self.manual
        return {
            "bundle_version": self.bundle_version,
            "risk": {
                "probability": self.probability,
                "threshold": self.threshold,
                "above_threshold": self.above_threshold,
                "logit": self.logit,
                "intercept": self.intercept,
            },
            "factors": [
                {
                    "name": f.name, "label": f.label, "value": f.value, "unit": f.unit,
                    "contribution": f.contribution, "direction": f.direction, "note": f.note,
                    "parts": dict(f.parts),
                }
                for f in self.factors
            ],
            "inputs": {
                "hr_bpm": m.hr_bpm, "spo2_pct": m.spo2_pct, "rr_per_min": m.rr_per_min,
                "sbp_mmhg": m.sbp_mmhg, "dbp_mmhg": m.dbp_mmhg, "map_mmhg": m.map_mmhg,
                "temp_c": m.temp_c, "glucose_mmol_l": m.glucose_mmol_l,
            },
            "glucose_used": False,
            "detectors": {
                name: {
                    "score": self.detector_scores[THRESHOLD_KEYS[name]],
                    "vote": self.votes[name],
                }
                for name in ENSEMBLE
            },
            "contributions": dict(self.contributions),
            "series_s": self.series_s,
            "notes": list(self.notes),
        }


def _component(bundle: Bundle, name: str, kind: type[Any]) -> Any:
    comp = bundle.components[name]
    if not isinstance(comp, kind):  # LearnedDetector checked it; keeps mypy and readers sure
        raise TypeError(f"component {name} is {type(comp).__name__}, expected {kind.__name__}")
    return comp


def _notes(
    bundle: Bundle, spec: FeatureSpec, manual: ManualVitals, series_s: float
) -> tuple[str, ...]:
    notes = []
    labels = ", ".join(VITAL_LABELS[v][0] for v in spec.vitals)
    if manual.glucose_mmol_l is not None:
        notes.append(
            f"Glucose {manual.glucose_mmol_l:.3g} mmol/L is plausible, but bundle "
            f"{bundle.version}'s risk model does not use glucose (its inputs are {labels} and "
            "the three anomaly-detector scores): it did not count."
        )
    if manual.dbp_mmhg is None:
        fill = dict(zip(spec.vitals, spec.fill_values, strict=True))
        notes.append(
            f"DBP not given: DBP and MAP count as not measured, so the model sees its fill "
            f"values {fill['dbp_mmhg']:g} and {fill['map_mmhg']:g} mmHg with their missing "
            "flags set (the feature pipeline's rule for a vital never measured)."
        )
    notes.append(
        f"Scored as {series_s:g} s of these values held steady, as the monitor would after "
        f"{series_s:g} s of exactly these readings: trends and variability are zero for every "
        "manual entry, so only the levels make one entry differ from another; the 'held "
        "steady' part of a factor is the same offset every time (how the model reads a "
        "perfectly still signal)."
    )
    return tuple(notes)


def assess(bundle: Bundle, manual: ManualVitals) -> Assessment:
    """Risk of the manual vitals by ``bundle``'s risk model, with the factors behind it.

    A steady series of the vitals, as long as the longest feature window (300 rows at 1 Hz by
    default), goes through `compute_features`; its last row is scaled and scored by the
    autoencoder (mse), IsolationForest and DBSCAN, then the risk component on
    ``[z, mse, iforest, dbscan]``. A steady series has zero deltas, slopes and std for every
    entry, so only the levels (and missing vitals) drive differences between entries; the
    zeros' own constant push is reported as each vital's ``held steady`` part. Raises
    `edge.learned.LearnedModelError` for a bundle the edge would refuse.
    """
    detector = LearnedDetector(bundle, ())  # the runtime's refusal rules, nothing else
    thresholds = detector.thresholds
    spec = FeatureSpec.from_dict(bundle.manifest.feature_spec)
    scaler = Standardizer.from_dict(bundle.manifest.scaler)
    risk: LogisticScorer = _component(bundle, "risk", LogisticScorer)

    n_rows = max(spec.window_samples)
    series_s = n_rows * spec.sample_period_s
    features = compute_features(np.tile(manual.vitals_row(), (n_rows, 1)), spec)[-1]
    z = scaler.transform(features)
    recon = np.asarray(bundle.components["autoencoder"].score(z[None].astype(np.float32)))
    mse = float(np.mean((recon[0].astype(np.float64) - z) ** 2))
    if_score = float(bundle.components["iforest"].score(z[None])[0])
    db_ratio = float(bundle.components["dbscan"].score(z[None])[0])
    risk_in = np.r_[z, mse, if_score, db_ratio]
    probability = float(risk.score(risk_in[None])[0])
    logit = float(risk.decision_function(risk_in[None])[0])
    contrib = risk.contributions(risk_in)

    names = [*spec.feature_names(), *(THRESHOLD_KEYS[d] for d in ENSEMBLE)]
    typed = manual.vitals_row()
    factors: list[Factor] = []
    for i, vital in enumerate(spec.vitals):
        mine = [j for j, n in enumerate(names) if n.split(".", 1)[0] == vital]
        label, unit = VITAL_LABELS[vital]
        note = ""
        value = float(typed[i])
        if math.isnan(value):
            value, note = spec.fill_values[i], "not given: fill value"
        elif vital == "map_mmhg":
            note = "derived from SBP and DBP"
        parts = dict.fromkeys(("level", "held steady", "missing flag"), 0.0)
        for j in mine:
            parts[_part(names[j])] += float(contrib[j])
        factors.append(
            Factor(vital, label, value, unit, float(contrib[mine].sum()), note, parts)
        )
    scores = {"autoencoder.mse": mse, "iforest.score": if_score, "dbscan.ratio": db_ratio}
    votes = {
        "autoencoder": mse > thresholds["autoencoder.mse"],
        "iforest": if_score < thresholds["iforest.score"],
        "dbscan": db_ratio > thresholds["dbscan.ratio"],
    }
    for k, name in enumerate(ENSEMBLE):
        key = THRESHOLD_KEYS[name]
        sign = "<" if name == "iforest" else ">"
        vote = "votes" if votes[name] else "no vote"
        factors.append(
            Factor(
                key, _DETECTOR_LABELS[name], scores[key], "",
                float(contrib[spec.n_features + k]),
                f"{vote}: anomaly when {sign} {thresholds[key]:.3g}",
            )
        )
    factors.sort(key=lambda f: abs(f.contribution), reverse=True)
    _log.debug("assessed %s with bundle %s: p = %.4f", manual, bundle.version, probability)
    return Assessment(
        bundle_version=bundle.version,
        manual=manual,
        probability=probability,
        threshold=thresholds["risk.probability"],
        logit=logit,
        intercept=risk.intercept,
        factors=tuple(factors),
        detector_scores=scores,
        votes=votes,
        contributions={n: float(c) for n, c in zip(names, contrib, strict=True)},
        series_s=series_s,
        notes=_notes(bundle, spec, manual, series_s),
    )


def format_assessment(a: Assessment) -> str:
    """The human-readable report ``vigil-edge assess`` prints (ends with a newline)."""
    where = "above" if a.above_threshold else "not above"
    lines = [
        f"Risk of deterioration: {a.probability:.2f} ({where} this bundle's alert threshold "
        f"{a.threshold:.2f}) — bundle {a.bundle_version}",
        "Factors, largest first (push on the risk model's log-odds):",
        *(f"  {f.describe()}" for f in a.factors),
        f"  (baseline log-odds {a.intercept:+.2f}; with the factors {a.logit:+.2f})",
        "Notes:",
        *(f"  - {n}" for n in a.notes),
    ]
    return "\n".join(lines) + "\n"
