"""ECG beats around R peaks: fixed-length shape windows, RR-interval features, AAMI classes.

Shared by training (`segment_beats` and `rr_features` over a whole record) and the edge
(`BeatStream`, signal and R peaks arriving as they come). Both run the same code and give
bit-for-bit identical features. Pure numpy, no I/O, no clock. R peaks are *sample indices*
(integers) counted from the start of the stream; the caller's QRS detector (or a reference
annotation) provides them.

Rules (the contract a trained beat model relies on; changing one bumps `BEAT_SPEC_VERSION`)
------------------------------------------------------------------------------------------

1. Shape window. Beat i covers ``R_i - before_s`` to ``R_i + after_s`` (default 0.25 s before,
   0.40 s after: P wave, QRS and most of the T wave at resting rates), sampled at ``n_points``
   equally spaced times (default 128, ends included; 5.1 ms apart, i.e. an effective 197 Hz)
   by linear interpolation between the signal's samples. Any ``fs >= MIN_FS_HZ`` (125 Hz)
   gives the same number of points, so one model serves 125, 250, 360 or 500 Hz leads. No
   anti-alias filter: at 360 Hz the point spacing is 1.8 input samples and the QRS has little
   energy above 40 Hz. The interpolation position is split into an integer sample offset and
   a fraction that do not depend on where R lies, so a window cut from any buffer holding the
   same samples is identical.
2. Baseline and amplitude. The window's median is subtracted (the iso-electric level: most of
   a 0.65 s window is P-R and S-T segment, so the median is robust to the QRS), then the
   window is divided by its root-mean-square, so every beat has unit RMS whatever the lead's
   gain or units. A flat window (RMS exactly 0) stays all zeros. Beat polarity is kept.
3. A window that reaches outside the available signal takes the nearest available sample
   there and is flagged incomplete (``complete`` is False); training drops those beats.
4. RR features (`RR_FEATURE_NAMES`) of beat i, from integer sample intervals
   ``d_k = R_k - R_{k-1}``; seconds are ``samples / fs``:
   - ``pre_rr_s``: ``d_i``, the interval before the beat (s);
   - ``post_rr_s``: ``d_{i+1}``, the interval after it (s);
   - ``local_rr_s``: mean of the last ``rr_window_beats`` (16) intervals ending at beat i,
     ``d_i`` included, fewer at the start of a stream (s);
   - ``pre_ratio``: ``pre_rr / local_rr`` (< 1 for a premature beat; dimensionless);
   - ``post_pre_ratio``: ``post_rr / pre_rr`` (> 1 after a premature beat with a
     compensatory pause; dimensionless);
   - ``local_rr_std_s``: population standard deviation (ddof 0) of the same intervals as
     ``local_rr_s`` (s);
   - ``pre_ratio_long``, ``post_ratio_long``, ``local_ratio_long``: ``pre_rr``, ``post_rr``
     and ``local_rr`` divided by the mean of the last ``rr_long_beats`` (256, about 3 to 4
     minutes) intervals ending at beat i (dimensionless). The patient's own long-run rate
     is the yardstick that tells a premature atrial beat from a fast normal one across
     patients: on the 22 non-paced records, LightGBM out-of-fold AUROC for S beats went
     from 0.81 to 0.91 with them.
   They are defined for beats with a predecessor and a successor; the first and the last beat
   of a record get NaN rows. Window sums are exact int64 sums of integer intervals, so the
   batch cumulative sums and the stream's running sums cannot disagree.
5. Deviation from the patient's running template. The template is an exponential average,
   weight ``template_alpha`` (1/32: it settles within about a hundred beats), of the shape
   windows of the beats that have a predecessor, in stream order (the stream's first beat
   never comes out of `BeatStream`, so it takes no part either). It starts as the first such
   beat's window. A beat's deviation is its window minus the template *before* that beat
   is added (the first beat's deviation is all zeros; the stream's very first beat gets
   NaN). What makes a beat ventricular or aberrant is how it differs from this patient's
   usual beat, not its absolute shape, which varies more between patients than between
   classes (out-of-fold AUROC abnormal vs normal, LightGBM: 0.95 -> 0.98 with it). Both
   paths run the same `TemplateTracker` arithmetic in the same order, so they agree bit for
   bit.
6. A feature row (`beat_features`, `Beat.features`) is the shape window (``n_points``),
   the deviation (``n_points``), the RR features, then the context scalars of rule 8:
   `BeatSpec.n_features` columns (`BeatSpec.window_columns`, `deviation_columns`,
   `rr_columns`, `context_columns`). The beat network reads the first three blocks
   (`BeatSpec.network_columns`), the tree model all of them.
7. Latency on the edge: a beat's RR features are final only when the *next* R peak arrives
   (``post_rr``), and its window when ``after_s`` of signal (plus one sample) has followed R.
   `BeatStream` emits beat i at whichever comes later: one beat (one RR interval) after R,
   or 0.4 s after R if the next beat comes sooner.
8. Context scalars (`models.beat_context`, `CONTEXT_FEATURE_NAMES`): the beat against the
   patient's earlier beats (a gated template, the last 8 and 16 windows, its size in lead
   units against the running size, its intervals against the recent rhythm). They need the
   window's RMS before rule 2's scaling, the deviation and the RR features, and take the
   beats in stream order like the template of rule 5 (same first beat). Values that need
   more history than there is are NaN (the second and third beats of a stream; the
   first has no row at all); such rows are not usable. A beat whose window is not finite
   (samples lost on the way) gets NaN deviation and context and takes no part in the
   template or the context of later beats (`LeadTracker`, for either lead).
9. Second lead (``leads`` = 2, spec version 4). A chest lead (V1 to V6, WAVEFORM channel 5)
   sampled with the first one adds a block after the first lead's row: its shape window
   (rules 1 to 3), its deviation from its own running template (rule 5) and its context
   scalars (rule 8, with the first lead's RR features: the R peaks are the first lead's),
   `BeatSpec.second_lead_columns`. A beat whose second-lead window is not finite (no such
   lead, lost samples) gets a NaN block (rule 8's last sentence); the row is usable on its
   first lead alone (`BeatSpec.primary_columns`). Why: a
   ventricular beat that looks normal in lead II often does not in V1, and a tree model
   across the 22 non-paced records found many more of them with it (scratch, 2026-12-08,
   LightGBM out of fold: V sensitivity at 90 % EC57 positive predictivity 78.6 -> 88.0 %,
   S sensitivity at 50 % positive predictivity 47 -> 66 %).

AAMI classes (ANSI/AAMI EC57, as used by de Chazal et al. 2004) of MIT-BIH beat symbols:

=====  =====================================  =================================================
class  meaning                                MIT-BIH symbols
=====  =====================================  =================================================
N      normal and bundle-branch-block beats   N normal, L LBBB, R RBBB, e atrial escape,
                                              j nodal (junctional) escape
S      supraventricular ectopic               A atrial premature, a aberrated APC,
                                              J nodal premature, S supraventricular premature
V      ventricular ectopic                    V PVC, E ventricular escape
F      fusion of ventricular and normal       F
Q      unknown / paced                        / paced, f fusion of paced and normal,
                                              Q unclassifiable
=====  =====================================  =================================================

Every other annotation symbol (rhythm ``+``, noise ``~``, ``|`` artefact, ``!`` ventricular
flutter wave, ``x`` non-conducted P, ``[`` ``]`` ``"`` ...) is not a beat: it takes no part in
the RR sequence and gets no class.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from models.beat_context import CONTEXT_FEATURE_NAMES, ContextTracker

__all__ = [
    "AAMI_CLASSES",
    "AAMI_OF_SYMBOL",
    "BEAT_SPEC_VERSION",
    "BEAT_SPEC_VERSIONS",
    "BEAT_SYMBOLS",
    "CONTEXT_FEATURE_NAMES",
    "DEFAULT_SPEC",
    "MIN_FS_HZ",
    "NOT_A_BEAT",
    "RR_FEATURE_NAMES",
    "Beat",
    "BeatSpec",
    "BeatStream",
    "ContextTracker",
    "LeadTracker",
    "RRFeatureStream",
    "TemplateTracker",
    "aami_codes",
    "beat_features",
    "rr_features",
    "segment_beats",
]

BEAT_SPEC_VERSION: Final = 4
"""Version of the rules in the module docstring. Version 3 is version 4 with one lead (rule 9
added the second); `BeatSpec.from_dict` reads it so."""
_ONE_LEAD_VERSION: Final = 3
BEAT_SPEC_VERSIONS: Final = (_ONE_LEAD_VERSION, BEAT_SPEC_VERSION)
"""Spec versions this code cuts beats by (a bundle's ``requires.beat_spec_version``)."""

MIN_FS_HZ: Final = 125.0
"""Lowest sampling rate accepted: 125 Hz still resolves the QRS (8 ms per sample)."""

AAMI_CLASSES: Final[tuple[str, ...]] = ("N", "S", "V", "F", "Q")
"""AAMI class names; a class's code is its index here (N=0, S=1, V=2, F=3, Q=4)."""

AAMI_OF_SYMBOL: Final[dict[str, str]] = {
    **dict.fromkeys("NLRej", "N"),
    **dict.fromkeys("AaJS", "S"),
    **dict.fromkeys("VE", "V"),
    "F": "F",
    **dict.fromkeys("/fQ", "Q"),
    # Beat codes of the WFDB annotation set that the 48 MIT-BIH records do not use, classed
    # as the usual extensions of the EC57 table do: so every beat code is a beat everywhere
    # (the QRS scorer, training/qrs_score.py, counts all of them).
    "B": "N",  # bundle branch block beat, unspecified
    "n": "S",  # supraventricular escape
    "r": "V",  # R-on-T premature ventricular contraction
    "?": "Q",  # beat not classified during learning
}
"""WFDB beat symbol -> AAMI class (table in the module docstring, plus B, n, r, ?)."""

BEAT_SYMBOLS: Final[frozenset[str]] = frozenset(AAMI_OF_SYMBOL)
"""Annotation symbols that are beats; everything else is a rhythm, noise or other mark."""

NOT_A_BEAT: Final = -1
"""`aami_codes` value of an annotation that is not a beat."""

RR_FEATURE_NAMES: Final[tuple[str, ...]] = (
    "pre_rr_s",
    "post_rr_s",
    "local_rr_s",
    "pre_ratio",
    "post_pre_ratio",
    "local_rr_std_s",
    "pre_ratio_long",
    "post_ratio_long",
    "local_ratio_long",
)
"""Columns of `rr_features` (definitions: rule 4 of the module docstring)."""


def aami_codes(symbols: Iterable[str]) -> NDArray[np.int8]:
    """AAMI class code (index into `AAMI_CLASSES`) per annotation symbol; `NOT_A_BEAT` if none."""
    code = {sym: AAMI_CLASSES.index(cls) for sym, cls in AAMI_OF_SYMBOL.items()}
    return np.array([code.get(s, NOT_A_BEAT) for s in symbols], dtype=np.int8)


@dataclass(frozen=True)
class BeatSpec:
    """What the beat pipeline computes (rules 1 to 4 of the module docstring).

    ``before_s`` / ``after_s``: window extent around R (s); ``n_points``: window length after
    resampling; ``rr_window_beats``: intervals in the local RR mean and standard deviation;
    ``rr_long_beats``: intervals in the long-run mean (rule 4); ``template_alpha``: weight
    of each new beat in the running template (rule 5); ``leads``: 1, or 2 with a chest lead
    (rule 9).
    """

    before_s: float = 0.25
    after_s: float = 0.40
    n_points: int = 128
    rr_window_beats: int = 16
    rr_long_beats: int = 256
    template_alpha: float = 1 / 32
    leads: int = 1

    def __post_init__(self) -> None:
        if not (self.before_s >= 0 and self.after_s > 0 and self.before_s + self.after_s > 0):
            raise ValueError("before_s must be >= 0 and after_s > 0")
        if self.n_points < 2:
            raise ValueError("n_points must be at least 2")
        if self.rr_window_beats < 1 or self.rr_long_beats < 1:
            raise ValueError("rr_window_beats and rr_long_beats must be at least 1")
        if not 0 < self.template_alpha <= 1:
            raise ValueError("template_alpha must be in (0, 1]")
        if self.leads not in (1, 2):
            raise ValueError(f"leads must be 1 or 2, got {self.leads}")

    @property
    def n_features(self) -> int:
        """Length of a `beat_features` row: window, deviation, RR, context (rule 6), then the
        second lead's block (rule 9)."""
        second = self.second_lead_columns
        return int(self.primary_columns.stop if second is None else second.stop)

    @property
    def primary_columns(self) -> slice:
        """The first lead's columns (rule 6): a usable row has all of them finite."""
        return slice(0, 2 * self.n_points + len(RR_FEATURE_NAMES) + len(CONTEXT_FEATURE_NAMES))

    @property
    def second_lead_columns(self) -> slice | None:
        """The second lead's block (rule 9: window, deviation, context), None with one lead."""
        if self.leads == 1:
            return None
        start = self.primary_columns.stop
        return slice(start, start + _block_size(self))

    @property
    def window_columns(self) -> slice:
        """Columns of a feature row holding the shape window."""
        return slice(0, self.n_points)

    @property
    def deviation_columns(self) -> slice:
        """Columns holding the deviation from the running template."""
        return slice(self.n_points, 2 * self.n_points)

    @property
    def rr_columns(self) -> slice:
        """Columns holding the RR features, in `RR_FEATURE_NAMES` order."""
        return slice(2 * self.n_points, 2 * self.n_points + len(RR_FEATURE_NAMES))

    @property
    def context_columns(self) -> slice:
        """Columns holding the context scalars, in `CONTEXT_FEATURE_NAMES` order (rule 8)."""
        return slice(self.rr_columns.stop, self.primary_columns.stop)

    @property
    def network_columns(self) -> slice:
        """Columns the beat network reads: window, deviation, RR features."""
        return slice(0, self.rr_columns.stop)

    def context_tracker(self) -> ContextTracker:
        """A fresh rule-8 tracker for one stream."""
        return ContextTracker(self.n_points, self.before_s, self.after_s, self.template_alpha)

    def to_dict(self) -> dict[str, float | int]:
        """The spec with its version, for a bundle manifest (`from_dict` reads it back). A
        one-lead spec is written as version 3, which every reader of version 3 runs the same
        way (rule 9 adds nothing with one lead)."""
        out: dict[str, float | int] = {
            "version": BEAT_SPEC_VERSION if self.leads > 1 else _ONE_LEAD_VERSION,
            "before_s": self.before_s,
            "after_s": self.after_s,
            "n_points": self.n_points,
            "rr_window_beats": self.rr_window_beats,
            "rr_long_beats": self.rr_long_beats,
            "template_alpha": self.template_alpha,
        }
        if self.leads > 1:
            out["leads"] = self.leads
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> BeatSpec:
        """Spec from `to_dict` output (version 3: one lead, or 4); ValueError for another
        version, a missing key or a bad value."""
        version = raw.get("version")
        if version not in BEAT_SPEC_VERSIONS:
            raise ValueError(
                f"beat spec version {version!r} is not supported (this code reads "
                f"{_ONE_LEAD_VERSION} and {BEAT_SPEC_VERSION})"
            )
        try:
            return cls(
                before_s=float(raw["before_s"]),
                after_s=float(raw["after_s"]),
                n_points=int(raw["n_points"]),
                rr_window_beats=int(raw["rr_window_beats"]),
                rr_long_beats=int(raw["rr_long_beats"]),
                template_alpha=float(raw["template_alpha"]),
                leads=1 if version == _ONE_LEAD_VERSION else int(raw["leads"]),
            )
        except KeyError as exc:
            raise ValueError(f"beat spec: {exc.args[0]} is missing") from None

    def relative_positions(self, fs: float) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Window point positions relative to R: integer sample offsets and fractions in [0, 1).

        Split once, independently of R, so every window is interpolated with the same
        fractions (rule 1).
        """
        _check_fs(fs)
        rel = np.linspace(-self.before_s, self.after_s, self.n_points) * fs
        whole = np.floor(rel)
        return whole.astype(np.int64), rel - whole

    def after_samples(self, fs: float) -> int:
        """Samples needed after R (inclusive) before the window can be cut."""
        whole, _ = self.relative_positions(fs)
        return int(whole[-1]) + 1


DEFAULT_SPEC: Final = BeatSpec()


def _block_size(spec: BeatSpec) -> int:
    """Columns of the second lead's block (rule 9): window, deviation, context."""
    return 2 * spec.n_points + len(CONTEXT_FEATURE_NAMES)


def _check_fs(fs: float) -> None:
    if not (math.isfinite(fs) and fs >= MIN_FS_HZ):
        raise ValueError(f"sampling rate must be >= {MIN_FS_HZ} Hz, got {fs}")


def _as_r_samples(r_samples: ArrayLike) -> NDArray[np.int64]:
    r = np.asarray(r_samples)
    if r.ndim != 1:
        raise ValueError("R peaks must be a 1-D array of sample indices")
    if r.size and not np.issubdtype(r.dtype, np.integer):
        raise ValueError("R peaks must be integer sample indices")
    r = r.astype(np.int64)
    if r.size > 1 and np.any(np.diff(r) <= 0):
        raise ValueError("R peaks must be strictly increasing")
    return r


def segment_beats(
    signal: ArrayLike,
    r_samples: ArrayLike,
    fs: float,
    spec: BeatSpec = DEFAULT_SPEC,
    *,
    offset: int = 0,
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Normalised shape windows (n_beats, n_points) and a per-beat ``complete`` mask.

    ``signal`` is one ECG lead in any unit; ``signal[0]`` is stream sample ``offset`` (a ring
    buffer passes its start here), ``r_samples`` are stream sample indices. Rules 1 to 3.
    """
    windows, _, complete = _cut_windows(signal, r_samples, fs, spec, offset=offset)
    return windows, complete


def _cut_windows(
    signal: ArrayLike,
    r_samples: ArrayLike,
    fs: float,
    spec: BeatSpec,
    *,
    offset: int = 0,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """`segment_beats` plus each window's RMS before scaling (lead units; rule 8 needs it)."""
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("signal must be a non-empty 1-D array")
    r = _as_r_samples(r_samples) - int(offset)
    whole, frac = spec.relative_positions(fs)
    i0 = r[:, None] + whole[None, :]
    last = x.size - 1
    complete = (i0[:, 0] >= 0) & (i0[:, -1] + 1 <= last)
    lo = np.clip(i0, 0, last)
    hi = np.clip(i0 + 1, 0, last)
    raw = x[lo] * (1.0 - frac) + x[hi] * frac
    centred = raw - np.median(raw, axis=1, keepdims=True)
    rms = np.sqrt(np.mean(centred * centred, axis=1, keepdims=True))
    return centred / np.where(rms > 0, rms, 1.0), rms[:, 0], complete


def _finish_rr(
    pre: NDArray[np.int64],
    post: NDArray[np.int64],
    sums: NDArray[np.int64],
    *,
    fs: float,
) -> NDArray[np.float64]:
    """RR feature rows from exact integer window sums; the one formula both paths apply.

    ``sums`` columns: local sum, local sum of squares, local count, long sum, long count.
    """
    total, total_sq, count, long_total, long_count = (sums[..., k] for k in range(5))
    mean = total / count
    long_mean = long_total / long_count
    var_num = np.maximum(count * total_sq - total * total, 0)
    std = np.sqrt(var_num.astype(np.float64)) / count
    return np.stack(
        [
            pre / fs,
            post / fs,
            mean / fs,
            pre / mean,
            post / pre,
            std / fs,
            pre / long_mean,
            post / long_mean,
            mean / long_mean,
        ],
        axis=-1,
    ).astype(np.float64)


def rr_features(
    r_samples: ArrayLike, fs: float, spec: BeatSpec = DEFAULT_SPEC
) -> NDArray[np.float64]:
    """RR features (n_beats, 9) in `RR_FEATURE_NAMES` order; first and last rows NaN (rule 4)."""
    if not (math.isfinite(fs) and fs > 0):
        raise ValueError(f"sampling rate must be positive, got {fs}")
    r = _as_r_samples(r_samples)
    n = r.size
    out = np.full((n, len(RR_FEATURE_NAMES)), np.nan)
    if n < 3:
        return out
    d = np.diff(r)  # d[k - 1] = R_k - R_{k-1}
    c0 = np.concatenate([[0], np.cumsum(d)])
    c1 = np.concatenate([[0], np.cumsum(d * d)])
    i = np.arange(1, n - 1)
    count = np.minimum(i, spec.rr_window_beats)
    long_count = np.minimum(i, spec.rr_long_beats)
    sums = np.stack(
        [
            c0[i] - c0[i - count],
            c1[i] - c1[i - count],
            count,
            c0[i] - c0[i - long_count],
            long_count,
        ],
        axis=-1,
    )
    out[1:-1] = _finish_rr(d[i - 1], d[i], sums, fs=fs)
    return out


class TemplateTracker:
    """The patient's running beat template and each beat's deviation from it (rule 5).

    `deviation` takes beats' shape windows one at a time, in stream order; batch and stream
    both call it, so the floating-point operations and their order are the same.
    """

    def __init__(self, n_points: int, alpha: float) -> None:
        self.alpha = float(alpha)
        self._template = np.zeros(n_points, dtype=np.float64)
        self._dev = np.zeros(n_points, dtype=np.float64)
        self._started = False

    def deviation(self, window: NDArray[np.float64]) -> NDArray[np.float64]:
        """``window`` minus the template so far, then the template takes the window in.

        Returns a view of an internal buffer, valid until the next call (copy to keep it).
        """
        if not self._started:
            self._template[:] = window
            self._started = True
        np.subtract(window, self._template, out=self._dev)
        self._template += self.alpha * self._dev
        return self._dev


class LeadTracker:
    """One lead's running template (rule 5) and context (rule 8), beat by beat in stream
    order; batch and stream both call it, so both give the same values. A beat whose window
    is not finite (lost samples, no such lead) gets neither and leaves both as they were: one
    lost chunk must not spoil every later beat's features."""

    def __init__(self, spec: BeatSpec) -> None:
        self._template = TemplateTracker(spec.n_points, spec.template_alpha)
        self._context = spec.context_tracker()

    def update(self, window: NDArray[np.float64], rms: float, rr: NDArray[np.float64]
               ) -> _LeadFeatures | None:
        """(deviation, context row) of the beat, None for a window that is not finite. Both
        are views of internal buffers, valid until the next call."""
        if not (math.isfinite(rms) and np.all(np.isfinite(window))):
            return None
        deviation = self._template.deviation(window)
        return deviation, self._context.update(window, deviation, rms, rr)


_LeadFeatures = tuple[NDArray[np.float64], NDArray[np.float64]]


def _second_block(out: NDArray[np.float64], window: NDArray[np.float64],
                  got: _LeadFeatures | None) -> None:
    """Rule 9's block (window, deviation, context) into ``out``, left NaN without ``got``."""
    if got is None:
        return
    n = window.size
    out[:n] = window
    out[n:2 * n], out[2 * n:] = got


def beat_features(
    signal: ArrayLike, r_samples: ArrayLike, fs: float, spec: BeatSpec = DEFAULT_SPEC,
    second: ArrayLike | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Feature rows per beat (n_beats, `BeatSpec.n_features`, rules 6 and 9) and a usability
    mask. ``second``: the chest lead, sampled with ``signal`` (same length), for a two-lead
    spec; without it the second lead's block is NaN.

    The mask is True where the row is usable: the window is complete and every feature of the
    first lead is defined (not the first three beats of the record, nor the last).
    """
    windows, rms, complete = _cut_windows(signal, r_samples, fs, spec)
    rr = rr_features(r_samples, fs, spec)
    rows = np.full((windows.shape[0], spec.n_features), np.nan)
    rows[:, spec.window_columns] = windows
    rows[:, spec.rr_columns] = rr
    lead = LeadTracker(spec)
    for i in range(1, windows.shape[0]):
        got = lead.update(windows[i], float(rms[i]), rr[i])
        if got is not None:
            rows[i, spec.deviation_columns], rows[i, spec.context_columns] = got
    block = spec.second_lead_columns
    if block is not None and second is not None:
        x2 = np.asarray(second, dtype=np.float64)
        if x2.shape != np.shape(signal):
            raise ValueError("the second lead must have as many samples as the first")
        windows2, rms2, _ = _cut_windows(x2, r_samples, fs, spec)
        lead2 = LeadTracker(spec)
        for i in range(1, windows2.shape[0]):
            _second_block(rows[i, block], windows2[i],
                          lead2.update(windows2[i], float(rms2[i]), rr[i]))
    usable = complete & np.all(np.isfinite(rows[:, spec.primary_columns]), axis=1)
    return rows, usable


class RRFeatureStream:
    """RR features of beats arriving one by one; beat i's row is final when beat i+1 arrives.

    `push` takes the next R peak (stream sample index) and returns ``(R of the previous beat,
    its RR features)``, or None while that beat has no predecessor (the stream's first beat,
    whose features are never defined). Equal to `rr_features` row for row.
    """

    def __init__(self, fs: float, spec: BeatSpec = DEFAULT_SPEC) -> None:
        if not (math.isfinite(fs) and fs > 0):
            raise ValueError(f"sampling rate must be positive, got {fs}")
        self.fs = float(fs)
        self.spec = spec
        self._last_r: int | None = None
        self._window: deque[int] = deque(maxlen=spec.rr_window_beats)
        self._long: deque[int] = deque(maxlen=spec.rr_long_beats)
        self._sum = 0
        self._sum_sq = 0
        self._long_sum = 0
        # The previous beat, waiting for its post interval: R, pre, then `_finish_rr`'s sums.
        self._pending: tuple[int, int, NDArray[np.int64]] | None = None

    def push(self, r_sample: int) -> tuple[int, NDArray[np.float64]] | None:
        """Register the next R peak; the previous beat's features if it had a predecessor."""
        r = int(r_sample)
        if self._last_r is None:
            self._last_r = r
            return None
        d = r - self._last_r
        if d <= 0:
            raise ValueError("R peaks must be strictly increasing")
        done = None
        if self._pending is not None:
            r_prev, pre, sums = self._pending
            row = _finish_rr(np.array([pre]), np.array([d]), sums[None, :], fs=self.fs)
            done = (r_prev, row[0])
        if len(self._window) == self._window.maxlen:
            leaving = self._window[0]
            self._sum -= leaving
            self._sum_sq -= leaving * leaving
        if len(self._long) == self._long.maxlen:
            self._long_sum -= self._long[0]
        self._window.append(d)
        self._long.append(d)
        self._sum += d
        self._sum_sq += d * d
        self._long_sum += d
        sums = np.array(
            [self._sum, self._sum_sq, len(self._window), self._long_sum, len(self._long)],
            dtype=np.int64,
        )
        self._pending = (r, d, sums)
        self._last_r = r
        return done


@dataclass(frozen=True, slots=True)
class Beat:
    """One finished beat from `BeatStream`: R (stream sample), its `beat_features` row."""

    r_sample: int
    features: NDArray[np.float64]
    complete: bool


class BeatStream:
    """The edge's form of `beat_features`: signal chunks and R peaks in, finished beats out.

    Feed every signal sample exactly once, in order, with `push`; pass each R peak once it
    has been detected (its sample must already have been pushed or be in the same chunk).
    With a two-lead spec, each chunk's second-lead samples go with it (the same instants;
    None or NaN where that lead is missing: rule 9).
    A beat comes out when both its next R peak is known and ``after_s`` of signal has
    followed it (rule 7). Only the samples still needed are kept. Rows equal `beat_features`
    rows of the same beats; the first beat of the stream is never emitted (no previous RR).
    """

    def __init__(self, fs: float, spec: BeatSpec = DEFAULT_SPEC) -> None:
        _check_fs(fs)
        self.fs = float(fs)
        self.spec = spec
        self._rr = RRFeatureStream(fs, spec)
        self._lead = LeadTracker(spec)
        whole, _ = spec.relative_positions(fs)
        self._first_offset = int(whole[0])
        self._need_after = spec.after_samples(fs)
        self._buf = np.zeros(0, dtype=np.float64)
        self._second = LeadTracker(spec) if spec.leads > 1 else None
        self._buf2 = np.zeros(0, dtype=np.float64)  # second lead, same positions as _buf
        self._start = 0  # stream index of self._buf[0]
        self._waiting: deque[tuple[int, NDArray[np.float64]]] = deque()
        self._last_r: int | None = None

    @property
    def samples_seen(self) -> int:
        """Signal samples pushed so far (the next sample's stream index)."""
        return self._start + self._buf.size

    def push(self, chunk: ArrayLike, r_peaks: Sequence[int] = (),
             second: ArrayLike | None = None) -> list[Beat]:
        """Append signal samples (and the second lead's, with a two-lead spec) and newly
        detected R peaks; return the beats now finished."""
        x = np.asarray(chunk, dtype=np.float64).ravel()
        self._buf = np.concatenate([self._buf, x])
        if self._second is not None:
            x2 = (np.full(x.size, np.nan) if second is None
                  else np.asarray(second, dtype=np.float64).ravel())
            if x2.size != x.size:
                raise ValueError(f"second lead chunk has {x2.size} samples, first {x.size}")
            self._buf2 = np.concatenate([self._buf2, x2])
        for peak in r_peaks:
            r = int(peak)
            if self._last_r is not None and r <= self._last_r:
                raise ValueError("R peaks must be strictly increasing")
            if r >= self.samples_seen:
                raise ValueError(f"R peak {r} is beyond the signal pushed so far")
            self._last_r = r
            if (done := self._rr.push(r)) is not None:
                self._waiting.append(done)
        out = []
        while self._waiting and self._waiting[0][0] + self._need_after < self.samples_seen:
            r, rr = self._waiting.popleft()
            window, rms, complete = _cut_windows(
                self._buf, np.array([r]), self.fs, self.spec, offset=self._start
            )
            spec = self.spec
            row = np.full(spec.n_features, np.nan)
            row[spec.window_columns] = window[0]
            row[spec.rr_columns] = rr
            got = self._lead.update(window[0], float(rms[0]), rr)
            if got is not None:
                row[spec.deviation_columns], row[spec.context_columns] = got
            block = spec.second_lead_columns
            if self._second is not None and block is not None:
                window2, rms2, _ = _cut_windows(
                    self._buf2, np.array([r]), self.fs, spec, offset=self._start)
                _second_block(row[block], window2[0],
                              self._second.update(window2[0], float(rms2[0]), rr))
            out.append(Beat(r, row, bool(complete[0])))
        self._trim()
        return out

    def _trim(self) -> None:
        # Keep from the earliest window start still needed: a waiting beat's, or the last R's
        # (its features come out after the next R).
        keep_r = self._waiting[0][0] if self._waiting else self._last_r
        keep_from = self.samples_seen if keep_r is None else keep_r + self._first_offset
        # A window that starts before the stream clamps to sample 0: nothing is dropped then.
        drop = min(max(keep_from - self._start, 0), self._buf.size)
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf2 = self._buf2[drop:]
            self._start += drop
