"""Streaming QRS detector: ECG chunks in (mV, any size), R-peak sample indices out.

Method: Pan-Tompkins (1985) with the decision rules of Hamilton & Tompkins (1986).
Band-pass, slope, square, 120 ms moving-window integration, then an adaptive threshold between a
signal-peak and a noise-peak level, a 200 ms refractory period, T-wave discrimination by slope
and a search-back for missed beats. Why this family: it is the most studied real-time detector
on MIT-BIH (reported Se 99.7 %, +P 99.5 %); it is causal, so it streams; its filters reduce to
integer moving sums, which are exact and cost a few numpy operations per chunk; and every
decision is explainable. NeuroKit's default (gradient magnitude against a 0.75 s mean) and
Elgendi's two moving averages are similar in cost but have no search-back, and need the whole
record for their cleaning filter. Adaptations (Hamilton's robustness changes and ours):

- levels are medians of the last 8 signal / noise peaks (not running means), so one huge
  ectopic beat or artefact does not hide the next normal beats;
- the detection feature is the RMS slope over 120 ms (square root of the integrated squared
  slope, mV/s), which has the dynamic range of the ECG rather than its square. Pan & Tompkins
  integrate over 150 ms, Hamilton's open-source detector over 80 ms. At 150 ms two beats 330 ms
  apart (203's fast atrial fibrillation and ventricular runs) merge into one integrated peak;
  at 80-100 ms a wide ventricular complex and its T wave split into two (201: 5 -> 157-181
  false beats). 120 ms was chosen between them on the 26 shared records;
- a skipped peak that search-back later takes as a beat leaves the noise level. Without this,
  missed beats were most of the noise peaks in fast irregular rhythms (202 of 221 in 203),
  which raised the threshold and missed more beats;
- search-back fires 1.5 mean RR after the last beat (Hamilton & Tompkins' value; Pan &
  Tompkins wait 1.66) and takes the largest skipped peak above half the threshold; if there
  is none the signal level is halved (new lead, smaller beats). On the 26 shared records 1.5
  found 45 more of 203's fast atrial-fibrillation beats than 1.66 (gross Se 99.47 -> 99.60 %,
  +P 99.32 -> 99.31 %);
- minor peaks and withdrawal (rules 3b, 3c): on the 26 shared records minor peaks alone
  found 19 more of 203's beats but added 21 false beats in 108 (P waves after pauses, taken by
  search-back) and 8 in 203 (gross Se 99.75 -> 99.78 %, EC57 +P 99.74 -> 99.68 %).
  Withdrawing such search-back beats kept most of the found beats and removed those false
  ones (EC57 +P 99.72 %); withdrawing any beat so followed also removed 11 of 108's P waves
  that had passed the threshold (108 +P 97.3 -> 97.9 %; EC57 +P 99.72 -> 99.75 %, one beat
  of 203 lost). 250 ms was chosen on these records: 200 ms withdrew too few P waves (108 FP
  48 -> 65), 300 ms withdrew real beats of fast rhythms (11 more missed in 203);
- distinct minor peaks as beats (rule 3b): 42 of the beats 203 still missed were minor peaks,
  most above the threshold, that search-back never reached (the next beat came within 1.5 mean
  RR). Taking every minor peak above the threshold that is not a T wave by rule 3 found 22 of
  them but added thousands of false beats in the paced records (the humps of a wide paced
  complex, T waves just after 360 ms). With the conditions of rule 3b: 13 more beats found
  (203 63 -> 54 missed; gross Se 99.78 -> 99.80 %, EC57 +P 99.75 -> 99.74 %). Its 1/sqrt(2)
  and 1.5 were chosen on these records (a dip to 1/2: 6 fewer found; 1.0 threshold: 3 fewer
  found and 14 more false; 2.0: 2 fewer found, 1 fewer false). Rule 3b first also required
  half the last beat's maximal slope; beyond the T-wave window (where rule 3 does not already
  ask it) that only rejected beats: without it 7 more found (106's ventricular beats after a
  steep normal one, 4 of 203's) and 1 fewer false (gross Se 99.804 -> 99.816 %, EC57 +P
  99.736 -> 99.738 %; the paced records unchanged);
- the low-pass (two boxcars, first zero near 25 Hz) removes pacemaker spikes, so paced
  complexes are detected by their QRS, not their spike.

Rules (what a caller can rely on)
---------------------------------

0. Input: float samples in mV at ``fs_hz``. Non-finite samples (lost data) are replaced by the
   last finite value (a flat line: no beats); values are clipped to +-`INPUT_LIMIT_MV` and
   rounded to 1 uV. All filtering is then exact int64 arithmetic on a window of recent samples,
   so the output does not depend on how the stream is cut into chunks: feeding a record whole or
   in chunks of any size (1 sample upward) reports exactly the same beats at the same calls'
   sample positions. Samples before the first finite one are skipped (no beats there).
1. Filters, designed at construction for ``fs_hz`` (>= 100 Hz): low-pass = two cascaded boxcars
   of ``round(fs/25)`` samples; slope = difference over ``round(fs/36)`` samples (band-pass
   peak near 13-18 Hz, zero at DC); integration window 120 ms. The R peak is placed at the
   largest magnitude of the low-passed ECG minus its centred 200 ms mean, within 30 ms of the
   steepest slope of a window around the integrated peak (without that limit a broad wave after
   a wide ventricular complex's sharp onset took the R, more than 150 ms from the annotation).
2. Learning: the first `LEARNING_S` seconds after the first finite sample set the initial
   levels; beats in them are decided when it ends. It is `LATENCY_S` minus the 200 ms
   look-ahead, so even a beat in the stream's first samples is decided in time for rule 4 and
   reported. No beat precedes the stream's first candidate, so the T-wave rule cannot apply
   to it: a stream that starts just after a beat may report that beat's T wave. On the 26
   shared records (learning 1.0 s before, which dropped the beats of the first 0.2 s): 4
   first beats found (104, 207, 208, 220) and 5 detections added in the first 0.3 s (three T
   waves, 106, 114, 119; the tail of a paced beat cut by the record start, 107; a whole beat
   the reference leaves unannotated at 0.04 s, 116). Gross Se 99.798 -> 99.804 %, EC57 +P
   99.744 -> 99.736 %.
3. A candidate is a local maximum of the RMS slope strictly larger than everything in the
   200 ms before and not smaller than anything in the 200 ms after, above `FLOOR_MV_PER_S`.
   It is a beat if above the threshold ``NPK + 0.25 (SPK - NPK)`` (SPK, NPK: medians of the
   last 8 beat / noise peaks), unless it is a T wave: within 360 ms of the previous beat with
   less than half of that beat's maximal slope, or within 280 ms and less steep than it (the
   second hump of a wide ventricular complex). T waves do not raise the noise level.
   Search-back (adaptations above) considers the skipped candidates since the last beat.
3b. A minor peak is a local maximum of the RMS slope that is the largest within 50 ms on
   either side but not within 200 ms: it sits on the flank of a larger neighbour, as a small
   beat does 300-400 ms before or after a large one at 150-200 bpm. It is never a noise peak.
   It is a beat if it is distinct (toward every larger sample within 200 ms the RMS slope
   falls below 1/sqrt(2) of it), at least 200 ms after the last beat, not a T wave or an echo
   of it (rule 3), and above 1.5 times the threshold. Otherwise search-back may take it like
   a skipped candidate.
3c. A beat is withdrawn when, within 250 ms after it, a larger and steeper candidate passes
   the threshold: it was that beat's P wave or onset (108's long PR intervals; a minor peak
   search-back took just before the beat). Only while the beat is unreported (rule 4), so the
   output stays the same however the stream is chunked; counted in `withdrawn`.
4. Latency: a beat whose R peak is at sample ``r`` is returned by the `update` call that
   delivers sample ``r + latency_samples`` (`LATENCY_S`, 1.0 s). A beat found by search-back
   later than that is dropped (counted in `late_dropped`) rather than reported late.
"""

from __future__ import annotations

import math
from typing import Final, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "FLOOR_MV_PER_S",
    "INPUT_LIMIT_MV",
    "LATENCY_S",
    "LEARNING_S",
    "QrsDetector",
    "detect",
]

INPUT_LIMIT_MV: Final = 20.0
"""Samples are clipped to +-20 mV (ECG is a few mV; keeps every int64 sum far from overflow)."""

LATENCY_S: Final = 1.0
"""Delay from an R peak to its report: covers the 200 ms look-ahead and most search-backs."""

LEARNING_S: Final = 0.8
"""Seconds of signal that set the initial signal and noise levels (Pan-Tompkins): the latency
less the 200 ms look-ahead, so the beats in it are still reported in time (rule 2)."""

FLOOR_MV_PER_S: Final = 2.0
"""Smallest RMS slope that can be a QRS (mV/s); a flat or nearly flat line gives no beats."""

_MIN_FS_HZ: Final = 100.0
_LP_ZERO_HZ: Final = 25.0  # first zero of each boxcar of the low-pass
_SLOPE_PEAK_HZ: Final = 18.0  # the slope difference has its gain maximum at fs / (2 k)
_MWI_S: Final = 0.120  # moving-window integration (a wide QRS; 150 ms merges beats at 180 bpm)
_REFRACTORY_S: Final = 0.200  # no two candidates closer than this
_TWAVE_S: Final = 0.360  # within this after a beat, a low-slope candidate is a T wave
_TWAVE_SLOPE_RATIO: Final = 0.5  # T wave: less than this share of the last beat's slope
_TWAVE_NOT_NOISE: Final = True  # T waves and echoes do not raise the noise level
_DOUBLE_S: Final = 0.28  # within this, a candidate less steep than the last beat is its echo
_BASELINE_HALF_S: Final = 0.100  # half width of the centred mean removed before R placement
_R_BEFORE_S: Final = 0.160  # R search window around the integrated peak (input time)
_R_AFTER_S: Final = 0.060
_R_SLOPE_S: Final = 0.030  # R is within this of the steepest slope of that window
_MINOR_HALF_S: Final = 0.050  # a minor peak is the largest mwi within this on either side
_MINOR_DIP: Final = 0.5  # a distinct minor peak: mwi dips below this share toward larger ones
_MINOR_THRESHOLD: Final = 1.5  # a distinct minor peak above this many thresholds is a beat
_WITHDRAW_S: Final = 0.250  # a larger, steeper beat this soon after a beat replaces it
_THRESHOLD_FRACTION: Final = 0.25  # Hamilton & Tompkins use 0.3125
_SEARCHBACK_FRACTION: Final = 0.5  # of the threshold, for search-back
_MISSED_RR_FACTOR: Final = 1.5  # search back when no beat for this many mean RR
_HISTORY: Final = 8  # peaks / RR intervals in the medians and mean
_RR_MIN_S: Final = 0.25
_RR_MAX_S: Final = 1.5  # mean RR used for the search-back time is capped (40 bpm)
_UV_PER_MV: Final = 1000.0


class _Withdrawable(NamedTuple):
    """The last beat and the state it replaced, kept for rule 3c."""

    p: int
    r: int
    amp: float
    slope: float
    had_rr: bool  # an RR interval was appended for it
    last_p: int | None
    last_r: int | None
    last_slope: float


def _moving_sum(x: NDArray[np.int64], n: int) -> NDArray[np.int64]:
    """Exact sums of ``n`` consecutive samples ending at each index ``n-1 ..`` (valid part)."""
    c = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(x, dtype=np.int64)))
    return c[n:] - c[:-n]


class QrsDetector:
    """Streaming Pan-Tompkins/Hamilton detector (see the module rules); one per ECG channel.

    ``update(samples)`` returns the absolute sample indices (0 = first sample ever fed) of the R
    peaks reported by this call; each is exactly `latency_samples` behind the newest sample when
    it is reported. State between calls: the last few hundred ms of input and the detection
    state (levels, RR history, skipped peaks), a few kB.
    """

    def __init__(self, fs_hz: float) -> None:
        if not (math.isfinite(fs_hz) and fs_hz >= _MIN_FS_HZ):
            raise ValueError(f"fs_hz must be >= {_MIN_FS_HZ:g}, got {fs_hz!r}")
        self.fs_hz = float(fs_hz)
        fs = self.fs_hz
        self._a = max(2, round(fs / _LP_ZERO_HZ))
        self._k = max(2, round(fs / (2 * _SLOPE_PEAK_HZ)))
        self._w = max(3, round(_MWI_S * fs))
        self._rw = max(2, round(_REFRACTORY_S * fs))
        self._d = max(2, round(_BASELINE_HALF_S * fs))
        self._twave = round(_TWAVE_S * fs)
        self._double = round(_DOUBLE_S * fs)
        self._r_before = round(_R_BEFORE_S * fs)
        self._r_after = round(_R_AFTER_S * fs)
        self._r_slope = max(1, round(_R_SLOPE_S * fs))
        self._hs = max(1, min(self._rw, round(_MINOR_HALF_S * fs)))
        self._withdraw = round(_WITHDRAW_S * fs)
        self.latency_samples = round(LATENCY_S * fs)
        self._learn = round(LEARNING_S * fs)
        # Delays (samples) of each stage relative to the input, for mapping indices back.
        self._lp_delay = self._a - 1  # two boxcars of a samples
        self._mwi_first = 2 * (self._a - 1) + self._k + (self._w - 1)  # buffer offset of mwi[0]
        # Scale from the integer mean-squared-slope to (mV/s)^2: lp carries a^2, slope spans k.
        slope_scale = _UV_PER_MV * self._a * self._a * self._k / fs
        self._mwi_to_ms2 = 1.0 / (self._w * slope_scale * slope_scale)
        self._slope_scale = slope_scale
        # Input kept between calls: enough to recompute every window that still matters.
        self._tail_len = (
            self._mwi_first + 2 * self._rw + self._r_before + self._r_after + 2 * self._d + 8
        )
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        """Forget everything: the next sample fed is sample 0 again."""
        self._n = 0  # absolute index of the next input sample
        self._hold: float | None = None  # last finite input (mV)
        self._tail = np.empty(0, dtype=np.int64)  # quantized input ending at self._n
        self._start: int | None = None  # absolute index of the first finite sample
        self._next_exam = 0  # next absolute mwi index to test for a candidate
        # Candidates: (mwi index p, amplitude mV/s, R index r, max slope mV/s)
        self._learning: list[tuple[int, float, int, float]] = []
        self._learned = False
        self._spk: list[float] = []
        self._npk: list[float] = []
        self._npk_p: list[int] = []  # the candidate (mwi index) of each noise peak
        self._rr: list[int] = []
        self._last_p: int | None = None
        self._last_r: int | None = None
        self._last_slope = 0.0
        self._skipped: list[tuple[int, float, int, float]] = []
        self._minor: list[tuple[int, float, int, float]] = []  # minor peaks since the last beat
        self._withdrawable: _Withdrawable | None = None
        self._search_at: float | None = None
        self._pending: list[int] = []  # accepted R indices not yet reported
        self.late_dropped = 0
        self.withdrawn = 0  # beats withdrawn by rule 3c (diagnostics)

    # ------------------------------------------------------------------ public API

    def update(self, samples: ArrayLike) -> NDArray[np.int64]:
        """Feed the next samples (mV); return R-peak indices reported by this call (ascending)."""
        x = np.asarray(samples, dtype=np.float64).ravel()
        m = x.shape[0]
        if m:
            self._ingest(x)
        due = self._n - self.latency_samples  # beats with r < due are reported now
        out = [r for r in self._pending if r < due]
        if out:
            self._pending = [r for r in self._pending if r >= due]
        return np.asarray(out, dtype=np.int64)

    # ------------------------------------------------------------------ signal path

    def _quantize(self, x: NDArray[np.float64]) -> NDArray[np.int64] | None:
        finite = np.isfinite(x)
        if self._hold is None:
            if not finite.any():
                return None
            first = int(np.argmax(finite))
            self._start = self._n + first
            self._hold = float(x[first])
            self._next_exam = self._start
            q0 = round(max(-INPUT_LIMIT_MV, min(INPUT_LIMIT_MV, self._hold)) * _UV_PER_MV)
            self._tail = np.full(self._tail_len, q0, dtype=np.int64)
        if not finite.all():
            # Carry the last finite value forward through the gap (vectorized fill).
            idx = np.where(finite, np.arange(x.shape[0]), -1)
            np.maximum.accumulate(idx, out=idx)
            filled = np.where(idx >= 0, x[np.maximum(idx, 0)], self._hold)
            x = filled
        self._hold = float(x[-1])
        return np.rint(np.clip(x, -INPUT_LIMIT_MV, INPUT_LIMIT_MV) * _UV_PER_MV).astype(np.int64)

    def _ingest(self, x: NDArray[np.float64]) -> None:
        m = x.shape[0]
        q = self._quantize(x)
        if q is None:
            self._n += m
            self._next_exam = self._n
            return
        buf = np.concatenate((self._tail, q))
        base = self._n + m - buf.shape[0]  # absolute index of buf[0]
        self._n += m
        self._tail = buf[-self._tail_len :]
        a, k, w, rw = self._a, self._k, self._w, self._rw
        lp = _moving_sum(_moving_sum(buf, a), a)  # lp[i] ends at buf index i + 2(a-1)
        lp_off = 2 * (a - 1)
        slope = lp[k:] - lp[:-k]  # ends at buf index i + lp_off + k
        mwi = _moving_sum(slope * slope, w)  # ends at buf index i + mwi_first
        mwi_off = self._mwi_first
        # Candidate test needs mwi[i - rw .. i + rw]; test absolute indices in [lo, hi).
        lo = max(self._next_exam, base + mwi_off + rw)
        hi = base + mwi_off + mwi.shape[0] - rw
        if hi > lo:
            self._find_candidates(
                base=base, lp=lp, lp_off=lp_off, slope=slope, mwi=mwi, lo=lo, hi=hi
            )
            self._next_exam = hi
        self._process(self._next_exam)

    def _find_candidates(
        self,
        *,
        base: int,
        lp: NDArray[np.int64],
        lp_off: int,
        slope: NDArray[np.int64],
        mwi: NDArray[np.int64],
        lo: int,
        hi: int,
    ) -> None:
        """Local maxima of the integrated slope in absolute [lo, hi); appended in order."""
        rw = self._rw
        mwi_off = self._mwi_first
        i0 = lo - base - mwi_off  # index into mwi
        i1 = hi - base - mwi_off
        n, hs = i1 - i0, self._hs
        seg = mwi[i0 - rw : i1 + rw]
        win = sliding_window_view(seg, rw)
        before = win[:n].max(axis=1)  # mwi[i-rw .. i-1]
        after = win[rw + 1 : rw + 1 + n].max(axis=1)  # mwi[i+1 .. i+rw]
        centre = seg[rw : rw + n]
        above = centre > FLOOR_MV_PER_S**2 / self._mwi_to_ms2
        major = (centre > before) & (centre >= after) & above
        # Minor peaks (rule 3b): the same test over +-hs (<= rw, so inside the same window).
        win_h = sliding_window_view(seg, hs)
        minor = (
            (centre > win_h[rw - hs : rw - hs + n].max(axis=1))
            & (centre >= win_h[rw + 1 : rw + 1 + n].max(axis=1))
            & above
            & ~major
        )
        hits = np.flatnonzero(major | minor)
        if hits.size == 0:
            return
        d = self._d
        for h in hits.tolist():
            p = lo + h  # absolute mwi index == absolute input index of its newest sample
            amp = math.sqrt(float(centre[h]) * self._mwi_to_ms2)
            # Max slope (mV/s) over the integration window: T-wave discrimination.
            s_end = p - base - lp_off - self._k  # slope index ending at input p
            s_seg = slope[max(0, s_end - self._w + 1) : s_end + 1]
            max_slope = float(np.abs(s_seg).max()) / self._slope_scale
            # R: largest |lp - centred mean| within _R_SLOPE_S of the steepest slope in input
            # time [p_in - before, p_in + after]. slope[j] is centred on input time
            # base + j + lp_off - lp_delay + k / 2.
            p_in = p - (self._mwi_first - self._lp_delay) // 2 - self._lp_delay
            s_lo = p_in - self._r_before - base - lp_off + self._lp_delay - self._k // 2
            s_hi = p_in + self._r_after - base - lp_off + self._lp_delay - self._k // 2
            steep = p_in - self._r_before + int(np.argmax(np.abs(slope[s_lo : s_hi + 1])))
            r_lo = max(steep - self._r_slope, p_in - self._r_before)
            r_hi = min(steep + self._r_slope, p_in + self._r_after)
            # lp sample for input time t sits at lp index t + lp_delay - lp_off - base.
            j_lo = r_lo + self._lp_delay - lp_off - base
            j_hi = r_hi + self._lp_delay - lp_off - base
            window = lp[j_lo - d : j_hi + d + 1]
            csum = _moving_sum(window, 2 * d + 1)
            centred = window[d : d + csum.shape[0]] * (2 * d + 1) - csum
            r = r_lo + int(np.argmax(np.abs(centred)))
            cand = (p, amp, r, max_slope)
            if not self._learned and self._start is not None and p >= self._start + self._learn:
                self._finish_learning()
            if not major[h]:
                if self._learned:
                    self._add_minor(cand, self._distinct(seg[h : h + 2 * rw + 1]))
            elif not self._learned:
                self._learning.append(cand)
            else:
                self._classify(cand)

    # ------------------------------------------------------------------ decisions

    def _threshold(self) -> float:
        spk = float(np.median(self._spk)) if self._spk else 0.0
        npk = float(np.median(self._npk)) if self._npk else 0.0
        return npk + _THRESHOLD_FRACTION * (spk - npk)

    def _mean_rr(self) -> float:
        if not self._rr:
            return self.fs_hz  # 60 bpm until two beats are known
        rr = sum(self._rr) / len(self._rr)
        return min(max(rr, _RR_MIN_S * self.fs_hz), _RR_MAX_S * self.fs_hz)

    def _process(self, horizon: int) -> None:
        """Run time-triggered events (learning end, search-back) whose time is < horizon."""
        if self._start is None:
            return
        if not self._learned:
            if horizon < self._start + self._learn:
                return
            self._finish_learning()
        while self._search_at is not None and self._search_at < horizon:
            self._search_back(self._search_at)

    def _finish_learning(self) -> None:
        assert self._start is not None
        self._learned = True
        amps = [c[1] for c in self._learning]
        end = self._start + self._learn
        if amps:
            top = max(amps)
            self._spk = [top * 0.5]
            low = [v for v in amps if v < 0.5 * top]
            self._npk = [float(np.median(low))] if low else [0.0]
            self._npk_p = [-1]  # learnt, not a candidate
        pending, self._learning = self._learning, []
        self._search_at = end + _MISSED_RR_FACTOR * self._mean_rr()
        self._last_p = None
        for cand in pending:
            self._classify(cand)

    def _classify(self, cand: tuple[int, float, int, float]) -> None:
        p, amp, _, slope = cand
        self._search_back_until(p)
        is_twave = self._is_twave(p, slope)
        if amp > self._threshold() and not is_twave:
            self._withdraw_if_replaced(cand)
            self._accept(cand, p)
            return
        if not (is_twave and _TWAVE_NOT_NOISE):
            self._npk.append(amp)
            self._npk_p.append(p)
            del self._npk[:-_HISTORY]
            del self._npk_p[:-_HISTORY]
        self._skipped.append(cand)

    def _search_back_until(self, p: int) -> None:
        """Run the search-backs due at or before candidate ``p`` first (time order)."""
        while self._search_at is not None and self._search_at <= p:
            self._search_back(self._search_at)

    def _is_twave(self, p: int, slope: float) -> bool:
        """Rule 3: a T wave (low slope within 360 ms) or an echo (less steep within 280 ms)
        of the last beat."""
        if self._last_p is None:
            return False
        dt = p - self._last_p
        return (dt < self._twave and slope < _TWAVE_SLOPE_RATIO * self._last_slope) or (
            dt < self._double and slope < self._last_slope
        )

    @staticmethod
    def _distinct(around: NDArray[np.int64]) -> bool:
        """Rule 3b: between the centre of ``around`` (mwi over +-rw) and every larger sample in
        it, the mwi dips below `_MINOR_DIP` of the centre (a bump of its own, not a shoulder)."""
        rw = around.shape[0] // 2
        v = float(around[rw])
        before, after = around[:rw], around[rw + 1 :]
        big = np.flatnonzero(before >= v)
        if big.size and float(before[big[-1] :].min()) >= _MINOR_DIP * v:
            return False
        big = np.flatnonzero(after > v)
        return not (big.size and float(after[: big[0] + 1].min()) >= _MINOR_DIP * v)

    def _add_minor(self, cand: tuple[int, float, int, float], distinct: bool) -> None:
        """Rule 3b: a distinct minor peak well above the threshold is a beat; any other minor
        peak is kept for search-back only (never noise)."""
        p, amp, _, slope = cand
        self._search_back_until(p)
        if (
            distinct
            and self._last_p is not None
            and p - self._last_p >= self._rw
            and not self._is_twave(p, slope)
            and amp > _MINOR_THRESHOLD * self._threshold()
        ):
            self._withdraw_if_replaced(cand)
            self._accept(cand, p)
            return
        self._minor.append(cand)

    def _withdraw_if_replaced(self, cand: tuple[int, float, int, float]) -> None:
        """Rule 3c: a beat followed closely by a larger, steeper one was that beat's P wave or
        onset; withdraw it (and the level and RR it added) while it is still unreported."""
        w = self._withdrawable
        self._withdrawable = None
        p, amp, _, slope = cand
        if (
            w is None
            or p - w.p >= self._withdraw
            or amp <= w.amp
            or slope <= w.slope
            or p + self._rw >= w.r + self.latency_samples  # rule 4: may be reported already
            or w.r not in self._pending
        ):
            return
        self._pending.remove(w.r)
        if w.had_rr:
            self._rr.pop()
        self._spk.pop()
        self._last_p, self._last_r, self._last_slope = w.last_p, w.last_r, w.last_slope
        self.withdrawn += 1

    def _accept(self, cand: tuple[int, float, int, float], known_at: float) -> None:
        """Make ``cand`` the last beat; queue it unless it was decided too late (rule 4)."""
        p, amp, r, slope = cand
        self._withdrawable = _Withdrawable(
            p=p, r=r, amp=amp, slope=slope, had_rr=self._last_p is not None,
            last_p=self._last_p, last_r=self._last_r, last_slope=self._last_slope,
        )
        if self._last_p is not None:
            self._rr.append(p - self._last_p)
            del self._rr[:-_HISTORY]
        self._spk.append(amp)
        del self._spk[:-_HISTORY]
        self._last_p = p
        self._last_r = r
        self._last_slope = slope
        self._skipped = [c for c in self._skipped if c[0] > p]
        self._minor = [c for c in self._minor if c[0] > p]
        self._search_at = p + _MISSED_RR_FACTOR * self._mean_rr()
        # Known once the 200 ms look-ahead after the decisive time has been seen; beats of the
        # learning period are decided only when it ends.
        assert self._start is not None
        known_at = max(known_at, self._start + self._learn)
        if known_at + self._rw < r + self.latency_samples:
            self._pending.append(r)
        else:
            self.late_dropped += 1

    def _search_back(self, when: float) -> None:
        """No beat for 1.5 mean RR: take the largest skipped peak above half the threshold."""
        limit = _SEARCHBACK_FRACTION * self._threshold()
        best: tuple[int, float, int, float] | None = None
        for c in self._skipped + self._minor:
            if c[0] >= when or c[1] <= limit:
                continue
            if self._last_p is not None and c[0] - self._last_p < self._twave:
                continue
            if best is None or c[1] > best[1]:
                best = c
        if best is not None:
            # It was a beat, not noise: it leaves the noise level (adaptations above).
            if best[0] in self._npk_p:
                i = self._npk_p.index(best[0])
                del self._npk[i]
                del self._npk_p[i]
            self._accept(best, when)
            return
        # Nothing: the beats may have become smaller (new lead, gain change).
        self._spk = [v * 0.5 for v in self._spk]
        self._skipped = [c for c in self._skipped if c[0] >= when]
        self._minor = [c for c in self._minor if c[0] >= when]
        self._search_at = when + self._mean_rr()


def detect(signal: ArrayLike, fs_hz: float) -> NDArray[np.int64]:
    """R-peak indices of a whole record, by the streaming core (`QrsDetector`).

    The record is fed in one call, then a flat continuation flushes the beats still inside the
    latency; only beats inside the record are returned.
    """
    x = np.asarray(signal, dtype=np.float64).ravel()
    det = QrsDetector(fs_hz)
    first = det.update(x)
    finite = x[np.isfinite(x)]
    pad_value = float(finite[-1]) if finite.size else 0.0
    pad = np.full(det.latency_samples + det._tail_len + det._rw + 1, pad_value)
    rest = det.update(pad)
    beats = np.concatenate((first, rest))
    return beats[beats < x.shape[0]]
