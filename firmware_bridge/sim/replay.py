"""Replay of real recordings: WFDB records (PhysioNet) and the BIDMC CSV files.

Supported inputs (``load_recording`` picks by content, not by name):

- WFDB waveform records, single- or multi-segment (MIT-BIH Arrhythmia ``100``, MIMIC-III
  waveform records with a ``_layout`` header and ``~`` gap segments, PhysioNet/CinC 2015 alarm
  records such as ``a103l`` with a ``.mat`` signal file). The ECG channel is chosen by lead name
  (II first), PPG is ``PLETH``. When that ECG is lead II (``II``/``MLII``) and the record also
  has a precordial lead (``V1`` to ``V6``, e.g. MIT-BIH ``V1``/``V5``), it is kept as the second
  ECG lead (WAVEFORM channel 5, ECG_V), gaps included as for the first. Heart rate comes from
  the reference beat annotations (``.atr``) when present, else from a small QRS detector here;
  blood pressure from an ``ABP``/``ART`` channel. Pacemaker pulses come from the reference
  annotations too: one per paced ('/') or fusion-of-paced ('f') beat, `PACE_LEAD_S` before it
  (single-segment records). If a MIMIC numerics record (same name plus ``n``) lies next to the
  waveform record its numerics take precedence, as they are the bedside monitor's own values.
  Missing segment files become gaps (the board reports lead off / probe off).
- WFDB numerics records (sampling rate below 1 Hz, e.g. MIMIC-III ``...n.hea``, one row a
  minute): held piecewise-constant at 1 Hz. Intermittent non-invasive pressure is held for up to
  `NIBP_HOLD_S` after a reading, as a bedside monitor displays it.
- BIDMC ``bidmc_NN_Signals.csv`` (125 Hz, columns named in the header row with a leading space;
  time is the row index / 125 because the printed time is rounded) with its
  ``bidmc_NN_Numerics.csv`` (1 Hz: ``Time [s], HR, PULSE, RESP, SpO2``) when it lies alongside;
  a Numerics file alone is replayed as numerics.

Numerics equal to 0 or negative, or NaN, are "not measured" (validity flag clear). Waveforms are
kept in physical units here and turned into int16 with a gain and baseline that fit the signal
(`fit_scale`). ``wfdb`` (which pulls pandas, scipy and matplotlib) is imported inside the
functions that need it, never at module level.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from firmware_bridge.frames import Sensor, WaveformChannel
from firmware_bridge.sim.vitals import N_VITALS, Vital, clamp_vitals, mean_arterial_pressure

__all__ = [
    "BIDMC_FS_HZ",
    "DEFAULT_MAX_DURATION_S",
    "FIXTURES",
    "NIBP_HOLD_S",
    "PACE_LEAD_S",
    "PACE_SYMBOLS",
    "Recording",
    "RecordingSource",
    "detect_beats",
    "fit_scale",
    "fixture_path",
    "heart_rate_per_second",
    "load_bidmc_numerics",
    "load_bidmc_signals",
    "load_recording",
    "load_wfdb",
    "pressure_per_second",
]

_log = logging.getLogger(__name__)

BIDMC_FS_HZ: Final = 125
DEFAULT_MAX_DURATION_S: Final = 1800.0  # waveforms loaded at most (memory on a Pi)
NIBP_HOLD_S: Final = 900.0  # a cuff reading stays displayed for 15 min
FIXTURE_DIR: Final = Path(__file__).resolve().parent / "fixtures"
FIXTURES: Final[dict[str, str]] = {
    "mitdb-100": "mitdb_100_60s",  # WFDB, 2 leads at 360 Hz, with reference beat annotations
    "bidmc-01": "bidmc_01_Signals.csv",  # BIDMC CSV excerpt, with a Numerics file
    "mimic3-numerics": "s00001_numerics_2h",  # WFDB numerics, one row a minute
}

# Signal names, lower case without punctuation, in order of preference.
_ECG_NAMES: Final = ("ii", "mlii", "ecg", "ecgii", "i", "v", "v5", "mcl1", "iii", "v1", "v2", "avr")
_LEAD_II_NAMES: Final = frozenset({"ii", "mlii", "ecgii"})
"""Names of a primary ECG that is lead II: only then is a precordial lead kept beside it."""
_ECG_V_NAMES: Final = ("v1", "v2", "v3", "v4", "v5", "v6")
"""Precordial (chest) leads sent on WAVEFORM channel 5 (ECG_V); "V" without a number is not."""
_PPG_NAMES: Final = ("pleth", "ppg", "plethysmogram")
_ABP_NAMES: Final = ("abp", "art", "ap")
_NUMERIC_NAMES: Final[dict[Vital, tuple[str, ...]]] = {
    Vital.HR: ("hr", "heartrate"),
    Vital.SPO2: ("spo2", "sao2", "spo2pct"),
    Vital.RR: ("resp", "rr", "respiration"),
    Vital.SBP: ("abpsys", "artsys", "abps"),
    Vital.DBP: ("abpdias", "artdias", "abpd"),
    Vital.MAP: ("abpmean", "artmean", "abpm"),
    Vital.TEMP: ("temp", "tblood", "tcore", "temperature"),
}
_PULSE_NAMES: Final = ("pulse", "pulserate")
_NIBP_NAMES: Final[dict[Vital, tuple[str, ...]]] = {
    Vital.SBP: ("nbpsys", "nibpsys", "nbps"),
    Vital.DBP: ("nbpdias", "nibpdias", "nbpd"),
    Vital.MAP: ("nbpmean", "nibpmean", "nbpm"),
}
_BEAT_SYMBOLS: Final = frozenset("NLRBAaJSVrFejnE/fQ?")
PACE_SYMBOLS: Final = frozenset("/f")
"""Beat annotations that had a pacemaker pulse: paced beat, fusion of paced and normal beat."""
PACE_LEAD_S: Final = 0.02
"""How long (s) a pacemaker pulse precedes its beat annotation. Measured on MIT-BIH 102, 104,
107 and 217: the steepest spike of a paced beat sits a median 3 to 25 ms before its '/'
annotation (the annotation marks the QRS, the spike the pacemaker's stimulus)."""

# QRS detector and rate estimation.
_QRS_WINDOW_S: Final = 0.12  # energy integration window
_REFRACTORY_S: Final = 0.25  # no two beats closer than this (240 bpm)
_THRESHOLD_BLOCK_S: Final = 10.0
_THRESHOLD_FRACTION: Final = 0.3
_THRESHOLD_PERCENTILE: Final = 98.0
_HR_AVERAGE_BEATS: Final = 4
_ASYSTOLE_S: Final = 3.0  # no beat for this long: no heart rate
_HR_MIN_BPM: Final = 20.0
_HR_MAX_BPM: Final = 300.0
_MIN_PULSE_PRESSURE_MMHG: Final = 10.0
_INT16_MAX: Final = 32767
_SCALE_HEADROOM: Final = 0.9  # use 90 % of the int16 range


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True, slots=True)
class Recording:
    """A recording ready for replay, in physical units.

    ``vitals``: (n_seconds, 7) at 1 Hz, row k = second k from the start, NaN = not measured.
    ``ecg_mv`` / ``ppg_au``: waveforms at ``fs_hz`` (NaN = gap), or None when absent.
    ``ecg_v_mv``: the second ECG lead, a precordial one named ``ecg_v_lead``, at ``fs_hz``.
    """

    name: str
    vitals: NDArray[np.float64]
    fs_hz: int = 0
    ecg_mv: NDArray[np.float64] | None = None
    ppg_au: NDArray[np.float64] | None = None
    ecg_lead: str = ""
    abp_mmhg: NDArray[np.float64] | None = None
    """Arterial pressure waveform at ``fs_hz`` (mmHg), when recorded."""
    notes: tuple[str, ...] = field(default_factory=tuple)
    pace_s: NDArray[np.float64] = field(default_factory=lambda: np.empty(0, dtype=np.float64))
    """Pacemaker pulse times (s from the start, increasing); empty when the recording has none.

    Taken from the reference annotations (`PACE_SYMBOLS`, `PACE_LEAD_S` before the beat), since
    a pace spike is far narrower than a sample at the recorded rate and cannot be found in it.
    """
    ecg_v_mv: NDArray[np.float64] | None = None
    """Second ECG lead (mV, NaN = gap) at ``fs_hz``: a precordial lead V1..V6 recorded beside
    lead II (``ecg_mv``), same length; None when the record has no such pair."""
    ecg_v_lead: str | None = None
    """The record's name for ``ecg_v_mv`` (e.g. ``V1``); None when there is none."""

    @property
    def duration_s(self) -> float:
        """Length in seconds (the longer of waveforms and vitals)."""
        wave_s = 0.0
        if self.fs_hz and self.ecg_mv is not None:
            wave_s = self.ecg_mv.shape[0] / self.fs_hz
        elif self.fs_hz and self.ppg_au is not None:
            wave_s = self.ppg_au.shape[0] / self.fs_hz
        return max(wave_s, float(self.vitals.shape[0]))

    @property
    def sensors(self) -> Sensor:
        """Sensors a board replaying this would advertise (ECG/PPG also when synthesisable)."""
        valid: NDArray[np.bool_] = np.zeros(N_VITALS, dtype=np.bool_)
        if self.vitals.size:
            valid = np.asarray(np.isfinite(self.vitals).any(axis=0), dtype=np.bool_)
        s = Sensor(0)
        if self.ecg_mv is not None or valid[Vital.HR]:
            s |= Sensor.ECG
        if self.ppg_au is not None or valid[Vital.SPO2]:
            s |= Sensor.PPG
        if valid[Vital.SPO2]:
            s |= Sensor.SPO2
        if valid[Vital.RR]:
            s |= Sensor.RESP
        if valid[Vital.SBP] or valid[Vital.DBP]:
            s |= Sensor.ABP
        if valid[Vital.TEMP]:
            s |= Sensor.TEMP
        if self.ecg_mv is not None and self.pace_s.size:
            s |= Sensor.PACE
        return s


def fixture_path(name: str) -> Path:
    """Path of a fixture shipped in the package (``FIXTURES`` keys); ValueError if unknown."""
    try:
        return FIXTURE_DIR / FIXTURES[name]
    except KeyError:
        raise ValueError(f"unknown fixture {name!r}; known: {', '.join(FIXTURES)}") from None


def fit_scale(x: NDArray[np.float64]) -> tuple[float, int]:
    """(gain counts/unit, baseline count) so that x fits int16 with 10 % headroom.

    The gain is a float32 value (what the wire carries), the baseline the count for 0 units.
    """
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return 1.0, 0
    lo, hi = float(finite.min()), float(finite.max())
    centre = (lo + hi) / 2.0
    half = max((hi - lo) / 2.0, abs(centre), 1e-6)
    gain = float(np.float32(_SCALE_HEADROOM * _INT16_MAX / half))
    baseline = int(np.clip(round(-centre * gain), -_INT16_MAX, _INT16_MAX))
    return gain, baseline


# ----------------------------------------------------------------------------- analysis helpers


def detect_beats(ecg: NDArray[np.float64], fs_hz: float) -> NDArray[np.int64]:
    """Sample indices of QRS complexes: squared slope, integrated, local maxima over a threshold.

    A deliberately small detector (Pan-Tompkins in spirit, fully vectorized), good enough to give
    a heart rate for records without annotations; it is not a diagnostic beat detector.
    """
    x = np.nan_to_num(np.asarray(ecg, dtype=np.float64) - np.nanmedian(ecg))
    n = x.shape[0]
    if n < 2 * fs_hz:
        return np.empty(0, dtype=np.int64)
    slope = np.diff(x, prepend=x[0])
    w = max(1, int(_QRS_WINDOW_S * fs_hz))
    energy = np.convolve(slope * slope, np.ones(w) / w, mode="same")
    block = int(_THRESHOLD_BLOCK_S * fs_hz)
    n_blocks = -(-n // block)
    padded = np.pad(energy, (0, n_blocks * block - n), mode="edge").reshape(n_blocks, block)
    thr = _THRESHOLD_FRACTION * np.percentile(padded, _THRESHOLD_PERCENTILE, axis=1)
    thr_per_sample = np.repeat(thr, block)[:n]
    r = int(_REFRACTORY_S * fs_hz)
    win_max = sliding_window_view(np.pad(energy, r, constant_values=-np.inf), 2 * r + 1).max(axis=1)
    cand = np.flatnonzero((energy >= win_max) & (energy > thr_per_sample) & (energy > 0))
    if cand.size > 1:
        keep = np.concatenate(([True], np.diff(cand) > r))
        cand = cand[keep]
    return cand.astype(np.int64)


def heart_rate_per_second(beat_times_s: NDArray[np.float64], n_seconds: int) -> NDArray[np.float64]:
    """Heart rate (bpm) at each whole second from beat times: mean of the last 4 RR intervals.

    NaN where fewer than two beats precede, where the last beat is older than 3 s (asystole or a
    gap), or where the rate is outside 20-300 bpm.
    """
    b = np.sort(np.asarray(beat_times_s, dtype=np.float64))
    out = np.full(n_seconds, np.nan)
    if b.size < 2 or n_seconds == 0:
        return out
    rr = np.diff(b)
    cs = np.concatenate(([0.0], np.cumsum(rr)))
    t = np.arange(n_seconds, dtype=np.float64)
    idx = np.searchsorted(b[1:], t, side="right")  # RR intervals completed by t
    lo = np.maximum(idx - _HR_AVERAGE_BEATS, 0)
    have = idx > lo
    mean_rr = np.where(have, (cs[idx] - cs[lo]) / np.maximum(idx - lo, 1), np.nan)
    last_beat = b[idx]  # end time of interval idx-1
    hr = 60.0 / mean_rr
    ok = have & (t - last_beat <= _ASYSTOLE_S) & (hr >= _HR_MIN_BPM) & (hr <= _HR_MAX_BPM)
    out[ok] = hr[ok]
    return out


def pressure_per_second(abp_mmhg: NDArray[np.float64], fs_hz: int) -> NDArray[np.float64]:
    """(n_seconds, 3) systolic, diastolic, mean pressure from an arterial waveform.

    Each second looks at a 2 s window (the second and the one before) so a slow beat is never
    missed; NaN where the window has a gap or the pulse pressure is implausibly small.
    """
    n_s = abp_mmhg.shape[0] // fs_hz
    out = np.full((n_s, 3), np.nan)
    if n_s == 0:
        return out
    sec = abp_mmhg[: n_s * fs_hz].reshape(n_s, fs_hz)
    mx, mn, mean = sec.max(axis=1), sec.min(axis=1), sec.mean(axis=1)
    prev = np.concatenate(([0], np.arange(n_s - 1)))
    sbp = np.maximum(mx, mx[prev])
    dbp = np.minimum(mn, mn[prev])
    mapp = (mean + mean[prev]) / 2.0
    ok = np.isfinite(sbp) & np.isfinite(dbp) & (sbp - dbp >= _MIN_PULSE_PRESSURE_MMHG) & (dbp > 0)
    out[ok, 0] = sbp[ok]
    out[ok, 1] = dbp[ok]
    out[ok, 2] = mapp[ok]
    return out


def _hold(values: NDArray[np.float64], hold_s: float) -> NDArray[np.float64]:
    """Carry the last valid value (per column) forward for up to ``hold_s`` rows (1 Hz)."""
    n = values.shape[0]
    idx = np.arange(n)[:, None]
    valid = np.isfinite(values)
    last = np.maximum.accumulate(np.where(valid, idx, -1), axis=0)
    held = np.take_along_axis(values, np.maximum(last, 0), axis=0)
    ok = (last >= 0) & (idx - last <= hold_s)
    return np.where(ok, held, np.nan)


def _vitals_from_numerics(
    names: Sequence[str], data: NDArray[np.float64], rows_per_second: float, n_seconds: int
) -> NDArray[np.float64]:
    """Map named numerics columns to a 1 Hz vitals array (piecewise-constant expansion)."""
    norm = [_norm(n) for n in names]
    row_of_second = np.minimum(
        np.floor(np.arange(n_seconds) * rows_per_second).astype(np.int64), data.shape[0] - 1
    )
    per_s = np.asarray(data, dtype=np.float64)[row_of_second]
    per_s = np.where(per_s > 0, per_s, np.nan)  # 0 or negative: not measured

    def column(aliases: Sequence[str]) -> NDArray[np.float64] | None:
        for alias in aliases:
            if alias in norm:
                return per_s[:, norm.index(alias)]
        return None

    out = np.full((n_seconds, N_VITALS), np.nan)
    for vital, aliases in _NUMERIC_NAMES.items():
        col = column(aliases)
        if col is not None:
            out[:, vital] = col
    pulse = column(_PULSE_NAMES)
    if pulse is not None:  # pulse rate stands in for HR when ECG gives none
        out[:, Vital.HR] = np.where(np.isfinite(out[:, Vital.HR]), out[:, Vital.HR], pulse)
    for vital, aliases in _NIBP_NAMES.items():
        col = column(aliases)
        if col is not None:
            held = _hold(col[:, None], NIBP_HOLD_S)[:, 0]
            out[:, vital] = np.where(np.isfinite(out[:, vital]), out[:, vital], held)
    derive = ~np.isfinite(out[:, Vital.MAP])
    out[derive, Vital.MAP] = mean_arterial_pressure(out[derive, Vital.SBP], out[derive, Vital.DBP])
    return clamp_vitals(out)


def _overlay(base: NDArray[np.float64], top: NDArray[np.float64] | None) -> NDArray[np.float64]:
    """Where ``top`` has a value use it, else ``base`` (same shape after trimming/padding)."""
    if top is None:
        return base
    n = base.shape[0]
    t = np.full_like(base, np.nan)
    m = min(n, top.shape[0])
    t[:m] = top[:m]
    return np.where(np.isfinite(t), t, base)


def _pick(names: Sequence[str], prefs: Sequence[str], data: NDArray[np.float64]) -> int | None:
    """Index of the preferred channel that has the most valid samples; None if none matches."""
    norm = [_norm(n) for n in names]
    best: tuple[int, int] | None = None  # (-valid count, preference rank)
    chosen: int | None = None
    for rank, pref in enumerate(prefs):
        for i, n in enumerate(norm):
            if n != pref:
                continue
            count = int(np.isfinite(data[:, i]).sum())
            if count == 0:
                continue
            key = (-count, rank)
            if best is None or key < best:
                best, chosen = key, i
    return chosen


def _assemble(
    name: str,
    fs_hz: int,
    names: Sequence[str],
    data: NDArray[np.float64],
    *,
    beats_s: NDArray[np.float64] | None,
    numerics: NDArray[np.float64] | None,
    notes: list[str],
    pace_s: NDArray[np.float64] | None = None,
) -> Recording:
    """Waveform channels -> Recording: pick ECG/PPG/ABP, derive per-second vitals."""
    n_s = int(data.shape[0] // fs_hz)
    ecg_i = _pick(names, _ECG_NAMES, data)
    ppg_i = _pick(names, _PPG_NAMES, data)
    abp_i = _pick(names, _ABP_NAMES, data)
    vitals = np.full((n_s, N_VITALS), np.nan)
    ecg = data[:, ecg_i].copy() if ecg_i is not None else None
    v_i = None
    if ecg_i is not None and _norm(names[ecg_i]) in _LEAD_II_NAMES:
        v_i = _pick(names, _ECG_V_NAMES, data)
    if beats_s is None and ecg is not None:
        beats_s = detect_beats(ecg, fs_hz) / fs_hz
        notes.append("heart rate from the built-in QRS detector")
    if beats_s is not None:
        vitals[:, Vital.HR] = heart_rate_per_second(beats_s, n_s)
    if abp_i is not None:
        bp = pressure_per_second(data[:, abp_i], fs_hz)
        vitals[:, Vital.SBP] = bp[:, 0]
        vitals[:, Vital.DBP] = bp[:, 1]
        vitals[:, Vital.MAP] = bp[:, 2]
    vitals = clamp_vitals(_overlay(vitals, numerics))
    return Recording(
        name=name,
        vitals=vitals,
        fs_hz=fs_hz,
        ecg_mv=ecg,
        ppg_au=data[:, ppg_i].copy() if ppg_i is not None else None,
        ecg_lead=names[ecg_i] if ecg_i is not None else "",
        abp_mmhg=data[:, abp_i].copy() if abp_i is not None else None,
        notes=tuple(notes),
        pace_s=np.empty(0) if pace_s is None or ecg is None else pace_s,
        ecg_v_mv=data[:, v_i].copy() if v_i is not None else None,
        ecg_v_lead=names[v_i] if v_i is not None else None,
    )


# ---------------------------------------------------------------------------------- BIDMC CSV


def _read_csv(path: Path) -> tuple[list[str], NDArray[np.float64]]:
    with path.open(newline="") as f:
        header = next(csv.reader(f))
    names = [h.strip() for h in header]
    data = np.genfromtxt(path, delimiter=",", skip_header=1, dtype=np.float64, ndmin=2)
    if data.shape[1] != len(names):
        raise ValueError(f"{path}: {data.shape[1]} columns but {len(names)} names in the header")
    return names, data


def load_bidmc_numerics(path: str | Path) -> NDArray[np.float64]:
    """BIDMC ``bidmc_NN_Numerics.csv`` (1 Hz: Time [s], HR, PULSE, RESP, SpO2) -> (n, 7) vitals.

    Row k is second k (the file's time column counts seconds from 0).
    """
    names, data = _read_csv(Path(path))
    norm = [_norm(n) for n in names]
    if "times" in norm:
        keep = [i for i, n in enumerate(norm) if n != "times"]
        names = [names[i] for i in keep]
        data = data[:, keep]
    return _vitals_from_numerics(names, data, 1.0, data.shape[0])


def load_bidmc_signals(
    path: str | Path, *, start_s: float = 0.0, max_duration_s: float | None = None
) -> Recording:
    """BIDMC ``bidmc_NN_Signals.csv`` (125 Hz) plus its Numerics file if present alongside."""
    p = Path(path)
    names, data = _read_csv(p)
    norm = [_norm(n) for n in names]
    if "times" in norm:
        keep = [i for i, n in enumerate(norm) if n != "times"]
        names = [names[i] for i in keep]
        data = data[:, keep]
    first = round(start_s * BIDMC_FS_HZ)
    last = None if max_duration_s is None else first + int(max_duration_s * BIDMC_FS_HZ)
    data = data[first:last]
    notes = ["BIDMC signals are rescaled by the dataset (no physical unit); sent as such"]
    numerics = None
    num_path = p.with_name(p.name.replace("_Signals.csv", "_Numerics.csv"))
    if num_path != p and num_path.exists():
        numerics = load_bidmc_numerics(num_path)[int(start_s) :]
        notes.append(f"numerics from {num_path.name}")
    return _assemble(p.stem, BIDMC_FS_HZ, names, data, beats_s=None, numerics=numerics, notes=notes)


# --------------------------------------------------------------------------------------- WFDB


def _record_base(path: Path) -> Path:
    if path.suffix in (".hea", ".dat", ".mat", ".atr"):
        return path.with_suffix("")
    return path


def _wfdb() -> Any:
    """The ``wfdb`` module, imported only when a WFDB record is replayed.

    It pulls pandas, scipy and matplotlib, which a Raspberry Pi with only the ``edge`` extra
    does not have; without it, say what to install instead of a bare traceback.
    """
    try:
        import wfdb  # noqa: PLC0415 - heavy: only when replaying
    except ImportError as exc:
        raise ImportError(
            "replaying WFDB records needs the 'sim' extra: pip install 'vigil[sim]' "
            f"({exc})"
        ) from exc
    return wfdb


def _read_wfdb_signals(
    base: Path, hdr: Any, sampfrom: int, sampto: int
) -> tuple[list[str], NDArray[np.float64]]:
    """Physical signals of a single- or multi-segment record on [sampfrom, sampto).

    Multi-segment records are read segment by segment; ``~`` segments and segment files that
    are missing become NaN, so one absent file does not make the whole record unreadable.
    """
    wfdb = _wfdb()
    if not getattr(hdr, "seg_name", None):
        rec = wfdb.rdrecord(str(base), sampfrom=sampfrom, sampto=sampto)
        return list(rec.sig_name), np.asarray(rec.p_signal, dtype=np.float64)
    seg_names: list[str] = list(hdr.seg_name)
    seg_lens: list[int] = [int(x) for x in hdr.seg_len]
    # Variable layout (first length 0): the first segment lists every signal; fixed layout:
    # every segment has the same signals, so the first one names them too.
    names = list(wfdb.rdheader(str(base.parent / seg_names[0])).sig_name)
    out = np.full((sampto - sampfrom, len(names)), np.nan)
    start = 0
    for seg, length in zip(seg_names, seg_lens, strict=True):
        end = start + length
        a, b = max(start, sampfrom), min(end, sampto)
        if length and a < b and seg != "~":
            try:
                rec = wfdb.rdrecord(str(base.parent / seg), sampfrom=a - start, sampto=b - start)
            except FileNotFoundError:
                _log.warning("segment %s of %s is missing: replayed as a gap", seg, base.name)
            else:
                sig = np.asarray(rec.p_signal, dtype=np.float64)
                for j, sname in enumerate(rec.sig_name):
                    if sname in names:
                        out[a - sampfrom : b - sampfrom, names.index(sname)] = sig[:, j]
        start = end
    return names, out


def _wfdb_beats(
    base: Path, sampfrom: int, sampto: int, fs: float
) -> tuple[NDArray[np.float64] | None, NDArray[np.float64]]:
    """Beat times and pacemaker pulse times (s from sampfrom) from reference annotations.

    (None, empty) when there is no ``.atr`` file. Pulses are `PACE_LEAD_S` before each paced or
    fusion beat; one that would fall before the first sample is dropped.
    """
    if not base.with_name(base.name + ".atr").exists():
        return None, np.empty(0)
    ann = _wfdb().rdann(str(base), "atr", sampfrom=sampfrom, sampto=sampto)
    symbols = np.asarray(ann.symbol)
    t_s = (np.asarray(ann.sample, dtype=np.int64) - sampfrom) / fs
    beat = np.isin(symbols, list(_BEAT_SYMBOLS))
    pace = np.sort(t_s[np.isin(symbols, list(PACE_SYMBOLS))] - PACE_LEAD_S)
    return t_s[beat], pace[pace >= 0.0]


def _load_wfdb_numerics(base: Path, hdr: Any, start_s: float) -> NDArray[np.float64]:
    """A numerics record (fs < 1 Hz) -> 1 Hz vitals, piecewise-constant between rows.

    Loaded whole (from ``start_s``): even a day of numerics is a few MB at 1 Hz.
    """
    fs = float(hdr.fs)
    total = int(hdr.sig_len)
    first = min(int(start_s * fs), total)
    names, data = _read_wfdb_signals(base, hdr, first, total)
    n_s = round(data.shape[0] / fs)
    return _vitals_from_numerics(names, data, fs, n_s)


def load_wfdb(
    path: str | Path,
    *,
    start_s: float = 0.0,
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
) -> Recording:
    """A WFDB record (path without or with the .hea suffix) -> Recording; see module docstring."""
    wfdb = _wfdb()
    base = _record_base(Path(path))
    hdr = wfdb.rdheader(str(base))
    fs = float(hdr.fs)
    if fs < 1.0:
        vitals = _load_wfdb_numerics(base, hdr, start_s)
        note = f"numerics every {1.0 / fs:g} s, held piecewise-constant at 1 Hz"
        return Recording(name=base.name, vitals=vitals, notes=(note,))
    fs_int = round(fs)
    sampfrom = min(int(start_s * fs), int(hdr.sig_len))
    sampto = int(hdr.sig_len)
    if max_duration_s is not None:
        sampto = min(sampto, sampfrom + int(max_duration_s * fs))
    names, data = _read_wfdb_signals(base, hdr, sampfrom, sampto)
    notes: list[str] = []
    beats = None
    pace = np.empty(0)
    if not getattr(hdr, "seg_name", None):
        beats, pace = _wfdb_beats(base, sampfrom, sampto, fs)
        if beats is not None:
            notes.append("heart rate from the reference beat annotations")
        if pace.size:
            notes.append(f"{pace.size} pacemaker pulses from the paced-beat annotations")
    numerics = None
    num_base = base.with_name(base.name + "n")
    if num_base.with_suffix(".hea").exists():
        numerics = load_wfdb(num_base, start_s=start_s, max_duration_s=max_duration_s).vitals
        notes.append(f"numerics from {num_base.name}")
    return _assemble(
        base.name, fs_int, names, data, beats_s=beats, numerics=numerics, notes=notes, pace_s=pace
    )


def load_recording(
    path: str | Path,
    *,
    start_s: float = 0.0,
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
) -> Recording:
    """Load any supported recording; ``fixture:NAME`` names one shipped in the package.

    ``start_s`` skips into the recording; ``max_duration_s`` bounds the waveforms held in memory
    (numerics, which are small, are always loaded whole).
    """
    text = str(path)
    p = fixture_path(text.removeprefix("fixture:")) if text.startswith("fixture:") else Path(text)
    if p.suffix == ".csv":
        with p.open(newline="") as f:
            header = [_norm(h) for h in next(csv.reader(f))]
        if "hr" in header and "pleth" not in header:
            vitals = load_bidmc_numerics(p)[int(start_s) :]  # small: never truncated
            return Recording(name=p.stem, vitals=vitals, notes=("BIDMC numerics at 1 Hz",))
        return load_bidmc_signals(p, start_s=start_s, max_duration_s=max_duration_s)
    base = _record_base(p)
    if not base.with_name(base.name + ".hea").exists():
        raise FileNotFoundError(f"no recording at {path} (expected a .hea header or a .csv file)")
    return load_wfdb(base, start_s=start_s, max_duration_s=max_duration_s)


# ------------------------------------------------------------------------------------- source


class RecordingSource:
    """A Recording as a signal source for `PatientModel`: values as recorded, looped or not.

    Vitals are taken as already measured (no extra noise). Recorded waveforms are sampled at the
    nearest recorded sample, so a board asked for another rate (SET_RATES) still works.
    """

    def __init__(self, recording: Recording, *, loop: bool = True) -> None:
        """``loop``: start again at the end (a long demo); else the source ends (`end_s`)."""
        self.recording = recording
        self.loop = loop
        self.name = f"replay:{recording.name}"
        self.sensors = recording.sensors
        self.end_s: float | None = None if loop else recording.duration_s
        self._n_s = max(recording.vitals.shape[0], 1)
        self._period_s = max(recording.duration_s, 1.0)
        # Pulses replay with the ECG they belong to: `recorded` loops it every n / fs seconds.
        self._pace_period_s = 0.0
        self._pace_s = np.empty(0)
        ecg = recording.ecg_mv
        if ecg is not None and ecg.shape[0] and recording.fs_hz:
            self._pace_period_s = ecg.shape[0] / recording.fs_hz
            pace = np.sort(np.asarray(recording.pace_s, dtype=np.float64))
            self._pace_s = pace[(pace >= 0.0) & (pace < self._pace_period_s)]
        self._scales: dict[WaveformChannel, tuple[float, int]] = {}
        for channel, wave in (
            (WaveformChannel.ECG_II, recording.ecg_mv),
            (WaveformChannel.ECG_V, recording.ecg_v_mv),
            (WaveformChannel.PPG, recording.ppg_au),
            (WaveformChannel.ABP, recording.abp_mmhg),
        ):
            if wave is not None:
                self._scales[channel] = fit_scale(wave)
        for note in recording.notes:
            _log.info("%s: %s", recording.name, note)

    def physiology(self, second: int) -> NDArray[np.float64]:
        """Recorded vitals at whole second ``second`` (NaN beyond the end when not looping)."""
        if self.recording.vitals.shape[0] == 0:
            return np.full(N_VITALS, np.nan)
        k = second % self._n_s if self.loop else second
        if k >= self.recording.vitals.shape[0]:
            return np.full(N_VITALS, np.nan)
        row: NDArray[np.float64] = self.recording.vitals[k].copy()
        return row

    def measure(self, second: int, true_row: NDArray[np.float64]) -> NDArray[np.float64]:
        """Recorded values are already readings: returned unchanged."""
        del second
        return np.array(true_row, dtype=np.float64, copy=True)

    def motion_level(self, t_s: NDArray[np.float64]) -> NDArray[np.float64]:
        """No added motion: the recording has its own artefacts."""
        return np.zeros(np.shape(t_s))

    def pace_times(self, t0_s: float, t1_s: float) -> NDArray[np.float64]:
        """Pacemaker pulse times (s, source time like ``recorded``) in [t0_s, t1_s), increasing.

        When looping, the pulses repeat with the ECG (every ECG length / fs seconds); a loop over
        the repetitions in the span, so a chunk costs one or two searches, never a per-sample
        loop. Empty when the recording has no pulses.
        """
        pulses = self._pace_s
        if pulses.size == 0 or t1_s <= t0_s:
            return np.empty(0)
        if not self.loop:
            lo, hi = np.searchsorted(pulses, [t0_s, t1_s])
            return pulses[lo:hi].copy()
        period = self._pace_period_s
        parts = []
        for k in range(int(np.floor(t0_s / period)), int(np.floor(t1_s / period)) + 1):
            start = k * period
            lo, hi = np.searchsorted(pulses, [t0_s - start, t1_s - start])
            parts.append(pulses[lo:hi] + start)
        return np.concatenate(parts)

    def _wave(self, channel: WaveformChannel) -> NDArray[np.float64] | None:
        if channel is WaveformChannel.ECG_II:
            return self.recording.ecg_mv
        if channel is WaveformChannel.ECG_V:
            return self.recording.ecg_v_mv
        if channel is WaveformChannel.PPG:
            return self.recording.ppg_au
        if channel is WaveformChannel.ABP:
            return self.recording.abp_mmhg
        return None

    def native_rate(self, channel: WaveformChannel) -> int | None:
        """Recorded sample rate of the channel, or None if it must be synthesised."""
        return self.recording.fs_hz if self._wave(channel) is not None else None

    def scale(self, channel: WaveformChannel) -> tuple[float, int] | None:
        """(gain, baseline) fitted to the recorded channel, or None if synthesised."""
        return self._scales.get(channel)

    def recorded(
        self, channel: WaveformChannel, t_s: NDArray[np.float64]
    ) -> NDArray[np.float64] | None:
        """Recorded samples nearest to times ``t_s`` (NaN = gap), or None if not recorded."""
        wave = self._wave(channel)
        if wave is None or wave.shape[0] == 0:
            return None
        idx = np.round(np.asarray(t_s) * self.recording.fs_hz).astype(np.int64)
        if self.loop:
            idx %= wave.shape[0]
            return wave[idx]
        out = np.full(idx.shape, np.nan)
        ok = idx < wave.shape[0]
        out[ok] = wave[idx[ok]]
        return out
