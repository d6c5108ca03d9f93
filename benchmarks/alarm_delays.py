"""Alerts per patient-hour before and after the alarm onset delays and hysteresis, real data.

What is measured: the fixed-limit alerts (physiological ``new`` events) that the edge raises on
real recordings of ``--data``, replayed through the real edge path exactly as ``vigil-train
evaluate`` does (`training.evaluate.replay`: an `edge.runtime.EdgeCore` with
`edge.detect.default_detectors`, technical + fixed limits, one frame a second), under two alarm
configurations built with `edge.config.parse_config`:

- ``before`` (the BASELINE, same run): no onset delay and no hysteresis
  (``alarms.onset_s = technical_onset_s = clear_s = 0``, no ``[alarms.kinds.*]``);
- ``after``: the shipped ``[alarms]`` of edge/default.toml (or ``--config FILE``), including
  any per-kind timing (``[alarms.kinds.*]``) it has.

Every other key is the file's (limits, staleness); one bed, no model, no journal.

Two sets of real recordings, measured and reported separately (``--set`` picks one):

- **numerics**: the bedside monitors' own numerics, every MIMIC-III ``...n`` record and BIDMC
  ``_Numerics.csv`` found (`training.datasets.load_real_numerics`, the selection calibration
  uses). MIMIC values change once a minute and are held piecewise-constant at 1 Hz, so every
  crossing and every return lasts at least a minute: an onset or clear delay under 60 s cannot
  remove an alert of these records, only delay it.
- **real 1 Hz (waveform-derived)**: vitals computed every second from the real 125 Hz
  waveforms by the simulator's replay loaders (`firmware_bridge.sim.replay`: heart rate from its
  QRS detector `detect_beats` + `heart_rate_per_second` on the ECG lead, systolic / diastolic /
  mean pressure from an ABP/ART channel with `pressure_per_second`), with whatever artefacts the
  signals and that small detector produce. Records: every BIDMC ``_Signals.csv`` without a
  Numerics file beside it (`load_bidmc_signals`, 8 min each), every WFDB waveform record, and the
  waveform record beside each MIMIC numerics record (its numerics are NOT overlaid: these are
  the waveform's own per-second values). Multi-segment MIMIC records are read in pieces: runs of
  segments whose files are on disk, joined across gaps under `WAVE_JOIN_GAP_S` (the gap stays
  NaN); the missing segment files split a record. Left out: WFDB records with reference beat
  annotations (``.atr``: the replay would take the heart rate from the annotations, not from the
  signal; MIT-BIH are ambulatory Holter recordings) and PhysioNet/CinC 2015 alarm records (header
  verdict "True/False alarm": chosen because an alarm fired, a biased sample of alert rates).
  No loader derives SpO2, respiratory rate or temperature from waveforms, so those vitals are
  never measured in this set, and events on them are dropped (below).

Figures, per set and configuration:

1. **Alerts per patient-hour on the untouched real records**: every alert, per hour of
   measured time (seconds with at least one valid vital), as `training.evaluate` counts real
   numerics. The records carry no labels and may hold real deterioration, so this is an UPPER
   BOUND of nuisance alerts.
2. **Sensitivity to injected events.** On ``--copies`` (numerics) or ``--wave-copies`` (1 Hz)
   copies of the same records, clinical events (`training.synth.random_events`: the shapes and
   magnitudes of the synthetic evaluation cohort, Poisson ``--events-per-hour``, at least 600 s
   apart, never overlapping; seed ``--seed``, each copy its own draw; records shorter than
   `MIN_INJECT_S` get none) are added to the vitals with
   `firmware_bridge.sim.events.apply_clinical_events`. An event whose main vital
   (`training.labels.KIND_VITALS`, first entry) is not measured for at least half of its span
   is dropped before injection (so fever is dropped where no record has a temperature probe).
   An event is DETECTED when a fixed-limit alert of a MATCHING kind (a limit on one of the
   event's vitals in the event's direction, e.g. hypotension: ``sbp_low`` or ``map_low``) has
   its ``new`` within ``[onset, end + 60 s]`` (`training.evaluate.POST_EVENT_S`); delay =
   that ``new`` minus the onset. A matching alert already active at the onset does not count
   (as in `training.evaluate`); such events are reported apart ("covered by an earlier
   alert"). Under ``before`` an alert is raised the first second a value crosses a limit, so
   its sensitivity is the share of events that cross a limit at all on these patients.
3. **Alerts outside the injected events** on the injected copies: alerts whose active span
   does not overlap any event's ``[onset - 60 s, end + 60 s]`` (`training.evaluate` rule), per
   measured hour outside those windows, pooled over the copies (the copies share the records'
   real artefacts). Again an upper bound.

"At equal sensitivity": both sensitivities are printed; a sweep of uniform onset and clear
delays (``--no-sweep`` to skip) shows where delays start to cost events; printed are the
longest onset delay of the grid that still detects every event the baseline detects and the
setting of the grid with the fewest alerts outside events among those that do.

Run: .venv/bin/python benchmarks/alarm_delays.py [--data DIR] [--set all|numerics|waveform]
     [--seed 7] [--copies 3] [--wave-copies 10] [--events-per-hour 1.5] [--config FILE]
     [--no-sweep] [--json PATH]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.bedstate import VITAL_FIELDS
from edge.config import (
    ConfigError,
    EdgeConfig,
    LimitsConfig,
    default_config_text,
    parse_config,
)
from firmware_bridge.sim.events import EventKind, apply_clinical_events
from firmware_bridge.sim.replay import (
    _assemble,
    _read_wfdb_signals,
    _wfdb,
    load_bidmc_signals,
)
from firmware_bridge.sim.vitals import Vital
from training.datasets import DatasetError, PatientVitals, discover, load_real_numerics
from training.evaluate import (
    BED,
    POST_EVENT_S,
    LabelledPatient,
    PatientReplay,
    _first_new,
    _is_false,
    replay,
)
from training.labels import KIND_VITALS
from training.synth import random_events

DEFAULT_DATA: Final = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS: Final = ("numerics", "waveform")
SET_TITLES: Final[Mapping[str, str]] = {
    "numerics": "numerics (MIMIC-III minute numerics held at 1 Hz)",
    "waveform": "real 1 Hz (waveform-derived)",
}
WAVE_JOIN_GAP_S: Final = 60.0
"""Segments of a multi-segment record closer than this are read as one piece (gap left NaN)."""
MIN_INJECT_S: Final = 1800
"""Records shorter than this get no events (replayed for alerts only)."""
MAX_COPIES: Final = 20
DEFAULT_WAVE_COPIES: Final = 10
"""The 1 Hz set is short (hours) and only its HR events survive: more copies than numerics."""
MIN_MEASURED: Final = 0.5
"""An event is kept when its main vital is measured at least this share of its span."""
SWEEP_ONSET_S: Final = (0.0, 2.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 45.0, 59.0, 60.0, 90.0)
SWEEP_CLEAR_S: Final = (0.0, 3.0, 10.0, 30.0, 60.0, 120.0)
_HOUR_S: Final = 3600.0
_P90: Final = 90.0

DIRECTION: Final[Mapping[EventKind, str]] = {
    EventKind.DESATURATION: "low", EventKind.TACHYCARDIA: "high",
    EventKind.BRADYCARDIA: "low", EventKind.TACHYPNOEA: "high", EventKind.BRADYPNOEA: "low",
    EventKind.APNOEA: "low", EventKind.HYPOTENSION: "low", EventKind.FEVER: "high",
}
"""Which way each clinical event moves its vitals (firmware_bridge/sim/events.py)."""


# ------------------------------------------------------------------------------ inputs


def _check_dir(data_dir: Path) -> None:
    if not data_dir.is_dir():
        raise SystemExit(f"data folder {data_dir} not found: give --data DIR with the real "
                         "recordings (see ../shared/data/README.md)")


def load_records(data_dir: Path) -> list[PatientVitals]:
    """1 Hz vitals of every bedside numerics recording below ``data_dir``; SystemExit if none."""
    _check_dir(data_dir)
    try:
        return list(load_real_numerics(data_dir).records)
    except DatasetError as exc:
        raise SystemExit(str(exc)) from exc


def skip_reason(base: Path) -> str | None:
    """Why the WFDB waveform record ``base`` is left out of the 1 Hz set, or None (module doc)."""
    if base.with_name(base.name + ".atr").exists():
        return "reference beat annotations (.atr): its heart rate would not be derived"
    comments = [c.strip().lower() for c in _wfdb().rdheader(str(base)).comments or ()]
    if "true alarm" in comments or "false alarm" in comments:
        return "PhysioNet/CinC 2015 alarm record: chosen because an alarm fired"
    return None


def present_spans(base: Path) -> list[tuple[int, int]]:
    """Sample ranges [a, b) of ``base`` whose signal files are on disk; segments less than
    `WAVE_JOIN_GAP_S` apart are joined (the gap is read as NaN)."""
    wfdb = _wfdb()
    hdr = wfdb.rdheader(str(base))
    if not getattr(hdr, "seg_name", None):
        on_disk = all(base.with_name(f).exists() for f in hdr.file_name)
        return [(0, int(hdr.sig_len))] if on_disk and int(hdr.sig_len) > 0 else []
    join = WAVE_JOIN_GAP_S * float(hdr.fs)
    spans: list[tuple[int, int]] = []
    start = 0
    for seg, length in zip(hdr.seg_name, (int(x) for x in hdr.seg_len), strict=True):
        a, start = start, start + length
        if seg == "~" or length == 0 or not base.with_name(f"{seg}.hea").exists():
            continue
        seg_hdr = wfdb.rdheader(str(base.parent / seg))
        if not all(base.with_name(f).exists() for f in seg_hdr.file_name):
            continue  # a segment file missing from the data folder
        if spans and a - spans[-1][1] < join:
            spans[-1] = (spans[-1][0], start)
        else:
            spans.append((a, start))
    return spans


def waveform_pieces(base: Path, patient: str) -> list[PatientVitals]:
    """Per-second vitals derived from the waveforms of WFDB record ``base``, one per span of
    `present_spans` with at least one valid vital; numerics beside it are not used."""
    hdr = _wfdb().rdheader(str(base))
    fs = round(float(hdr.fs))
    spans = present_spans(base)
    out = []
    for a, b in spans:
        names, data = _read_wfdb_signals(base, hdr, a, b)
        rec = _assemble(base.name, fs, names, data, beats_s=None, numerics=None, notes=[])
        name = base.name if len(spans) == 1 else f"{base.name}+{a // fs}s"
        if np.isfinite(rec.vitals).any():
            out.append(PatientVitals(patient, name, rec.vitals, 1.0))
    return out


def load_waveform_records(data_dir: Path) -> tuple[list[PatientVitals], list[str]]:
    """The real 1 Hz (waveform-derived) set below ``data_dir`` (module doc), and the records
    left out, one line per reason."""
    _check_dir(data_dir)
    out: list[PatientVitals] = []
    skipped: dict[str, list[str]] = {}
    for r in discover(data_dir):
        if r.kind == "bidmc_signals":
            rec = load_bidmc_signals(r.path)
            out.append(PatientVitals(r.patient, rec.name, rec.vitals, 1.0))
            continue
        if r.kind == "waveform":
            base = r.path
        elif r.kind == "numerics" and r.path.name.endswith("n"):
            base = r.path.with_name(r.path.name[:-1])  # the MIMIC waveform record beside it
            if not base.with_name(base.name + ".hea").exists():
                continue
        else:
            continue
        if (why := skip_reason(base)) is not None:
            skipped.setdefault(why, []).append(base.name)
        elif pieces := waveform_pieces(base, r.patient):
            out += pieces
        else:
            skipped.setdefault("no waveform segment on disk", []).append(base.name)
    return out, [f"{', '.join(sorted(names))} ({why})" for why, names in skipped.items()]


_SHOWN: Final = (("HR", (Vital.HR,)), ("SpO2", (Vital.SPO2,)), ("RR", (Vital.RR,)),
                 ("BP", (Vital.SBP, Vital.DBP, Vital.MAP)), ("temp", (Vital.TEMP,)))


def describe(records: Sequence[PatientVitals], *alerts: Mapping[str, int]) -> str:
    """Per record: hours, the share of seconds each vital is measured ("absent": never) and,
    per mapping of ``alerts`` (record name -> count), its alerts on the untouched record."""
    heads = [n for n, _ in _SHOWN] + [f"alerts ({k})" for k in ("before", "after")[:len(alerts)]]
    lines = ["| record | patient | hours | " + " | ".join(heads) + " |",
             "|---|---|---|" + "---|" * len(heads)]
    for r in records:
        shares = [float(np.isfinite(r.vitals[:, list(cols)]).any(axis=1).mean())
                  for _, cols in _SHOWN]
        cells = [("absent" if x == 0 else "<1%" if x < 0.005 else f"{x:.0%}") for x in shares]
        cells += [str(a.get(r.name, 0)) for a in alerts]
        lines.append(f"| {r.name} | {r.patient} | {r.vitals.shape[0] / _HOUR_S:.2f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def build(document: Mapping[str, Any], **timing: float) -> EdgeConfig:
    """``document`` as one bed, no model, no journal; ``timing`` given: its ``[alarms]`` with
    these keys set and no per-kind timing (``[alarms.kinds]``), else its ``[alarms]`` as is."""
    doc = copy.deepcopy(dict(document))
    doc.update(beds=[{"id": BED, "serial": "/dev/null"}], model={"bundle": ""},
               journal={"state_dir": ""})
    if timing:
        alarms = {k: v for k, v in doc.get("alarms", {}).items() if k != "kinds"}
        doc["alarms"] = alarms | timing
    return parse_config(doc)


def matching_kinds(kind: EventKind, limits: LimitsConfig) -> frozenset[str]:
    """Fixed-limit alert kinds that detect ``kind``: a limit on one of its vitals, its way."""
    vitals = {VITAL_FIELDS[v] for v in KIND_VITALS[kind]}
    return frozenset(r.spec.kind for r in limits.rules
                     if r.spec.vital in vitals and r.spec.direction == DIRECTION[kind])


def inject(
    records: Sequence[PatientVitals], seed: int, per_hour: float, copies: int = 1
) -> tuple[list[LabelledPatient], Counter[str]]:
    """``copies`` independently injected copies of every record (named ``NAME#COPY``); also
    the events dropped per kind (main vital not measured). Records shorter than
    `MIN_INJECT_S` are copied without events."""
    out: list[LabelledPatient] = []
    dropped: Counter[str] = Counter()
    for c in range(copies):
        for i, rec in enumerate(records):
            n = int(rec.vitals.shape[0])
            name = f"{rec.name}#{c}"
            if n < MIN_INJECT_S:
                out.append(LabelledPatient(name, rec.vitals, ()))
                continue
            drawn = random_events(np.random.default_rng([seed, c, i]), float(n), per_hour)
            measured = np.isfinite(rec.vitals)
            kept = []
            for e in drawn:
                lo, hi = int(e.onset_s), min(int(np.ceil(e.end_s)), n)
                if measured[lo:hi, KIND_VITALS[e.kind][0]].mean() >= MIN_MEASURED:
                    kept.append(e)
                else:
                    dropped[e.kind.value] += 1
            t = np.arange(n, dtype=np.float64)
            out.append(LabelledPatient(name, apply_clinical_events(rec.vitals, t, kept),
                                       tuple(kept)))
    return out, dropped


def _measured(vitals: NDArray[np.float64]) -> NDArray[np.bool_]:
    return np.asarray(np.isfinite(vitals).any(axis=1), dtype=np.bool_)


def _outside_events(p: LabelledPatient) -> NDArray[np.bool_]:
    """Measured seconds outside every event's ``[onset - 60, end + 60]``."""
    n = p.vitals.shape[0]
    inside = np.zeros(n + 1, dtype=np.int64)
    for e in p.events:
        lo = int(np.clip(np.floor(e.onset_s - POST_EVENT_S), 0, n))
        hi = int(np.clip(np.ceil(e.end_s + POST_EVENT_S), 0, n))
        inside[lo] += 1
        inside[hi] -= 1
    free: NDArray[np.bool_] = _measured(p.vitals) & (np.cumsum(inside)[:n] == 0)
    return free


# ------------------------------------------------------------------------------ counting


@dataclass(frozen=True)
class KindRow:
    """One event kind under one configuration."""

    kind: str
    events: int
    detected: int
    covered_by_earlier_alert: int
    median_delay_s: float | None


@dataclass(frozen=True)
class Figures:
    """Everything measured for one alarm configuration (module doc, figures 1-3)."""

    name: str
    timing: str
    alerts_real: int
    measured_hours: float
    alerts_per_hour_real: float
    alerts_real_by_kind: dict[str, int]
    alerts_real_by_record: dict[str, int]
    events: int
    detected: int
    covered_by_earlier_alert: int
    sensitivity: float | None
    median_delay_s: float | None
    p90_delay_s: float | None
    by_event_kind: tuple[KindRow, ...]
    detected_ids: tuple[str, ...]
    alerts_outside: int
    alerts_outside_by_kind: dict[str, int]
    outside_hours: float
    alerts_per_hour_outside: float


def _median(x: Sequence[float], q: float = 50.0) -> float | None:
    return round(float(np.percentile(x, q)), 1) if x else None


def timing_text(config: EdgeConfig) -> str:
    """The alarm timing of ``config`` in one line."""
    a = config.alarms
    kinds = "".join(f"; {k} {o:g}/{c:g}" for k, (o, c) in sorted(a.kinds.items()))
    return f"onset {a.onset_s:g} s, clear {a.clear_s:g} s{kinds}"


def measure(
    name: str, config: EdgeConfig, clean: Sequence[PatientVitals] | None,
    injected: Sequence[LabelledPatient],
) -> Figures:
    """Replay ``clean`` (None: skip figure 1) and ``injected`` under ``config``; count."""
    real: list[PatientReplay] = [replay(config, None, r.name, r.vitals) for r in clean or ()]
    measured_s = sum(int(_measured(r.vitals).sum()) for r in clean or ())
    by_kind = Counter(a.kind for rep in real for a in rep.alerts)
    delays: list[float] = []
    rows: dict[str, list[float | str | None]] = {}
    detected_ids: list[str] = []
    covered = outside_s = 0
    outside: Counter[str] = Counter()
    for p in injected:
        rep = replay(config, None, p.patient, p.vitals)
        outside.update(a.kind for a in rep.alerts if _is_false(a, p.events))
        outside_s += int(_outside_events(p).sum())
        for e in p.events:
            kinds = matching_kinds(e.kind, config.limits)
            t = _first_new(rep.alerts, kinds, e.onset_s, e.end_s + POST_EVENT_S)
            outcome: float | str | None = None if t is None else t - e.onset_s
            if t is None and any(a.kind in kinds and a.start_s < e.onset_s < a.end_s
                                 for a in rep.alerts):
                outcome, covered = "covered", covered + 1
            if isinstance(outcome, float):
                delays.append(outcome)
                detected_ids.append(f"{p.patient}@{e.onset_s:g}")
            rows.setdefault(e.kind.value, []).append(outcome)
    kind_rows = tuple(
        KindRow(kind, len(o), sum(isinstance(x, float) for x in o), o.count("covered"),
                _median([x for x in o if isinstance(x, float)]))
        for kind, o in sorted(rows.items())
    )
    events = sum(len(p.events) for p in injected)
    hours, out_h = measured_s / _HOUR_S, outside_s / _HOUR_S
    return Figures(
        name=name, timing=timing_text(config),
        alerts_real=sum(by_kind.values()), measured_hours=round(hours, 2),
        alerts_per_hour_real=round(sum(by_kind.values()) / hours, 3) if hours else 0.0,
        alerts_real_by_kind=dict(sorted(by_kind.items())),
        alerts_real_by_record={rep.patient: len(rep.alerts) for rep in real},
        events=events, detected=len(delays), covered_by_earlier_alert=covered,
        sensitivity=round(len(delays) / events, 3) if events else None,
        median_delay_s=_median(delays), p90_delay_s=_median(delays, _P90),
        by_event_kind=kind_rows, detected_ids=tuple(detected_ids),
        alerts_outside=outside.total(), alerts_outside_by_kind=dict(outside.most_common()),
        outside_hours=round(out_h, 2),
        alerts_per_hour_outside=round(outside.total() / out_h, 3) if out_h else 0.0,
    )


# ------------------------------------------------------------------------------ report


def _f(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _kinds(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in counts.items())


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def markdown(before: Figures, after: Figures, sweep: Sequence[Figures]) -> str:
    """The tables: headline, per alert kind, per event kind, sweep."""
    lines = [
        "| configuration | alerts / patient-h, real (upper bound) | alerts / patient-h "
        "outside injected events | sensitivity (detected / events) | covered by an earlier "
        "alert | median / p90 delay (s) |",
        "|---|---|---|---|---|---|",
    ]
    for f in (before, after):
        lines.append(
            f"| {f.name}: {f.timing} | {f.alerts_per_hour_real:.2f} ({f.alerts_real} in "
            f"{f.measured_hours:.1f} h) | {f.alerts_per_hour_outside:.2f} ({f.alerts_outside} "
            f"in {f.outside_hours:.1f} h) | {_f(f.sensitivity)} ({f.detected}/{f.events}) | "
            f"{f.covered_by_earlier_alert} | {_f(f.median_delay_s, 0)} / "
            f"{_f(f.p90_delay_s, 0)} |"
        )
    real = _ratio(after.alerts_per_hour_real, before.alerts_per_hour_real)
    outside = _ratio(after.alerts_per_hour_outside, before.alerts_per_hour_outside)
    lines.append(f"| ratio after / before | {real} | {outside} | "
                 f"{_ratio(after.detected, before.detected)} | | |")
    kinds = sorted(set(before.alerts_real_by_kind) | set(after.alerts_real_by_kind),
                   key=lambda k: (-before.alerts_real_by_kind.get(k, 0), k))
    lines += ["", "Alerts on the real records per alert kind (all alerts, upper bound):", "",
              "| alert kind | before | after | after / before |", "|---|---|---|---|"]
    for k in kinds:
        b, a = before.alerts_real_by_kind.get(k, 0), after.alerts_real_by_kind.get(k, 0)
        lines.append(f"| {k} | {b} | {a} | {_ratio(a, b)} |")
    lines += ["", "Injected events per kind (detected / events, covered by an earlier alert, "
              "median delay s):", "",
              "| event kind | before | after |", "|---|---|---|"]
    after_rows = {r.kind: r for r in after.by_event_kind}
    for r in before.by_event_kind:
        ra = after_rows[r.kind]
        lines.append(f"| {r.kind} | {r.detected}/{r.events}, {r.covered_by_earlier_alert}, "
                     f"{_f(r.median_delay_s, 0)} | {ra.detected}/{ra.events}, "
                     f"{ra.covered_by_earlier_alert}, {_f(ra.median_delay_s, 0)} |")
    lost = sorted(set(before.detected_ids) - set(after.detected_ids))
    gained = sorted(set(after.detected_ids) - set(before.detected_ids))
    lines += ["", f"Events detected before but not after: {len(lost)}"
              f"{' (' + ', '.join(lost) + ')' if lost else ''}; after but not before: "
              f"{len(gained)}{' (' + ', '.join(gained) + ')' if gained else ''}"]
    if sweep:
        lines += ["", "Sweep, one onset / clear delay for every kind, injected copies:", "",
                  "| timing | alerts / patient-h outside events | sensitivity | covered | "
                  "median delay (s) | baseline's events all detected | alerts outside events "
                  "by kind |", "|---|---|---|---|---|---|---|"]
        base = set(before.detected_ids)
        for f in sweep:
            keeps = base <= set(f.detected_ids)
            lines.append(f"| {f.timing} | {f.alerts_per_hour_outside:.2f} | "
                         f"{_f(f.sensitivity)} ({f.detected}/{f.events}) | "
                         f"{f.covered_by_earlier_alert} | {_f(f.median_delay_s, 0)} | "
                         f"{'yes' if keeps else 'no'} | {_kinds(f.alerts_outside_by_kind)} |")
    return "\n".join(lines)


def longest_equal_onset(before: Figures, sweep: Sequence[Figures]) -> str | None:
    """Timing of the longest onset delay of the sweep that detects every baseline event."""
    base = set(before.detected_ids)
    ok = [f for f in sweep if base <= set(f.detected_ids)]
    return ok[-1].timing if ok else None


def fewest_alerts_at_equal_sensitivity(before: Figures, sweep: Sequence[Figures]) -> str | None:
    """Timing of the sweep with the fewest alerts outside events among those that detect
    every baseline event (ties: the shorter median delay), with its figures."""
    base = set(before.detected_ids)
    ok = [f for f in sweep if base <= set(f.detected_ids)]
    if not ok:
        return None
    best = min(ok, key=lambda f: (f.alerts_per_hour_outside, f.median_delay_s or 0.0))
    return (f"{best.timing}: {best.alerts_per_hour_outside:.2f} alerts / patient-h outside "
            f"events, median delay {_f(best.median_delay_s, 0)} s")


@dataclass(frozen=True)
class SetResult:
    """One set of real records measured under ``before`` and ``after`` (and the sweep)."""

    name: str
    records: tuple[PatientVitals, ...]
    left_out: tuple[str, ...]
    copies: int
    dropped: dict[str, int]
    before: Figures
    after: Figures
    sweep: tuple[Figures, ...]

    def to_json(self) -> dict[str, Any]:
        """The figures and which records, for ``--json``."""
        return {
            "title": SET_TITLES[self.name],
            "records": [{"name": r.name, "patient": r.patient,
                         "hours": round(r.vitals.shape[0] / _HOUR_S, 3)} for r in self.records],
            "left_out": list(self.left_out), "copies": self.copies,
            "events_dropped": self.dropped, "before": asdict(self.before),
            "after": asdict(self.after), "sweep": [asdict(f) for f in self.sweep],
        }


def run_set(
    name: str, records: Sequence[PatientVitals], left_out: Sequence[str],
    document: Mapping[str, Any], *, seed: int, per_hour: float, copies: int, sweep: bool,
) -> SetResult:
    """``before``, ``after`` and (``sweep``) the onset / clear grid on one set of records."""
    before_cfg = build(document, onset_s=0.0, technical_onset_s=0.0, clear_s=0.0)
    after_cfg = build(document)
    injected, dropped = inject(records, seed, per_hour, copies)
    before = measure("before", before_cfg, records, injected)
    after = measure("after", after_cfg, records, injected)
    grid: list[Figures] = []
    if sweep:
        onset, clear = after_cfg.alarms.onset_s, after_cfg.alarms.clear_s
        settings = [(o, clear) for o in SWEEP_ONSET_S]
        settings += [(onset, c) for c in SWEEP_CLEAR_S if (onset, c) not in settings]
        grid = [measure("sweep", build(document, onset_s=o, clear_s=c), None, injected)
                for o, c in settings]
    return SetResult(name, tuple(records), tuple(left_out), copies, dict(sorted(dropped.items())),
                     before, after, tuple(grid))


def report(result: SetResult, seed: int, per_hour: float) -> str:
    """Everything printed for one set."""
    r, before = result, result.before
    hours = sum(x.vitals.shape[0] for x in r.records) / _HOUR_S
    gone = ", ".join(f"{n} {k}" for k, n in r.dropped.items()) or "none"
    lines = [
        f"## {SET_TITLES[r.name]}", "",
        f"real records: {len(r.records)}, {hours:.2f} h, {before.measured_hours:.2f} h with a "
        "valid vital; replayed at 1 Hz. Share of seconds each vital is measured:", "",
        describe(r.records, before.alerts_real_by_record, r.after.alerts_real_by_record), "",
    ]
    if r.left_out:
        lines += ["left out: " + "; ".join(r.left_out), ""]
    lines += [
        f"injected: {before.events} clinical events into {r.copies} copies of the records "
        f"(seed {seed}, {per_hour:g}/h drawn on records of at least {MIN_INJECT_S} s; dropped, "
        f"main vital not measured: {gone})",
        "real data may hold real deterioration: every real alert counts, so alert rates are "
        "upper bounds of nuisance alerts", "",
        markdown(before, result.after, r.sweep),
    ]
    if r.sweep:
        onset_sweep = r.sweep[:len(SWEEP_ONSET_S)]
        lines += ["", "longest onset of the sweep detecting every baseline event: "
                  f"{longest_equal_onset(before, onset_sweep) or 'none'}",
                  "fewest alerts outside events among the sweep settings detecting every "
                  f"baseline event: {fewest_alerts_at_equal_sensitivity(before, r.sweep)}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables (and write JSON with ``--json``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA,
                    help=f"real recordings folder (default {DEFAULT_DATA})")
    ap.add_argument("--set", choices=("all", *SETS), default="all",
                    help="numerics, the real 1 Hz waveform-derived set, or both (default)")
    ap.add_argument("--seed", type=int, default=7, help="seed of the injected events")
    ap.add_argument("--events-per-hour", type=float, default=1.5,
                    help="mean injected events per record-hour (Poisson, 600 s apart)")
    ap.add_argument("--copies", type=int, default=3,
                    help="independently injected copies of the numerics records (more events)")
    ap.add_argument("--wave-copies", type=int, default=DEFAULT_WAVE_COPIES,
                    help="independently injected copies of the 1 Hz waveform-derived records")
    ap.add_argument("--config", type=Path, default=None,
                    help="TOML whose [alarms] and [limits] are 'after' (default edge/default.toml)")
    ap.add_argument("--no-sweep", action="store_true", help="skip the onset / clear sweep")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    if not 0.0 < args.events_per_hour <= 10.0:
        ap.error("--events-per-hour must be in (0, 10]")
    for flag, value in (("--copies", args.copies), ("--wave-copies", args.wave_copies)):
        if not 1 <= value <= MAX_COPIES:
            ap.error(f"{flag} must be in 1..{MAX_COPIES}")
    t0 = time.perf_counter()
    try:
        text = (args.config.read_text(encoding="utf-8") if args.config is not None
                else default_config_text())
        document = tomllib.loads(text)
        build(document)
    except (OSError, tomllib.TOMLDecodeError, ConfigError) as exc:
        raise SystemExit(f"configuration {args.config or 'edge/default.toml'}: {exc}") from exc
    wanted = SETS if args.set == "all" else (args.set,)
    results: list[SetResult] = []
    for name in wanted:
        left_out: list[str] = []
        if name == "numerics":
            records, copies = load_records(args.data), args.copies
        else:
            records, left_out = load_waveform_records(args.data)
            copies = args.wave_copies
            if not records:
                print(f"## {SET_TITLES[name]}\n\nno waveform record found below {args.data}"
                      + (" (left out: " + "; ".join(left_out) + ")" if left_out else "") + "\n")
                continue
        result = run_set(name, records, left_out, document, seed=args.seed,
                         per_hour=args.events_per_hour, copies=copies, sweep=not args.no_sweep)
        results.append(result)
        print(report(result, args.seed, args.events_per_hour) + "\n", flush=True)
    elapsed = time.perf_counter() - t0
    print(f"wall time {elapsed:.1f} s")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "data": str(args.data), "seed": args.seed, "events_per_hour": args.events_per_hour,
            "sets": {r.name: r.to_json() for r in results}, "wall_time_s": round(elapsed, 1),
        }, indent=2) + "\n", encoding="utf-8")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
