"""Scoring QRS detections against reference beat annotations (MIT-BIH style), and a loader.

Matching rule: the one of ``wfdb.processing.compare_annotations`` (WFDB's `Comparitor`),
reproduced here exactly so the numbers agree with it and our scorer needs no wfdb at scoring
time: reference beats are visited in order; each takes the closest detection not already used
(searching forward from the detection after the previous match); if that detection is closer
to the *next* reference beat, it is left to that one and the current beat may take the
detection just before it instead, if that one is free. A pair counts when the distance is
strictly below the window, ``int(0.150 * fs)`` samples (54 at 360 Hz). This is a greedy
one-to-one nearest matching, not an optimal assignment; with beats >= 200 ms apart and a
150 ms window the two rarely differ.

TP = matched reference beats, FN = reference beats without a match, FP = detections without a
match. Se = TP / (TP + FN), +P = TP / (TP + FP). Gross totals add TP/FN/FP over records before
dividing (the MIT-BIH convention), so long records weigh more.

Reference beats are the annotations whose symbol is one of `BEAT_SYMBOLS` (MIT-BIH beat
codes); rhythm changes (``+``), signal-quality marks (``~``, ``|``), comments and ventricular
flutter waves (``!``) are not beats.

ANSI/AAMI EC57 leaves ventricular flutter and fibrillation out of the QRS detection figures
(there is no QRS to find, only flutter waves). `EcgRecord.vf_episodes` are those stretches
(from a ``(VFL`` or ``(VF`` rhythm annotation to the next rhythm annotation); ``score_record``
leaves out the reference beats and detections inside them when given ``exclude``. Among the 26
shared records only 207 has any (2.4 minutes in six episodes).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from models.beats import BEAT_SYMBOLS

__all__ = [
    "BEAT_SYMBOLS",
    "MATCH_WINDOW_S",
    "PACED_RECORDS",
    "EcgRecord",
    "Score",
    "gross",
    "load_ecg_record",
    "match_beats",
    "score_record",
]


MATCH_WINDOW_S: Final = 0.150
"""A detection matches a reference beat closer than this (the ANSI/AAMI EC57 window)."""

PACED_RECORDS: Final = ("102", "104", "107", "217")
"""MIT-BIH records with paced rhythm, often reported apart (EC57 allows excluding them)."""

_PREFERRED_LEADS: Final = ("MLII", "II", "ML2")


@dataclass(frozen=True)
class Score:
    """TP/FN/FP of one record (or a total); Se and +P in percent (nan with no beats)."""

    name: str
    tp: int
    fn: int
    fp: int

    @property
    def se(self) -> float:
        """Sensitivity TP / (TP + FN), percent."""
        n = self.tp + self.fn
        return 100.0 * self.tp / n if n else float("nan")

    @property
    def ppv(self) -> float:
        """Positive predictivity TP / (TP + FP), percent."""
        n = self.tp + self.fp
        return 100.0 * self.tp / n if n else float("nan")


def match_beats(reference: ArrayLike, detected: ArrayLike, window: int) -> NDArray[np.int64]:
    """For each reference beat, the index of its matched detection or -1 (WFDB's rule).

    Both inputs are ascending sample indices; ``window`` in samples (match if distance < it).
    """
    ref = [int(v) for v in np.asarray(reference, dtype=np.int64)]
    test = [int(v) for v in np.asarray(detected, dtype=np.int64)]
    if any(b < a for a, b in itertools.pairwise(ref)) or any(
        b < a for a, b in itertools.pairwise(test)
    ):
        raise ValueError("sample indices must be ascending")
    n_ref, n_test = len(ref), len(test)
    match = [-1] * n_ref

    def closest(r: int, start: int) -> tuple[int, int]:
        best, best_d = start, abs(ref[r] - test[start])
        for t in range(start, n_test):
            diff = ref[r] - test[t]
            if abs(diff) < best_d:
                best, best_d = t, abs(diff)
            if diff <= 0:
                break
        return best, best_d

    r = t0 = 0
    while r < n_ref and t0 < n_test:
        c, cd = closest(r, t0)
        c_next, cd_next = closest(r + 1, t0) if r < n_ref - 1 else (-1, 0)
        if c == c_next and cd_next < cd:
            # Contested: the detection goes to the next beat; try the one before it.
            if c and (not r or c - 1 != match[r - 1]):
                c -= 1
                cd = abs(ref[r] - test[c])
                if cd < window:
                    match[r] = c
                t0 = c + 1
        else:
            if cd < window:
                match[r] = c
            t0 = c + 1
        r += 1
    return np.asarray(match, dtype=np.int64)


def score_record(
    name: str, reference: ArrayLike, detected: ArrayLike, fs_hz: float,
    exclude: ArrayLike | None = None,
) -> Score:
    """Score one record: window ``int(MATCH_WINDOW_S * fs_hz)`` samples, see module docstring.

    ``exclude``: (k, 2) sample ranges [start, end) whose reference beats and detections are
    left out (EC57's ventricular flutter and fibrillation, `EcgRecord.vf_episodes`).
    """
    det = np.asarray(detected, dtype=np.int64)
    if exclude is not None:
        ranges = np.asarray(exclude, dtype=np.int64).reshape(-1, 2)
        ref = np.asarray(reference, dtype=np.int64)
        reference = ref[~_inside(ref, ranges)]
        det = det[~_inside(det, ranges)]
    match = match_beats(reference, det, int(MATCH_WINDOW_S * fs_hz))
    tp = int(np.count_nonzero(match >= 0))
    return Score(name=name, tp=tp, fn=int(match.shape[0]) - tp, fp=int(det.shape[0]) - tp)


def _inside(x: NDArray[np.int64], ranges: NDArray[np.int64]) -> NDArray[np.bool_]:
    out = np.zeros(x.shape[0], dtype=bool)
    for start, end in ranges:
        out |= (x >= start) & (x < end)
    return out


def gross(scores: Iterable[Score], name: str = "gross") -> Score:
    """Totals over records (TP, FN, FP summed; Se and +P from the sums)."""
    items = list(scores)
    return Score(
        name=name,
        tp=sum(s.tp for s in items),
        fn=sum(s.fn for s in items),
        fp=sum(s.fp for s in items),
    )


@dataclass(frozen=True)
class EcgRecord:
    """One ECG lead in mV with its reference beats (sample indices)."""

    name: str
    fs_hz: float
    lead: str
    signal_mv: NDArray[np.float64]
    beats: NDArray[np.int64]
    symbols: NDArray[np.str_]
    """The beat annotation symbol of each of ``beats`` (``N``, ``V``, ...)."""
    vf_episodes: NDArray[np.int64] = field(
        default_factory=lambda: np.zeros((0, 2), dtype=np.int64)
    )
    """(k, 2) sample ranges [start, end) of ventricular flutter or fibrillation (EC57)."""


_VF_RHYTHMS: Final = ("(VFL", "(VF")


def _vf_episodes(
    symbols: NDArray[np.str_], samples: NDArray[np.int64], aux: Sequence[str], end: int
) -> NDArray[np.int64]:
    """Rhythm annotations ``(VFL`` / ``(VF`` to the next rhythm annotation (or the end)."""
    rhythm = [(int(s), str(a).rstrip("\x00")) for sym, s, a in zip(symbols, samples, aux,
                                                                   strict=True) if sym == "+"]
    out = []
    for k, (start, name) in enumerate(rhythm):
        if name.startswith(_VF_RHYTHMS):
            stop = rhythm[k + 1][0] if k + 1 < len(rhythm) else end
            out.append((start, stop))
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def _wfdb() -> Any:
    try:
        import wfdb  # noqa: PLC0415 - heavy (pandas, scipy): only when loading records
    except ImportError as exc:
        raise ImportError(f"loading WFDB records needs the 'sim' extra ({exc})") from exc
    return wfdb


def load_ecg_record(
    path: str | Path, *, leads: Sequence[str] = _PREFERRED_LEADS, sampto: int | None = None
) -> EcgRecord:
    """A WFDB record with ``.atr``: the first lead named in ``leads`` (MLII), else lead 0.

    Lead names come from the header (MIT-BIH 102 and 104 have no MLII). Reference beats are the
    ``.atr`` annotations with a symbol in `BEAT_SYMBOLS`, up to ``sampto`` if given.
    """
    wfdb = _wfdb()
    base = Path(path)
    if base.suffix in (".hea", ".dat", ".atr"):
        base = base.with_suffix("")
    header = wfdb.rdheader(str(base))
    names = [str(n) for n in header.sig_name]
    channel = next((names.index(n) for n in leads if n in names), 0)
    rec = wfdb.rdrecord(str(base), channels=[channel], sampto=sampto)
    ann = wfdb.rdann(str(base), "atr", sampto=sampto)
    symbols = np.asarray(ann.symbol)
    samples = np.asarray(ann.sample, dtype=np.int64)
    is_beat = np.isin(symbols, sorted(BEAT_SYMBOLS))
    beats = samples[is_beat]
    return EcgRecord(
        vf_episodes=_vf_episodes(symbols, samples, ann.aux_note, int(rec.sig_len)),
        name=base.name,
        fs_hz=float(rec.fs),
        lead=names[channel],
        signal_mv=np.asarray(rec.p_signal[:, 0], dtype=np.float64),
        beats=beats,
        symbols=np.asarray(symbols[is_beat], dtype=np.str_),
    )
