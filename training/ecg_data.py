"""ECG beat data for training and evaluation: MIT-BIH records, patient-wise folds, ECG5000.

MIT-BIH Arrhythmia records (WFDB, 360 Hz, two leads) are read with ``wfdb``; every reference
beat annotation becomes one beat with its AAMI class, shape window and RR features through
`models.beats` (the same code the edge runs). Non-beat annotations (rhythm, noise marks) are
dropped before the RR sequence is formed.

Choices, stated once:

- **Lead.** MLII wherever the header names one (lead 0 in most records, lead 1 in 114);
  otherwise the first lead (V5 in the paced 102 and 104). `RecordBeats.lead` says which.
- **Paced records** (102, 104, 107, 217) are excluded from beat classification and anomaly
  training and evaluation, as is customary since de Chazal et al. 2004 and ANSI/AAMI EC57
  (paced beats are not the rhythm the classes describe). They stay loadable for QRS work.
- **Q beats** (unclassifiable, paced fusion; 8 in the non-paced shared records) are loaded
  but `BeatDataset.from_records` drops them by default: too few to train or score.
- **Splits are by patient**, never by beat: beats of one record are strongly correlated, and
  a beat-level random split reports a within-patient figure that does not carry to new
  patients. `record_folds` groups records per patient (`training.datasets.patient_id`: 201
  and 202 are one subject) and balances S and V beats across folds.
- **Inter-patient sets** of de Chazal et al. 2004 (`DS1`, `DS2`). The shared records are DS1
  plus the paced ones; DS2 is held back, and `find_records` says which of each set a
  directory holds.

ECG5000 (UCR archive): 140-point z-normalised beats of one CHF patient; class 1 is normal,
classes 2 to 5 abnormal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from models.beats import (
    AAMI_CLASSES,
    DEFAULT_SPEC,
    BeatSpec,
    aami_codes,
    beat_features,
)
from training.datasets import patient_id
from training.qrs_score import PACED_RECORDS as _PACED
from training.qrs_score import load_ecg_record

__all__ = [
    "DS1",
    "DS2",
    "PACED_RECORDS",
    "BeatDataset",
    "Ecg5000",
    "RecordBeats",
    "WfdbInventory",
    "class_counts",
    "find_records",
    "load_ecg5000",
    "load_mitdb",
    "load_mitdb_record",
    "record_folds",
]

PACED_RECORDS: Final[frozenset[str]] = frozenset(_PACED)
"""MIT-BIH records with paced rhythm: excluded from beat classification (module docstring)."""

DS1: Final[tuple[str, ...]] = (
    "101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124",
    "201", "203", "205", "207", "208", "209", "215", "220", "223", "230",
)  # fmt: skip
"""de Chazal et al. 2004 inter-patient training set (22 records)."""

DS2: Final[tuple[str, ...]] = (
    "100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212",
    "213", "214", "219", "221", "222", "228", "231", "232", "233", "234",
)  # fmt: skip
"""de Chazal et al. 2004 inter-patient test set (22 records)."""

_N_ECG5000_POINTS: Final = 140
_ECG5000_NORMAL: Final = 1


@dataclass(frozen=True)
class RecordBeats:
    """Every reference beat of one record: R sample, symbol, AAMI code, features, usability.

    ``features`` rows are `models.beats.beat_features` rows (shape window, then RR features);
    ``usable`` is False for the first and last beat and windows cut by the record's ends.
    """

    record: str
    patient: str
    lead: str
    fs: float
    r_samples: NDArray[np.int64]
    symbols: NDArray[np.str_]
    aami: NDArray[np.int8]
    features: NDArray[np.float64]
    usable: NDArray[np.bool_]

    @property
    def paced(self) -> bool:
        """True for the paced MIT-BIH records."""
        return self.record in PACED_RECORDS

    def counts(self) -> dict[str, int]:
        """Beats per AAMI class (all beats, usable or not)."""
        return {c: int(np.sum(self.aami == k)) for k, c in enumerate(AAMI_CLASSES)}


CHEST_LEADS: Final = ("V1", "V2", "V3", "V4", "V5", "V6")
"""Lead names a two-lead beat spec takes as its chest lead (`models.beats` rule 9)."""


def chest_lead(path: str | Path, primary: str) -> tuple[str, NDArray[np.float64]] | None:
    """The record's chest lead (name, mV) other than ``primary``, the first in `CHEST_LEADS`
    order; None when it has none (MIT-BIH 102 and 104 have V5 and V2 but no MLII: their
    primary lead is already a chest lead)."""
    import wfdb  # noqa: PLC0415

    base = Path(path)
    names = [str(n) for n in wfdb.rdheader(str(base)).sig_name]
    if primary in CHEST_LEADS:
        return None
    name = next((n for n in CHEST_LEADS if n in names), None)
    if name is None:
        return None
    rec = wfdb.rdrecord(str(base), channels=[names.index(name)])
    return name, np.asarray(rec.p_signal[:, 0], dtype=np.float64)


def load_mitdb_record(path: str | Path, spec: BeatSpec = DEFAULT_SPEC) -> RecordBeats:
    """One WFDB record with its ``.atr`` reference annotation (``path`` without extension),
    read by `training.qrs_score.load_ecg_record` (MLII where the header has it, else lead 0);
    with a two-lead spec also its chest lead (`chest_lead`; NaN blocks without one)."""
    path = Path(path)
    ecg = load_ecg_record(path)
    symbols, samples = ecg.symbols, ecg.beats
    # A handful of annotations share a sample with the previous one; keep the first.
    keep = np.concatenate([[True], np.diff(samples) > 0])
    symbols, samples = symbols[keep], samples[keep]
    signal = np.nan_to_num(ecg.signal_mv)
    fs = ecg.fs_hz
    chest = chest_lead(path, ecg.lead) if spec.leads > 1 else None
    lead = ecg.lead if chest is None else f"{ecg.lead}+{chest[0]}"
    features, usable = beat_features(signal, samples, fs, spec,
                                     None if chest is None else np.nan_to_num(chest[1]))
    name = path.name
    return RecordBeats(
        record=name,
        patient=patient_id(name, path.parent.name),
        lead=lead,
        fs=fs,
        r_samples=samples,
        symbols=symbols,
        aami=aami_codes(symbols.tolist()),
        features=features,
        usable=usable,
    )


def _record_names(directory: Path) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.hea") if p.with_suffix(".atr").exists())


def load_mitdb(
    directory: str | Path,
    records: Iterable[str] | None = None,
    *,
    include_paced: bool = False,
    spec: BeatSpec = DEFAULT_SPEC,
) -> list[RecordBeats]:
    """Records in ``directory`` (default: every annotated one), paced ones only if asked."""
    root = Path(directory)
    names = sorted(records) if records is not None else _record_names(root)
    if not include_paced:
        names = [n for n in names if n not in PACED_RECORDS]
    if not names:
        raise FileNotFoundError(f"no annotated WFDB records in {root}")
    return [load_mitdb_record(root / n, spec) for n in names]


def class_counts(
    directory: str | Path, records: Iterable[str] | None = None
) -> dict[str, dict[str, int]]:
    """Beats per AAMI class of each record, from its annotations alone (no signal is read)."""
    import wfdb  # noqa: PLC0415

    root = Path(directory)
    names = sorted(records) if records is not None else _record_names(root)
    out = {}
    for name in names:
        codes = aami_codes(wfdb.rdann(str(root / name), "atr").symbol)
        out[name] = {c: int(np.sum(codes == k)) for k, c in enumerate(AAMI_CLASSES)}
    return out


@dataclass(frozen=True)
class BeatDataset:
    """Usable beats of several records, concatenated: features, AAMI codes, record per beat."""

    features: NDArray[np.float32]
    aami: NDArray[np.int8]
    record: NDArray[np.str_]
    r_samples: NDArray[np.int64]

    @classmethod
    def from_records(cls, records: Sequence[RecordBeats], *, drop_q: bool = True) -> BeatDataset:
        """Usable beats of ``records``; Q beats dropped unless ``drop_q`` is False."""
        q = AAMI_CLASSES.index("Q")
        parts = []
        for rb in records:
            keep = rb.usable & (rb.aami >= 0)
            if drop_q:
                keep &= rb.aami != q
            parts.append((rb, keep))
        return cls(
            features=np.concatenate([rb.features[k] for rb, k in parts]).astype(np.float32),
            aami=np.concatenate([rb.aami[k] for rb, k in parts]),
            record=np.concatenate([np.full(int(k.sum()), rb.record) for rb, k in parts]),
            r_samples=np.concatenate([rb.r_samples[k] for rb, k in parts]),
        )

    def subset(self, records: Iterable[str]) -> BeatDataset:
        """The beats of ``records`` only."""
        mask = np.isin(self.record, list(records))
        return BeatDataset(
            self.features[mask], self.aami[mask], self.record[mask], self.r_samples[mask]
        )

    def counts(self) -> dict[str, int]:
        """Beats per AAMI class."""
        return {c: int(np.sum(self.aami == k)) for k, c in enumerate(AAMI_CLASSES)}


def record_folds(counts: Mapping[str, Mapping[str, int]], k: int = 5) -> list[tuple[str, ...]]:
    """Leave-records-out folds: ``k`` disjoint groups of records, a patient never split.

    ``counts`` maps record -> beats per AAMI class (`class_counts`, `RecordBeats.counts`).
    Deterministic greedy balancing: patients are taken in decreasing order of their largest
    share of all S or V beats and each goes to the fold (among those not yet holding their
    fair number of patients) whose sum of squared S, V and total-beat shares grows least
    (the smallest dot product of the fold's shares with the patient's).
    So the few S-rich records spread over different folds, and every fold gets S and V beats
    where the data allows.
    """
    if k < 2:
        raise ValueError("need at least 2 folds")
    patients: dict[str, list[str]] = {}
    for rec in sorted(counts):
        patients.setdefault(patient_id(rec), []).append(rec)
    if len(patients) < k:
        raise ValueError(f"{len(patients)} patients cannot fill {k} folds")
    load = {}
    for pid, recs in patients.items():
        c: Counter[str] = Counter()
        for rec in recs:
            c.update(counts[rec])
        load[pid] = np.array([c["S"], c["V"], sum(c.values())], dtype=np.float64)
    total = np.maximum(np.sum(list(load.values()), axis=0), 1.0)
    share = {pid: v / total for pid, v in load.items()}
    order = sorted(share, key=lambda p: (-max(share[p][0], share[p][1]), -share[p][2], p))
    cap = -(-len(patients) // k)
    fold_load = np.zeros((k, 3))
    fold_members: list[list[str]] = [[] for _ in range(k)]
    for pid in order:
        open_folds = [f for f in range(k) if len(fold_members[f]) < cap]
        cost = [float(np.dot(fold_load[f], share[pid])) for f in open_folds]
        best = open_folds[int(np.argmin(cost))]
        fold_load[best] += share[pid]
        fold_members[best].append(pid)
    return [tuple(sorted(r for p in members for r in patients[p])) for members in fold_members]


@dataclass(frozen=True)
class Ecg5000:
    """ECG5000 splits: beats (n, 140) and classes 1 to 5 (1 = normal)."""

    train_x: NDArray[np.float64]
    train_y: NDArray[np.int64]
    test_x: NDArray[np.float64]
    test_y: NDArray[np.int64]

    @staticmethod
    def abnormal(y: NDArray[np.int64]) -> NDArray[np.bool_]:
        """True for classes 2 to 5."""
        return np.asarray(y != _ECG5000_NORMAL)


def _read_ucr(path: Path) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    table = np.loadtxt(path, delimiter="\t", dtype=np.float64, ndmin=2)
    if table.shape[1] != _N_ECG5000_POINTS + 1:
        raise ValueError(f"{path}: expected {_N_ECG5000_POINTS + 1} columns, got {table.shape}")
    return table[:, 1:], table[:, 0].astype(np.int64)


def load_ecg5000(directory: str | Path) -> Ecg5000:
    """``ECG5000_TRAIN.tsv`` and ``ECG5000_TEST.tsv`` of ``directory`` (the archive's split)."""
    root = Path(directory)
    train_x, train_y = _read_ucr(root / "ECG5000_TRAIN.tsv")
    test_x, test_y = _read_ucr(root / "ECG5000_TEST.tsv")
    return Ecg5000(train_x, train_y, test_x, test_y)


@dataclass(frozen=True)
class WfdbInventory:
    """Which WFDB records a directory holds, and which of DS1 and DS2 have a reference."""

    present: tuple[str, ...]
    annotated: tuple[str, ...]
    ds1_found: tuple[str, ...]
    ds1_missing: tuple[str, ...]
    ds2_found: tuple[str, ...]
    ds2_missing: tuple[str, ...]

    def summary(self) -> str:
        """One line per set, for logs and reports."""
        return (
            f"{len(self.present)} records ({len(self.annotated)} with .atr); "
            f"DS1 {len(self.ds1_found)}/{len(DS1)} found, missing {list(self.ds1_missing)}; "
            f"DS2 {len(self.ds2_found)}/{len(DS2)} found, missing {list(self.ds2_missing)}"
        )


def find_records(directory: str | Path) -> WfdbInventory:
    """Records (``*.hea``) in ``directory``; a DS record counts as found only with its ``.atr``."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    present = tuple(sorted(p.stem for p in root.glob("*.hea")))
    annotated = tuple(_record_names(root))
    have = set(annotated)
    return WfdbInventory(
        present=present,
        annotated=annotated,
        ds1_found=tuple(r for r in DS1 if r in have),
        ds1_missing=tuple(r for r in DS1 if r not in have),
        ds2_found=tuple(r for r in DS2 if r in have),
        ds2_missing=tuple(r for r in DS2 if r not in have),
    )
