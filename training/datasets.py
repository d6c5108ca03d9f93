"""Bedside recordings on disk -> per-patient 1 Hz vitals for training and evaluation.

Reading the formats is the simulator's job (`firmware_bridge.sim.replay`): the same loader that
replays a record to the edge produces the training arrays, so a recording cannot look different
to the model than to the device. This module adds what training needs on top: finding the
recordings in a directory the user gives, knowing which patient each belongs to (splits are
always by patient, never by sample), and a fingerprint of exactly which files were used.

Patient identity, by source:
- MIMIC-III matched subset, ``sNNNNN-YYYY-MM-DD-hh-mm[n]``: the subject ``sNNNNN``.
- BIDMC, ``bidmc_NN_*.csv`` or ``bidmcNN``: the record number NN (one patient each).
- MIT-BIH Arrhythmia, a three-digit record: the record, except 201 and 202, which come from the
  same subject (Moody & Mark 2001).
- Anything else (e.g. CinC 2015 alarm records): the record name, within its folder.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
from numpy.typing import NDArray

from firmware_bridge.sim.replay import fixture_path, load_recording

__all__ = [
    "FIXTURE_SOURCE",
    "NUMERIC_KINDS",
    "DatasetError",
    "PatientVitals",
    "RealNumerics",
    "RecordingFile",
    "discover",
    "fingerprint",
    "load_real_numerics",
    "load_vitals",
    "patient_id",
    "split_by_patient",
]

_log = logging.getLogger(__name__)

Kind = Literal["numerics", "waveform", "bidmc_numerics", "bidmc_signals"]

_MIMIC: Final = re.compile(r"^(s\d{5})-\d{4}-\d{2}-\d{2}-\d{2}-\d{2}n?$")
_BIDMC: Final = re.compile(r"^bidmc_?(\d{2})")
_MITDB: Final = re.compile(r"^\d{3}$")
_MITDB_SAME_SUBJECT: Final = {"202": "201"}
_NUMERICS_MAX_FS_HZ: Final = 1.0
_HASH_CHUNK: Final = 1 << 20
FIXTURE_SOURCE: Final = "fixture:mimic3-numerics"
"""Real numerics used for calibration when no data directory is given (2 h, one patient)."""
NUMERIC_KINDS: Final[tuple[Kind, ...]] = ("numerics", "bidmc_numerics")
"""Recording kinds that are a bedside monitor's own numerics (`load_real_numerics`)."""


class DatasetError(ValueError):
    """A directory or file that cannot serve as a dataset, with the reason."""


@dataclass(frozen=True, slots=True)
class RecordingFile:
    """One loadable recording: the path to load, its patient and what kind of data it holds."""

    path: Path
    patient: str
    kind: Kind
    files: tuple[Path, ...]


@dataclass(frozen=True, slots=True)
class PatientVitals:
    """1 Hz vitals of one recording, (n_seconds, 7) in the simulator's column order, NaN = gap.

    ``native_period_s`` is how often the source really measured (60 for MIMIC numerics held
    piecewise-constant at 1 Hz, 1 for BIDMC numerics), so an evaluation can say which it used.
    """

    patient: str
    name: str
    vitals: NDArray[np.float64]
    native_period_s: float


def patient_id(record: str, folder: str = "") -> str:
    """Patient identity of a record name (see module docstring)."""
    if m := _MIMIC.match(record):
        return f"mimic3:{m.group(1)}"
    if m := _BIDMC.match(record):
        return f"bidmc:{m.group(1)}"
    if _MITDB.match(record):
        return f"mitdb:{_MITDB_SAME_SUBJECT.get(record, record)}"
    return f"{folder or 'record'}:{record}"


def _header_fields(path: Path) -> tuple[str, float, list[str]]:
    """Record name, sampling rate (Hz) and segment names of a WFDB header."""
    lines = [
        ln.strip()
        for ln in path.read_text(encoding="ascii", errors="replace").splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    if not lines:
        raise DatasetError(f"{path}: empty WFDB header")
    head = lines[0].split()
    name, _, nseg = head[0].partition("/")
    fs = 250.0
    if len(head) > 2:
        fs = float(head[2].split("/")[0])
    segments = [ln.split()[0] for ln in lines[1:]] if nseg else []
    return name, fs, segments


def _signal_files(hea: Path) -> list[Path]:
    files = [hea]
    for ln in hea.read_text(encoding="ascii", errors="replace").splitlines()[1:]:
        parts = ln.split()
        if parts and not ln.startswith("#") and "." in parts[0]:
            candidate = hea.parent / parts[0]
            if candidate.exists() and candidate not in files:
                files.append(candidate)
    for ext in (".atr",):
        if (ann := hea.with_suffix(ext)).exists():
            files.append(ann)
    return files


def discover(directory: str | Path) -> list[RecordingFile]:
    """Every loadable recording below ``directory``, sorted by path.

    Segment headers of multi-segment records and ``_layout`` headers are parts of another
    record, not recordings of their own. A waveform record with a numerics record beside it
    (MIMIC ``...n``) is listed once, as numerics: those are the monitor's own values.
    """
    root = Path(directory)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a directory")
    found = _wfdb_recordings(root) + _bidmc_recordings(root)
    return sorted(found, key=lambda r: str(r.path))


def _wfdb_recordings(root: Path) -> list[RecordingFile]:
    info: dict[Path, tuple[str, float, list[str]]] = {}
    for hea in sorted(root.rglob("*.hea")):
        try:
            info[hea] = _header_fields(hea)
        except (OSError, ValueError, IndexError) as exc:
            _log.warning("skipping %s: not a readable WFDB header (%s)", hea, exc)
    parts_of_others = {
        hea.with_name(f"{seg}.hea") for hea, (_, _, segs) in info.items() for seg in segs
    }
    found = []
    for hea, (name, fs, segments) in info.items():
        if hea in parts_of_others or name.endswith("_layout"):
            continue
        if fs >= _NUMERICS_MAX_FS_HZ and hea.with_name(f"{name}n.hea").exists():
            continue
        kind: Kind = "numerics" if fs < _NUMERICS_MAX_FS_HZ else "waveform"
        files = _signal_files(hea)
        for seg in segments:
            seg_hea = hea.with_name(f"{seg}.hea")
            if seg != "~" and seg_hea.exists():
                files += _signal_files(seg_hea)
        patient = patient_id(name, hea.parent.name)
        found.append(RecordingFile(hea.with_suffix(""), patient, kind, tuple(files)))
    return found


def _bidmc_recordings(root: Path) -> list[RecordingFile]:
    found = []
    for csv in sorted(root.rglob("*.csv")):
        stem = csv.stem
        numerics_beside = csv.with_name(stem.replace("_Signals", "_Numerics") + ".csv")
        if stem.endswith("_Numerics"):
            kind: Kind = "bidmc_numerics"
        elif stem.endswith("_Signals") and not numerics_beside.exists():
            kind = "bidmc_signals"
        else:
            continue
        found.append(RecordingFile(csv, patient_id(stem, csv.parent.name), kind, (csv,)))
    return found


def load_vitals(recordings: Iterable[RecordingFile]) -> list[PatientVitals]:
    """1 Hz vitals of each recording, through the simulator's replay loaders."""
    out = []
    for rec in recordings:
        loaded = load_recording(rec.path)
        period = 60.0 if rec.kind == "numerics" else 1.0
        out.append(PatientVitals(rec.patient, loaded.name, loaded.vitals, period))
    return out


@dataclass(frozen=True)
class RealNumerics:
    """The real recordings calibration used: vitals, the files read and where they came from."""

    source: str
    records: tuple[PatientVitals, ...]
    files: tuple[Path, ...]

    @property
    def patients(self) -> tuple[str, ...]:
        """Distinct patient ids."""
        return tuple(sorted({r.patient for r in self.records}))


def load_real_numerics(data_dir: Path | None) -> RealNumerics:
    """Real bedside numerics of ``data_dir`` (every numerics recording found), or the fixture.

    Raises DatasetError (a ValueError) when a directory is given but holds no numerics:
    calibrating silently on the fixture instead would misreport what the bundle was calibrated
    on. Needs no TensorFlow (`training.fit` re-exports it).
    """
    if data_dir is None:
        rec = load_recording(FIXTURE_SOURCE)
        base = fixture_path(FIXTURE_SOURCE.removeprefix("fixture:"))
        files: tuple[Path, ...] = (base.with_suffix(".hea"), base.with_suffix(".dat"))
        # The excerpt is of MIMIC-III subject s00001, numerics one row a minute.
        vitals = PatientVitals("mimic3:s00001", rec.name, rec.vitals, 60.0)
        return RealNumerics(FIXTURE_SOURCE, (vitals,), files)
    found = [r for r in discover(data_dir) if r.kind in NUMERIC_KINDS]
    if not found:
        raise DatasetError(
            f"{data_dir}: no bedside numerics (MIMIC-III ...n records or BIDMC Numerics) found; "
            "give a directory with some, or none to use the shipped fixture"
        )
    records = tuple(load_vitals(found))
    files = tuple(f for r in found for f in r.files)
    return RealNumerics(f"directory {Path(data_dir).name}", records, files)


def split_by_patient(
    patients: Sequence[str], fractions: Sequence[float], *, seed: int
) -> list[list[str]]:
    """Partition distinct patient ids into groups of about the given fractions (sum to 1).

    Deterministic for a seed and independent of the order ids are given in. Every group gets
    at least one patient when there are enough patients; a patient is never in two groups.
    """
    if not fractions or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-9:
        raise DatasetError(f"fractions must be positive and sum to 1, got {list(fractions)}")
    ids = sorted(set(patients))
    if len(ids) < len(fractions):
        raise DatasetError(
            f"{len(ids)} patient(s) cannot be split into {len(fractions)} groups: "
            "splits are by patient, never by sample"
        )
    order = np.random.default_rng(seed).permutation(len(ids))
    counts = np.maximum(1, np.round(np.asarray(fractions) * len(ids)).astype(int))
    while (excess := int(counts.sum()) - len(ids)) != 0:
        # Take from the largest group (never below 1) or give to the largest fraction.
        i = int(np.argmax(counts)) if excess > 0 else int(np.argmax(fractions))
        counts[i] -= 1 if excess > 0 else -1
    groups, start = [], 0
    for count in counts:
        groups.append(sorted(ids[i] for i in order[start : start + count]))
        start += count
    return groups


def fingerprint(files: Iterable[Path]) -> str:
    """sha256 over the names and contents of the files used, in a stable order.

    Stored in a model bundle's manifest, it says exactly which data a model was trained on.
    """
    digest = hashlib.sha256()
    for path in sorted({Path(p) for p in files}, key=lambda p: p.name + str(p)):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()
