"""The one feature pipeline: per-second vitals rows in, a finite feature vector per row out.

Training (`compute_features`, a whole recording at once) and the edge (`FeatureStream`, one row
per tick; `MultiBedFeatureStream`, one row per bed per tick) run this same code and give
bit-for-bit identical features. Pure numpy, no I/O, no clock: the caller feeds exactly one
vitals row per sample period (1 s), a row of NaN when nothing was measured that second.

Input row: `VITAL_NAMES` order (the simulator's ``Vital`` columns and the edge's
``VITAL_FIELDS``): HR bpm, SpO2 %, RR /min, SBP/DBP/MAP mmHg, temperature degC. Any non-finite
value (NaN, +-inf) is "not measured".

Rules (the contract a trained model relies on; changing one bumps `FEATURE_SPEC_VERSION`)
-----------------------------------------------------------------------------------------

0. Input conditioning. Values are clipped to +-`VALUE_LIMIT` (500 units, beyond every vital)
   and rounded to `1 / QUANTUM_PER_UNIT` (0.001 unit, finer than the wire's 0.1 unit and
   0.01 degC, so real readings are unchanged). All window sums are then exact int64 integers:
   streaming and batch cannot drift apart, however long they run.
1. ``<vital>`` (level): the latest valid value, carried forward without a time limit through
   missing samples. Before the vital's first valid value: ``FeatureSpec.fill_values`` (a
   typical resting adult value, see `DEFAULT_FILL_VALUES`).
2. ``<vital>.delta``: change since the previous valid value (unit per sample, i.e. per second),
   across any gap. 0 when the current sample is missing or no earlier valid value exists.
3. Window ``w`` covers the current sample and the ``w / sample_period_s - 1`` before it. At the
   start of a stream the samples before the first are treated as missing, so a window that is
   not yet full uses what is there. ``n`` = number of valid samples in the window. Statistics
   are over those valid samples only, and are *defined* when ``n >= m_w`` with
   ``m_w = max(2, ceil(min_valid_fraction * window samples))`` (default fraction 0.1: 3, 12 and
   30 samples for 30 s, 2 min, 5 min). When not defined: mean = the level (rule 1), std = 0,
   slope = 0.
   - ``<vital>.mean_<w>s``: arithmetic mean (unit).
   - ``<vital>.std_<w>s``: population standard deviation, ddof = 0 (unit).
   - ``<vital>.slope_<w>s``: least-squares slope of value against sample time (unit per
     minute; time of sample k is ``k * sample_period_s``).
4. ``<vital>.missing``: 1.0 when the current sample is not measured, else 0.0.

Every output is finite. Feature order: per vital (in `VITAL_NAMES` order) level, delta, then per
window (ascending) mean, std, slope, then missing — see `FeatureSpec.feature_names`.

Why integers: float running sums (add the new sample, subtract the one leaving) accumulate
rounding error and disagree with a batch cumulative sum after hours. Quantized int64 sums are
exact, so both paths produce the same integers and then apply the same float formula
(`_finish_windows`) element by element. Batch cumulative sums use uint64 (wrap-around is modular
and defined); only window differences are used, and those are small, so they are exact.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DEFAULT_FILL_VALUES",
    "DEFAULT_WINDOWS_S",
    "FEATURE_SPEC_VERSION",
    "MAX_WINDOW_SAMPLES",
    "QUANTUM_PER_UNIT",
    "VALUE_LIMIT",
    "VITAL_NAMES",
    "FeatureSpec",
    "FeatureSpecError",
    "FeatureStream",
    "MultiBedFeatureStream",
    "compute_features",
]

FEATURE_SPEC_VERSION: Final = 1
"""Version of the rules in the module docstring; a bundle with another version is refused."""

VITAL_NAMES: Final[tuple[str, ...]] = (
    "hr_bpm",
    "spo2_pct",
    "rr_per_min",
    "sbp_mmhg",
    "dbp_mmhg",
    "map_mmhg",
    "temp_c",
)
"""Columns of a vitals row (same order as ``edge.bedstate.VITAL_FIELDS`` and the sim's Vital)."""

N_VITALS: Final = len(VITAL_NAMES)

DEFAULT_WINDOWS_S: Final[tuple[int, ...]] = (30, 120, 300)
"""Rolling windows in seconds: short artefact-scale, 2 min trend, 5 min trend."""

QUANTUM_PER_UNIT: Final = 1000
"""Inputs are rounded to 1/1000 of their unit (wire resolution is 0.1 unit, 0.01 degC)."""

VALUE_LIMIT: Final = 500.0
"""Inputs are clipped to +-500 units (no vital exceeds 300): keeps the integer sums in int64."""

MAX_WINDOW_SAMPLES: Final = 3600
"""Longest window in samples. With VALUE_LIMIT and QUANTUM_PER_UNIT, n^2 * variance stays below
(3600 * 5e5)^2 = 3.2e18 < 2^63, so every integer in the window formulas is exact."""

_MIN_VALID_FLOOR: Final = 2  # std and slope need two distinct samples
_SECONDS_PER_MINUTE: Final = 60.0
_FRACTION_DIGITS: Final = 9  # 0.1 * 30 is 3.0000000000000004 in float: round before ceil

# Typical resting adult values, used only before a vital's first valid reading (the missing
# flag says the level is imputed). HR, RR and temperature: middle of the NEWS2 score-0 band
# (RCP 2017: HR 51-90, RR 12-20, temp 36.1-38.0); SpO2: inside the NEWS2 scale-1 score-0 band
# (>= 96 %); blood pressure: the conventional normal adult 120/80 mmHg, MAP by the one-third
# rule (80 + 40/3).
DEFAULT_FILL_VALUES: Final[tuple[float, ...]] = (70.0, 97.0, 16.0, 120.0, 80.0, 93.0, 37.0)

_FIELDS: Final = (
    "version",
    "vitals",
    "windows_s",
    "sample_period_s",
    "min_valid_fraction",
    "fill_values",
)


class FeatureSpecError(ValueError):
    """A feature specification (usually read from a model bundle) is invalid.

    ``field`` names the offending key (``windows_s``, ``fill_values.temp_c``, ...).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool
    )


@dataclass(frozen=True)
class FeatureSpec:
    """What the pipeline computes; travels in the model bundle (`to_dict` / `from_dict`).

    ``windows_s``: rolling windows in seconds, strictly increasing, each a whole number of
    samples between 2 and `MAX_WINDOW_SAMPLES`. ``sample_period_s``: seconds between rows (1 s:
    the VITALS frame rate). ``min_valid_fraction``: share of a window's samples that must be
    valid for its statistics to be defined (rule 3). ``fill_values``: level before the first
    valid reading, per vital in `VITAL_NAMES` order, in the vital's unit (rule 1).
    Invalid values raise `FeatureSpecError` naming the field.
    """

    version: int = FEATURE_SPEC_VERSION
    vitals: tuple[str, ...] = VITAL_NAMES
    windows_s: tuple[int, ...] = DEFAULT_WINDOWS_S
    sample_period_s: float = 1.0
    min_valid_fraction: float = 0.1
    fill_values: tuple[float, ...] = DEFAULT_FILL_VALUES

    def __post_init__(self) -> None:
        """Validate every field and normalise sequences to tuples (JSON gives lists)."""
        if not _is_int(self.version) or self.version != FEATURE_SPEC_VERSION:
            raise FeatureSpecError(
                "version",
                f"{self.version!r} is not supported; this code computes version "
                f"{FEATURE_SPEC_VERSION}",
            )
        if not isinstance(self.vitals, list | tuple) or tuple(self.vitals) != VITAL_NAMES:
            raise FeatureSpecError(
                "vitals", f"{self.vitals!r}; must be exactly {list(VITAL_NAMES)} in this order"
            )
        object.__setattr__(self, "vitals", tuple(self.vitals))
        period = self.sample_period_s
        if not _is_number(period) or not (math.isfinite(period) and period > 0):
            raise FeatureSpecError("sample_period_s", f"{period!r}; must be a number > 0")
        object.__setattr__(self, "sample_period_s", float(period))
        self._check_windows()
        frac = self.min_valid_fraction
        if not _is_number(frac) or not (math.isfinite(frac) and 0.0 < frac <= 1.0):
            raise FeatureSpecError("min_valid_fraction", f"{frac!r}; must be in (0, 1]")
        object.__setattr__(self, "min_valid_fraction", float(frac))
        fills = self.fill_values
        if not isinstance(fills, list | tuple) or len(fills) != N_VITALS:
            raise FeatureSpecError(
                "fill_values", f"{fills!r}; must be {N_VITALS} numbers in VITAL_NAMES order"
            )
        for name, value in zip(VITAL_NAMES, fills, strict=True):
            if not _is_number(value) or not math.isfinite(value):
                raise FeatureSpecError(f"fill_values.{name}", f"{value!r}; must be finite")
        object.__setattr__(self, "fill_values", tuple(float(v) for v in fills))

    def _check_windows(self) -> None:
        windows = self.windows_s
        if not isinstance(windows, list | tuple) or not windows:
            raise FeatureSpecError("windows_s", f"{windows!r}; must be a non-empty list")
        for w in windows:
            if not _is_int(w):
                raise FeatureSpecError("windows_s", f"{w!r} is not an integer number of seconds")
            samples = w / self.sample_period_s
            if abs(samples - round(samples)) > 1e-9:
                raise FeatureSpecError(
                    "windows_s", f"{w} s is not a whole number of {self.sample_period_s} s samples"
                )
            if not _MIN_VALID_FLOOR <= round(samples) <= MAX_WINDOW_SAMPLES:
                raise FeatureSpecError(
                    "windows_s",
                    f"{w} s is {round(samples)} samples; allowed {_MIN_VALID_FLOOR}.."
                    f"{MAX_WINDOW_SAMPLES}",
                )
        if any(b <= a for a, b in itertools.pairwise(windows)):
            raise FeatureSpecError("windows_s", f"{list(windows)} must be strictly increasing")
        object.__setattr__(self, "windows_s", tuple(int(w) for w in windows))

    # ----------------------------------------------------------------------- derived values

    @property
    def window_samples(self) -> tuple[int, ...]:
        """Length of each window in samples."""
        return tuple(round(w / self.sample_period_s) for w in self.windows_s)

    @property
    def min_valid_counts(self) -> tuple[int, ...]:
        """Per window, valid samples needed for its statistics (rule 3 of the module doc)."""
        return tuple(
            max(_MIN_VALID_FLOOR, math.ceil(round(self.min_valid_fraction * n, _FRACTION_DIGITS)))
            for n in self.window_samples
        )

    @property
    def features_per_vital(self) -> int:
        """Level, delta, (mean, std, slope) per window, missing flag."""
        return 3 + 3 * len(self.windows_s)

    @property
    def n_features(self) -> int:
        """Length of a feature vector."""
        return N_VITALS * self.features_per_vital

    def feature_names(self) -> list[str]:
        """Column names of the feature matrix, e.g. ``hr_bpm.slope_30s`` (units: module doc)."""
        names: list[str] = []
        for vital in self.vitals:
            names += [vital, f"{vital}.delta"]
            for w in self.windows_s:
                names += [f"{vital}.mean_{w}s", f"{vital}.std_{w}s", f"{vital}.slope_{w}s"]
            names.append(f"{vital}.missing")
        return names

    # ------------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (plain ints, floats, strings, lists, dicts)."""
        return {
            "version": self.version,
            "vitals": list(self.vitals),
            "windows_s": list(self.windows_s),
            "sample_period_s": self.sample_period_s,
            "min_valid_fraction": self.min_valid_fraction,
            "fill_values": dict(zip(self.vitals, self.fill_values, strict=True)),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Read `to_dict` output back; `FeatureSpecError` names the first bad field."""
        if not isinstance(data, Mapping):
            raise FeatureSpecError("spec", f"expected a JSON object, got {type(data).__name__}")
        for key in data:
            if key not in _FIELDS:
                raise FeatureSpecError(str(key), f"unknown key; known: {', '.join(_FIELDS)}")
        for key in _FIELDS:
            if key not in data:
                raise FeatureSpecError(key, "missing")
        fills = data["fill_values"]
        if not isinstance(fills, Mapping):
            raise FeatureSpecError("fill_values", f"expected an object {{vital: value}}: {fills!r}")
        for key in fills:
            if key not in VITAL_NAMES:
                raise FeatureSpecError(f"fill_values.{key}", "unknown vital")
        for name in VITAL_NAMES:
            if name not in fills:
                raise FeatureSpecError(f"fill_values.{name}", "missing")
        return cls(
            version=data["version"],
            vitals=data["vitals"],
            windows_s=data["windows_s"],
            sample_period_s=data["sample_period_s"],
            min_valid_fraction=data["min_valid_fraction"],
            fill_values=tuple(fills[name] for name in VITAL_NAMES),
        )


# ------------------------------------------------------------------------------ shared maths


def _quantize(
    x: NDArray[np.float64],
    valid: NDArray[np.bool_],
    invalid: NDArray[np.bool_],
    scratch: NDArray[np.float64],
    out: NDArray[np.int64],
) -> None:
    """Rule 0: validity flags and x clipped, in integer quanta (0 where not valid)."""
    np.isfinite(x, out=valid)
    np.logical_not(valid, out=invalid)
    np.minimum(x, VALUE_LIMIT, out=scratch)  # not np.clip: it allocates per call
    np.maximum(scratch, -VALUE_LIMIT, out=scratch)
    np.multiply(scratch, float(QUANTUM_PER_UNIT), out=scratch)
    np.rint(scratch, out=scratch)
    np.copyto(scratch, 0.0, where=invalid)
    np.copyto(out, scratch, casting="unsafe")


class _Sums:
    """Window sums over the valid samples, time j relative to the window's first sample.

    n = count, sx = sum x, sxx = sum x^2, st = sum j, stt = sum j^2, stx = sum j*x (all int64).
    """

    __slots__ = ("n", "st", "stt", "stx", "sx", "sxx")

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.n: NDArray[np.int64] = np.zeros(shape, dtype=np.int64)
        self.sx: NDArray[np.int64] = np.zeros(shape, dtype=np.int64)
        self.sxx: NDArray[np.int64] = np.zeros(shape, dtype=np.int64)
        self.st: NDArray[np.int64] = np.zeros(shape, dtype=np.int64)
        self.stt: NDArray[np.int64] = np.zeros(shape, dtype=np.int64)
        self.stx: NDArray[np.int64] = np.zeros(shape, dtype=np.int64)

    def fill(self, value: int) -> None:
        for name in self.__slots__:
            getattr(self, name).fill(value)


class _Scratch:
    """Temporaries for `_finish_windows`, allocated once per shape."""

    __slots__ = ("f1", "f2", "i1", "i2", "notok", "ok")

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.i1: NDArray[np.int64] = np.zeros(shape, dtype=np.int64)
        self.i2: NDArray[np.int64] = np.zeros(shape, dtype=np.int64)
        self.f1: NDArray[np.float64] = np.zeros(shape, dtype=np.float64)
        self.f2: NDArray[np.float64] = np.zeros(shape, dtype=np.float64)
        self.ok: NDArray[np.bool_] = np.zeros(shape, dtype=np.bool_)
        self.notok: NDArray[np.bool_] = np.zeros(shape, dtype=np.bool_)


def _finish_windows(
    s: _Sums,
    level: NDArray[np.float64],
    *,
    min_valid: NDArray[np.int64] | int,
    per_minute: float,
    mean: NDArray[np.float64],
    std: NDArray[np.float64],
    slope: NDArray[np.float64],
    t: _Scratch,
) -> None:
    """Integer window sums -> mean, std, slope (rule 3). The ONLY float maths on window sums.

    Batch and streaming both call this with identical integers, so they get identical floats
    (every step is one correctly rounded IEEE operation per element).
    """
    q = float(QUANTUM_PER_UNIT)
    np.greater_equal(s.n, min_valid, out=t.ok)
    np.logical_not(t.ok, out=t.notok)
    np.copyto(t.f2, s.n, casting="unsafe")  # n as float
    # mean = sx / n / q
    np.copyto(t.f1, s.sx, casting="unsafe")
    np.divide(t.f1, t.f2, out=t.f1, where=t.ok)
    np.divide(t.f1, q, out=mean, where=t.ok)
    np.copyto(mean, level, where=t.notok)
    # std = sqrt(n*sxx - sx^2) / n / q ; the integer under the root is n^2 var >= 0, exact
    np.multiply(s.n, s.sxx, out=t.i1)
    np.multiply(s.sx, s.sx, out=t.i2)
    np.subtract(t.i1, t.i2, out=t.i1)
    np.copyto(t.f1, t.i1, casting="unsafe")
    np.sqrt(t.f1, out=t.f1, where=t.ok)
    np.divide(t.f1, t.f2, out=t.f1, where=t.ok)
    np.divide(t.f1, q, out=std, where=t.ok)
    np.copyto(std, 0.0, where=t.notok)
    # slope = (n*stx - st*sx) / (n*stt - st^2) per sample -> per minute, / q
    np.multiply(s.n, s.stt, out=t.i1)
    np.multiply(s.st, s.st, out=t.i2)
    np.subtract(t.i1, t.i2, out=t.i1)
    np.copyto(t.f2, t.i1, casting="unsafe")  # denominator (> 0 when n >= 2)
    np.multiply(s.n, s.stx, out=t.i1)
    np.multiply(s.st, s.sx, out=t.i2)
    np.subtract(t.i1, t.i2, out=t.i1)
    np.copyto(t.f1, t.i1, casting="unsafe")
    np.divide(t.f1, t.f2, out=t.f1, where=t.ok)
    np.multiply(t.f1, per_minute, out=t.f1, where=t.ok)
    np.divide(t.f1, q, out=slope, where=t.ok)
    np.copyto(slope, 0.0, where=t.notok)


def _check_rows(vitals: NDArray[Any], ndim_hint: str) -> None:
    if vitals.ndim != 2 or vitals.shape[1] != N_VITALS:
        raise ValueError(f"vitals must have shape {ndim_hint}, got {vitals.shape}")


# ------------------------------------------------------------------------------------- batch


def _window_sums_batch(
    xq: NDArray[np.int64], vi: NDArray[np.int64], window: int, base: int = 0
) -> _Sums:
    """Window sums for every row of an (n, 7) recording, via uint64 cumulative sums.

    Samples before row 0 count as missing. ``base`` is the absolute index of row 0 (0 in
    normal use; tests shift it to force the cumulative sums to wrap around 2^64).
    """
    n_rows = xq.shape[0]
    u = np.uint64
    i = (np.arange(n_rows, dtype=np.int64) + np.int64(base)).view(u)[:, None]
    xu, vu = xq.view(u), vi.view(u)

    def window_sum(a: NDArray[np.uint64]) -> NDArray[np.uint64]:
        c = np.zeros((n_rows + 1, a.shape[1]), dtype=u)
        np.cumsum(a, axis=0, out=c[1:])
        hi = np.arange(1, n_rows + 1)
        lo = np.maximum(hi - window, 0)
        out: NDArray[np.uint64] = c[hi] - c[lo]
        return out

    s = _Sums((0,))
    n_u, sx_u = window_sum(vu), window_sum(xu)
    a1, a2, b1 = window_sum(i * vu), window_sum(i * i * vu), window_sum(i * xu)
    start = (np.arange(n_rows, dtype=np.int64) + np.int64(base - window + 1)).view(u)[:, None]
    s.n = n_u.view(np.int64)
    s.sx = sx_u.view(np.int64)
    s.sxx = window_sum(xu * xu).view(np.int64)
    s.st = (a1 - start * n_u).view(np.int64)
    s.stt = (a2 - u(2) * start * a1 + start * start * n_u).view(np.int64)
    s.stx = (b1 - start * sx_u).view(np.int64)
    return s


def compute_features(
    vitals: NDArray[np.floating[Any]], spec: FeatureSpec | None = None
) -> NDArray[np.float64]:
    """Features of a whole recording: (n, 7) vitals rows, 1 per sample period -> (n, F).

    Row k of the result equals what `FeatureStream.update` returns for row k after rows 0..k
    (exactly, not approximately). Vectorized over rows; loops only over windows.
    """
    spec = spec or FeatureSpec()
    x = np.asarray(vitals, dtype=np.float64)
    _check_rows(x, "(n, 7)")
    n_rows = x.shape[0]
    k = spec.features_per_vital
    out = np.empty((n_rows, N_VITALS, k), dtype=np.float64)
    if n_rows == 0:
        return out.reshape(0, spec.n_features)
    valid = np.empty(x.shape, dtype=np.bool_)
    invalid = np.empty(x.shape, dtype=np.bool_)
    xq = np.empty(x.shape, dtype=np.int64)
    _quantize(x, valid, invalid, np.empty_like(x), xq)
    vi = valid.astype(np.int64)
    q = float(QUANTUM_PER_UNIT)

    # Rules 1, 2: last valid index up to each row, and the one before.
    idx = np.arange(n_rows)[:, None]
    last = np.maximum.accumulate(np.where(valid, idx, -1), axis=0)
    have = last >= 0
    last_q = np.take_along_axis(xq, np.maximum(last, 0), axis=0)
    level = out[:, :, 0]
    np.copyto(level, last_q, casting="unsafe")
    np.divide(level, q, out=level)
    np.copyto(level, np.asarray(spec.fill_values), where=~have)
    prev = np.vstack([np.full((1, N_VITALS), -1), last[:-1]])
    prev_q = np.take_along_axis(xq, np.maximum(prev, 0), axis=0)
    d = (xq - prev_q) * (valid & (prev >= 0))
    delta = out[:, :, 1]
    np.copyto(delta, d, casting="unsafe")
    np.divide(delta, q, out=delta)
    np.copyto(out[:, :, k - 1], invalid, casting="unsafe")

    # Rule 3, one window at a time.
    per_minute = _SECONDS_PER_MINUTE / spec.sample_period_s
    scratch = _Scratch(x.shape)
    mean, std, slope = (np.empty(x.shape) for _ in range(3))
    for w, (window, m_min) in enumerate(
        zip(spec.window_samples, spec.min_valid_counts, strict=True)
    ):
        sums = _window_sums_batch(xq, vi, window)
        _finish_windows(
            sums, level, min_valid=m_min, per_minute=per_minute,
            mean=mean, std=std, slope=slope, t=scratch,
        )
        col = 2 + 3 * w
        out[:, :, col], out[:, :, col + 1], out[:, :, col + 2] = mean, std, slope
    return out.reshape(n_rows, spec.n_features)


# --------------------------------------------------------------------------------- streaming


class MultiBedFeatureStream:
    """Streaming features for B beds at once: ``update((B, 7)) -> (B, F)`` per tick.

    One row per bed per sample period, all beds ticking together (a bed with nothing new that
    second gets a NaN row). State is preallocated int64 ring buffers of the longest window and
    integer window sums, updated in O(windows x vitals x beds) vectorized work per tick; a tick
    allocates no arrays (every ufunc writes into a preallocated, contiguous, same-shape buffer:
    numpy allocates temporaries for broadcasting, casting or strided ``where=`` outputs).
    Bed b's row equals ``compute_features`` of that bed's rows so far, exactly.
    """

    def __init__(self, spec: FeatureSpec | None = None, n_beds: int = 1) -> None:
        """``n_beds``: fixed number of beds (rows of every update)."""
        if n_beds < 1:
            raise ValueError(f"n_beds must be >= 1, got {n_beds}")
        self.spec = spec or FeatureSpec()
        self.n_beds = n_beds
        b, v, nw = n_beds, N_VITALS, len(self.spec.windows_s)
        shape2, shape3 = (b, v), (nw, b, v)
        self._k = self.spec.features_per_vital
        self._wmax = max(self.spec.window_samples)
        self._windows = np.array(self.spec.window_samples, dtype=np.intp)
        sizes = np.array(self.spec.window_samples, dtype=np.int64).reshape(nw, 1, 1)
        # constants at full shape: ufuncs with broadcast operands allocate temporaries
        self._wm1 = np.ascontiguousarray(np.broadcast_to(sizes - 1, shape3))
        self._wm1_sq = self._wm1 * self._wm1
        counts = np.array(self.spec.min_valid_counts, dtype=np.int64).reshape(nw, 1, 1)
        self._min_valid = np.ascontiguousarray(np.broadcast_to(counts, shape3))
        self._per_minute = _SECONDS_PER_MINUTE / self.spec.sample_period_s
        self._fill = np.ascontiguousarray(
            np.broadcast_to(np.asarray(self.spec.fill_values, dtype=np.float64), shape2)
        )
        # state
        self._xring = np.zeros((self._wmax, b, v), dtype=np.int64)
        self._vring = np.zeros((self._wmax, b, v), dtype=np.int64)
        self._pos = 0
        self._sums = _Sums(shape3)
        self._last_q = np.zeros(shape2, dtype=np.int64)
        self._have = np.zeros(shape2, dtype=np.int64)  # 1 once a valid value was seen
        self._allocate_temporaries(shape2, shape3)
        # output and named views into it (no copies)
        self._out = np.zeros((b, self.spec.n_features), dtype=np.float64)
        out3 = self._out.reshape(b, v, self._k)
        self._level = out3[:, :, 0]
        self._delta = out3[:, :, 1]
        self._missing = out3[:, :, self._k - 1]
        stats = out3[:, :, 2 : 2 + 3 * nw].reshape(b, v, nw, 3)
        self._mean = stats[..., 0].transpose(2, 0, 1)
        self._std = stats[..., 1].transpose(2, 0, 1)
        self._slope = stats[..., 2].transpose(2, 0, 1)
        self.reset()

    def _allocate_temporaries(
        self, shape2: tuple[int, int], shape3: tuple[int, int, int]
    ) -> None:
        """Per-tick scratch buffers: (B, 7) for one value per bed and vital, (windows, B, 7)."""
        self._x = np.zeros(shape2, dtype=np.float64)
        self._f = np.zeros(shape2, dtype=np.float64)
        self._level_c = np.zeros(shape2, dtype=np.float64)
        self._valid = np.zeros(shape2, dtype=np.bool_)
        self._invalid = np.zeros(shape2, dtype=np.bool_)
        self._no_value = np.zeros(shape2, dtype=np.bool_)
        self._xq = np.zeros(shape2, dtype=np.int64)
        self._vi = np.zeros(shape2, dtype=np.int64)
        self._both = np.zeros(shape2, dtype=np.int64)
        self._d = np.zeros(shape2, dtype=np.int64)
        self._xq3 = np.zeros(shape3, dtype=np.int64)
        self._vi3 = np.zeros(shape3, dtype=np.int64)
        self._xo = np.zeros(shape3, dtype=np.int64)
        self._vo = np.zeros(shape3, dtype=np.int64)
        self._tmp = np.zeros(shape3, dtype=np.int64)
        self._mean_c = np.zeros(shape3, dtype=np.float64)
        self._std_c = np.zeros(shape3, dtype=np.float64)
        self._slope_c = np.zeros(shape3, dtype=np.float64)
        self._scratch = _Scratch(shape3)
        self._idx = np.zeros(shape3[0], dtype=np.intp)

    def reset(self, bed: int | None = None) -> None:
        """Forget history (all beds, or one bed, e.g. after its board restarted).

        Afterwards the bed's features are those of a fresh stream.
        """
        if bed is None:
            self._xring.fill(0)
            self._vring.fill(0)
            self._sums.fill(0)
            self._last_q.fill(0)
            self._have.fill(0)
            self._out.fill(0.0)
            self._pos = 0
            return
        if not 0 <= bed < self.n_beds:
            raise IndexError(f"bed {bed} out of range 0..{self.n_beds - 1}")
        self._xring[:, bed] = 0
        self._vring[:, bed] = 0
        for name in _Sums.__slots__:
            getattr(self._sums, name)[:, bed] = 0
        self._last_q[bed] = 0
        self._have[bed] = 0
        self._out[bed] = 0.0

    @property
    def n_features(self) -> int:
        """Columns of the output."""
        return self.spec.n_features

    def update(self, samples: NDArray[np.float64]) -> NDArray[np.float64]:
        """Feed one (B, 7) row per bed; returns the (B, F) features of this tick.

        The result is a view of an internal buffer that the next `update` or `reset`
        overwrites: copy it to keep it. ``samples`` is not modified or retained.
        """
        if samples.shape != self._x.shape:
            raise ValueError(f"samples must have shape {self._x.shape}, got {samples.shape}")
        np.copyto(self._x, samples)
        self._step()
        return self._out

    def _step(self) -> None:
        q = float(QUANTUM_PER_UNIT)
        s = self._sums
        xq, vi, valid = self._xq, self._vi, self._valid
        _quantize(self._x, valid, self._invalid, self._f, xq)
        np.copyto(vi, valid, casting="unsafe")
        np.copyto(self._missing, self._invalid, casting="unsafe")
        # rule 2: delta against the previous valid value, then rule 1: carry forward
        np.multiply(vi, self._have, out=self._both)
        np.subtract(xq, self._last_q, out=self._d)
        np.multiply(self._d, self._both, out=self._d)
        np.copyto(self._f, self._d, casting="unsafe")
        np.divide(self._f, q, out=self._f)
        np.copyto(self._delta, self._f)
        np.copyto(self._last_q, xq, where=valid)
        np.maximum(self._have, vi, out=self._have)
        np.copyto(self._level_c, self._last_q, casting="unsafe")
        np.divide(self._level_c, q, out=self._level_c)
        np.equal(self._have, 0, out=self._no_value)
        np.copyto(self._level_c, self._fill, where=self._no_value)
        np.copyto(self._level, self._level_c)
        # rule 3: take the samples leaving each window, then store the new one
        np.subtract(self._pos, self._windows, out=self._idx)
        np.take(self._xring, self._idx, axis=0, out=self._xo, mode="wrap")
        np.take(self._vring, self._idx, axis=0, out=self._vo, mode="wrap")
        self._xring[self._pos] = xq
        self._vring[self._pos] = vi
        self._pos = (self._pos + 1) % self._wmax
        np.copyto(self._xq3, xq)
        np.copyto(self._vi3, vi)
        # remove the leaving samples (their relative time is 0) ...
        np.subtract(s.n, self._vo, out=s.n)
        np.subtract(s.sx, self._xo, out=s.sx)
        np.multiply(self._xo, self._xo, out=self._tmp)
        np.subtract(s.sxx, self._tmp, out=s.sxx)
        # ... shift the relative time of the rest by -1 ...
        np.subtract(s.stx, s.sx, out=s.stx)
        np.subtract(s.stt, s.st, out=s.stt)
        np.subtract(s.stt, s.st, out=s.stt)
        np.add(s.stt, s.n, out=s.stt)
        np.subtract(s.st, s.n, out=s.st)
        # ... and add the new sample at relative time w - 1.
        np.add(s.n, self._vi3, out=s.n)
        np.add(s.sx, self._xq3, out=s.sx)
        np.multiply(self._xq3, self._xq3, out=self._tmp)
        np.add(s.sxx, self._tmp, out=s.sxx)
        np.multiply(self._wm1, self._vi3, out=self._tmp)
        np.add(s.st, self._tmp, out=s.st)
        np.multiply(self._wm1_sq, self._vi3, out=self._tmp)
        np.add(s.stt, self._tmp, out=s.stt)
        np.multiply(self._wm1, self._xq3, out=self._tmp)
        np.add(s.stx, self._tmp, out=s.stx)
        _finish_windows(
            s, self._level_c, min_valid=self._min_valid, per_minute=self._per_minute,
            mean=self._mean_c, std=self._std_c, slope=self._slope_c, t=self._scratch,
        )
        np.copyto(self._mean, self._mean_c)
        np.copyto(self._std, self._std_c)
        np.copyto(self._slope, self._slope_c)


class FeatureStream:
    """Streaming features for one bed: ``update(row (7,)) -> (F,)``, one row per second.

    A `MultiBedFeatureStream` of one bed; see there for cost and allocation guarantees.
    """

    def __init__(self, spec: FeatureSpec | None = None) -> None:
        """Start with no history (as after `reset`)."""
        self._beds = MultiBedFeatureStream(spec, n_beds=1)
        self.spec = self._beds.spec
        self._row: NDArray[np.float64] = self._beds._out[0]

    @property
    def n_features(self) -> int:
        """Length of the output vector."""
        return self.spec.n_features

    def reset(self) -> None:
        """Forget all history: the next update behaves like the first of a new recording."""
        self._beds.reset()

    def update(self, sample: NDArray[np.float64]) -> NDArray[np.float64]:
        """Feed one vitals row (7,) in `VITAL_NAMES` order (NaN = not measured).

        Returns the (F,) features as a view of an internal buffer that the next `update`
        overwrites: copy it to keep it.
        """
        if sample.shape != (N_VITALS,):
            raise ValueError(f"sample must have shape ({N_VITALS},), got {sample.shape}")
        np.copyto(self._beds._x[0], sample)
        self._beds._step()
        return self._row
