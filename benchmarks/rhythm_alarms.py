"""Rhythm alarms of the ECG head against the MIT-BIH reference annotations, record by record.

Each record (all of ../shared/data/mitdb, paced ones included) is replayed whole by the
simulator's board (int16 WAVEFORM frames, 200 ms chunks) into `edge.runtime.EdgeCore` with
the packaged configuration's ECG head and the shipped bundle (beat model included); every new
rhythm alert is kept with its time. The reference is the expert annotation:

- ``irregular_rhythm``: atrial fibrillation or flutter episodes (``(AFIB``, ``(AFL``);
- ``ventricular_run``: runs of 3 or more ventricular beats (V, E) or ``(VT`` episodes;
- ``ventricular_tachycardia``: ``(VT`` episodes, or runs of 5 or more V beats above 100 bpm;
- ``frequent_pvcs``: 60 s windows holding 10 or more V beats;
- ``extreme_tachycardia`` / ``extreme_bradycardia``: the reference heart rate (60 / median of
  8 reference RR intervals) above 150 / below 40 bpm;
- ``asystole``: a reference RR gap of 4 s or more (none in these records).

An alert is true when a matching reference stretch overlaps the 20 s before it to 5 s after
it (detection waits for the beat to be classed, then the alarm manager's onset); a reference
episode is caught when an alert of its kind comes from 5 s before it to 20 s after it ends.

Read with care: the shipped beat model was trained on the 22 non-paced records here, so the
class-based alarms (runs, VT, frequent PVCs, irregular rhythm) on them are optimistic; the
4 paced records (102, 104, 107, 217) were not trained on. Rates depend on the rules, not
only on the classifier: the same run without a beat model is the baseline (class-based
alarms cannot fire there; the others are the same rules), and so is the run with the beat
model on a board without a pace-pulse detector (`BoardConfig.pace_detector`: no PACE frames,
no HELLO bit; only the paced records, whose replay carries pulses, differ).

Run: .venv/bin/python benchmarks/rhythm_alarms.py [--data DIR] [--records 201 203 ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.config import parse_config
from edge.events import AlertEvent, EventType
from edge.learned import load_learned
from edge.rhythm import RHYTHM_KINDS
from edge.runtime import EdgeCore
from firmware_bridge.codec import Decoder
from firmware_bridge.frames import PaceFrame
from firmware_bridge.sim.board import Board, BoardConfig
from firmware_bridge.sim.model import PatientModel
from firmware_bridge.sim.replay import RecordingSource, load_recording
from models.beats import BEAT_SYMBOLS

BEFORE_S, AFTER_S = 20.0, 5.0
KINDS = ("asystole", "extreme_bradycardia", "extreme_tachycardia", "ventricular_run",
         "ventricular_tachycardia", "frequent_pvcs", "irregular_rhythm")


def _core(with_model: bool) -> EdgeCore:
    raw = {"beds": [{"id": "bed1", "serial": "/dev/null"}], "ecg": {"enabled": True},
           "model": {"bundle": "default" if with_model else ""}}
    config = parse_config(raw)
    setup = load_learned(config)
    return EdgeCore(config, now=0.0, detectors=setup.detectors, gate=setup.gate)


def replay(path: Path, seconds: float, with_model: bool, *, pace: bool = True,
           pace_frames: list[int] | None = None) -> list[tuple[str, float]]:
    """(kind, edge s) of every new rhythm alert over the record. ``pace`` False: a board
    without a pace-pulse detector; ``pace_frames`` gets the number of PACE frames the board
    sent appended."""
    rec = load_recording(path, max_duration_s=seconds)
    core, dec = _core(with_model), Decoder()
    board = Board(PatientModel(RecordingSource(rec, loop=False), seed=1),
                  BoardConfig(pace_detector=pace))
    out: list[tuple[str, float]] = []
    paces = 0
    for t_ms in range(0, int(seconds * 1000) + 1, 200):
        for frame in dec.feed(board.advance(t_ms)):
            paces += isinstance(frame, PaceFrame)
            core.on_frame("bed1", frame, t_ms / 1000)
        if t_ms % 1000 == 0:
            events: list[AlertEvent] = core.evaluate(t_ms / 1000)
            out += [(e.kind, t_ms / 1000) for e in events
                    if e.event is EventType.NEW and e.kind in RHYTHM_KINDS]
    if pace_frames is not None:
        pace_frames.append(paces)
    return out


def _runs(is_v: np.ndarray, times: np.ndarray, min_len: int) -> list[tuple[float, float, int]]:
    out, start = [], None
    for i, v in enumerate([*is_v.tolist(), False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            if i - start >= min_len:
                out.append((float(times[start]), float(times[i - 1]), i - start))
            start = None
    return out


def reference(path: Path) -> tuple[dict[str, list[tuple[float, float]]], float]:
    """Reference stretches (s) per alert kind, and the record's length (s)."""
    import wfdb  # noqa: PLC0415

    ann = wfdb.rdann(str(path), "atr")
    header = wfdb.rdheader(str(path))
    fs, length = float(ann.fs or header.fs), header.sig_len / float(header.fs)
    sym = np.asarray(ann.symbol)
    t = np.asarray(ann.sample) / fs
    aux = [str(a).rstrip("\x00") for a in ann.aux_note]
    ref: dict[str, list[tuple[float, float]]] = defaultdict(list)
    rhythm = [(t[i], aux[i]) for i in range(len(sym)) if sym[i] == "+"]
    for k, (start, name) in enumerate(rhythm):
        end = rhythm[k + 1][0] if k + 1 < len(rhythm) else length
        if name in ("(AFIB", "(AFL"):
            ref["irregular_rhythm"].append((start, end))
        if name == "(VT":
            ref["ventricular_tachycardia"].append((start, end))
            ref["ventricular_run"].append((start, end))
    beat = np.isin(sym, sorted(BEAT_SYMBOLS))
    bt, bs = t[beat], sym[beat]
    is_v = np.isin(bs, ["V", "E"])
    for a, b, n in _runs(is_v, bt, 3):
        ref["ventricular_run"].append((a, b))
        if n >= 5 and 60.0 * (n - 1) / max(b - a, 1e-9) > 100:
            ref["ventricular_tachycardia"].append((a, b))
    vt = bt[is_v]
    for i in range(vt.size):
        if np.sum((vt >= vt[i]) & (vt < vt[i] + 60.0)) >= 10:
            ref["frequent_pvcs"].append((vt[i], vt[i] + 60.0))
    rr = np.diff(bt)
    for i in range(8, rr.size):
        hr = 60.0 / float(np.median(rr[i - 8:i]))
        if hr > 150:
            ref["extreme_tachycardia"].append((bt[i - 8], bt[i]))
        if hr < 40:
            ref["extreme_bradycardia"].append((bt[i - 8], bt[i]))
    for i in np.flatnonzero(rr >= 4.0):
        ref["asystole"].append((bt[i], bt[i + 1]))
    return ref, length


def _overlaps(stretches: list[tuple[float, float]], a: float, b: float) -> bool:
    return any(s < b and e > a for s, e in stretches)


def _merge(stretches: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for s, e in sorted(stretches):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--records", nargs="*")
    args = ap.parse_args()
    mitdb = Path(args.data) / "mitdb"
    names = args.records or sorted(p.stem for p in mitdb.glob("*.atr"))
    if not names:
        print(f"no MIT-BIH records in {mitdb}", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    modes = ("beat model", "beat model, no pace pulses", "no beat model")
    totals = {m: {k: [0, 0, 0, 0] for k in KINDS} for m in modes}
    hours = 0.0
    technical = dict.fromkeys(totals, 0)
    print("| record | minutes | alerts with beat model (true/all per kind) | same, no pace "
          "pulses | no beat model |")
    print("|---|---|---|---|---|")
    for name in names:
        ref, length = reference(mitdb / name)
        merged = {k: _merge(v) for k, v in ref.items()}
        hours += length / 3600
        cells = []
        paces: list[int] = []
        first: list[tuple[str, float]] = []
        for mode in modes:
            if mode == "beat model, no pace pulses" and not paces[0]:
                alerts = first  # the board sent no pulse: the same run
            else:
                alerts = replay(mitdb / name, length, mode != "no beat model",
                                pace=mode == "beat model", pace_frames=paces)
            if mode == "beat model":
                first = alerts
            per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            for kind, at in alerts:
                if kind not in KINDS:  # technical: ecg_unreadable, ecg_no_beats
                    technical[mode] += 1
                    continue
                ok = _overlaps(merged.get(kind, []), at - BEFORE_S, at + AFTER_S)
                per[kind][0] += ok
                per[kind][1] += 1
                totals[mode][kind][0] += ok
                totals[mode][kind][1] += 1
            for kind in KINDS:
                episodes = merged.get(kind, [])
                caught = sum(any(s - 5.0 <= at <= e + BEFORE_S for k, at in alerts if k == kind)
                             for s, e in episodes)
                totals[mode][kind][2] += caught
                totals[mode][kind][3] += len(episodes)
            cells.append(", ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(per.items())) or "-")
        print(f"| {name} | {length / 60:.1f} | {' | '.join(cells)} |", flush=True)
    print(f"\n{len(names)} records, {hours:.1f} h, {time.perf_counter() - t0:.0f} s")
    for mode, table in totals.items():
        print(f"\n{mode}: technical ECG alerts (unreadable, no beats with a pulse) "
              f"{technical[mode]} ({technical[mode] / hours:.2f} per hour)")
        print("| alert | raised | true | false per hour | reference episodes caught |")
        print("|---|---|---|---|---|")
        for kind, (true, raised, caught, episodes) in table.items():
            print(f"| {kind} | {raised} | {true} | {(raised - true) / hours:.2f} | "
                  f"{caught} of {episodes} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
