"""QRS detection on real MIT-BIH records: ours (`models.qrs`) against open detectors, same run.

What is measured: for each record of ``--data``/mitdb (default: all that have a ``.atr``), the
MLII lead (lead 0 where there is none: 102, 104) in mV at 360 Hz is given to every detector;
detections are scored against the reference beat annotations by `training.qrs_score`
(WFDB's matching rule, 150 ms window, beat symbols only). Printed: Se/+P per record and
detector, the gross row over all records and over the non-paced ones, and speed as a multiple
of real time (seconds of signal per second of wall time, one core, this run).

Detectors:

- ``ours``: `models.qrs.QrsDetector` fed in 1 s chunks, as the edge does (the beats are
  identical to feeding the record whole); timing includes the chunk loop.
- NeuroKit2 (BASELINE): ``nk.ecg_clean`` with the method's own cleaning where NeuroKit has one
  (neurokit, pantompkins1985, hamilton2002, elgendi2010, engzeemod2012), its default cleaning
  otherwise, then ``nk.ecg_findpeaks``; timing includes the cleaning.
- wfdb (BASELINE): ``wfdb.processing.xqrs_detect`` and ``gqrs_detect`` on the same signal.

Whole-record baselines see the future of the record (filtfilt, global statistics); ours is
causal with a fixed 1 s latency. Record 207 contains ventricular flutter episodes whose waves are
not beats: detections there count as false positives in the raw rows; the EC57 rows leave those
episodes out (`training.qrs_score`, ``exclude``).

Run: .venv/bin/python benchmarks/qrs_detectors.py [--records 100 208] [--data ../shared/data]
     [--detectors ours neurokit xqrs]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from models.qrs import QrsDetector
from training.qrs_score import PACED_RECORDS, EcgRecord, Score, gross, load_ecg_record, score_record

REPO = Path(__file__).resolve().parents[1]
NK_OWN_CLEANING = ("neurokit", "pantompkins1985", "hamilton2002", "elgendi2010", "engzeemod2012")
NK_METHODS = (*NK_OWN_CLEANING, "kalidas2017", "rodrigues2021")
Detector = Callable[[NDArray[np.float64], float], NDArray[np.int64]]


def ours_streaming(x: NDArray[np.float64], fs: float) -> NDArray[np.int64]:
    det = QrsDetector(fs)
    step = round(fs)
    out = [det.update(x[i : i + step]) for i in range(0, x.shape[0], step)]
    out.append(det.update(np.full(det.latency_samples + step, x[-1])))  # flush the latency
    beats: NDArray[np.int64] = np.concatenate(out)
    kept: NDArray[np.int64] = beats[beats < x.shape[0]]
    return kept


def neurokit(method: str) -> Detector:
    def run(x: NDArray[np.float64], fs: float) -> NDArray[np.int64]:
        import neurokit2 as nk  # noqa: PLC0415 - optional baseline

        clean_method = method if method in NK_OWN_CLEANING else "neurokit"
        cleaned = nk.ecg_clean(x, sampling_rate=fs, method=clean_method)
        peaks = nk.ecg_findpeaks(cleaned, sampling_rate=fs, method=method)["ECG_R_Peaks"]
        return np.unique(np.asarray(peaks, dtype=np.int64))

    return run


def xqrs(x: NDArray[np.float64], fs: float) -> NDArray[np.int64]:
    from wfdb import processing  # noqa: PLC0415

    return np.unique(np.asarray(processing.xqrs_detect(x, fs, verbose=False), dtype=np.int64))


def gqrs(x: NDArray[np.float64], fs: float) -> NDArray[np.int64]:
    from wfdb import processing  # noqa: PLC0415

    return np.unique(np.asarray(processing.gqrs_detect(x, fs=fs), dtype=np.int64))


def detectors() -> dict[str, Detector]:
    found: dict[str, Detector] = {"ours": ours_streaming}
    try:
        import neurokit2  # noqa: F401, PLC0415
    except ImportError:
        print("neurokit2 not installed: its baselines are skipped (pip install 'vigil[train]')")
    else:
        for m in NK_METHODS:
            found[m] = neurokit(m)
    found["xqrs"] = xqrs
    found["gqrs"] = gqrs
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--records", nargs="*", help="record names (default: every mitdb record)")
    ap.add_argument("--detectors", nargs="*", help="subset of detector names")
    args = ap.parse_args()
    folder = args.data / "mitdb"
    names = args.records or sorted(p.stem for p in folder.glob("*.atr"))
    available = detectors()
    chosen = {k: v for k, v in available.items() if not args.detectors or k in args.detectors}
    warnings.filterwarnings("ignore")  # NeuroKit/wfdb chatter about filters and peaks

    scores: dict[str, list[Score]] = {k: [] for k in chosen}
    ec57: dict[str, list[Score]] = {k: [] for k in chosen}  # VF / VFL left out
    seconds: dict[str, float] = dict.fromkeys(chosen, 0.0)
    signal_s = 0.0
    header = f"{'record':>7} {'lead':>5} " + " ".join(f"{k[:13]:>13}" for k in chosen)
    print("Se/+P (%) per record and detector")
    print(header)
    for name in names:
        rec: EcgRecord = load_ecg_record(folder / name)
        signal_s += rec.signal_mv.shape[0] / rec.fs_hz
        cells = []
        for key, fn in chosen.items():
            t0 = time.perf_counter()
            try:
                beats = fn(rec.signal_mv, rec.fs_hz)
            except Exception as exc:  # a failing baseline is reported, not fatal
                print(f"  {key} failed on {name}: {exc!r}"[:160])
                beats = np.empty(0, dtype=np.int64)
            seconds[key] += time.perf_counter() - t0
            s = score_record(name, rec.beats, beats, rec.fs_hz)
            scores[key].append(s)
            ec57[key].append(score_record(name, rec.beats, beats, rec.fs_hz,
                                          exclude=rec.vf_episodes))
            cells.append(f"{s.se:6.2f}/{s.ppv:6.2f}")
        print(f"{name:>7} {rec.lead:>5} " + " ".join(f"{c:>13}" for c in cells), flush=True)

    def row(label: str, pick: Callable[[Score], bool], table: dict[str, list[Score]] = scores,
            ) -> None:
        cells = []
        for key in chosen:
            g = gross(s for s in table[key] if pick(s))
            cells.append(f"{g.se:7.3f}/{g.ppv:7.3f}")  # targets sit at 99.8 / 99.7
        print(f"{label:>16} " + " ".join(f"{c:>15}" for c in cells))

    print("-" * len(header))
    row("gross all", lambda s: True)
    row("non-paced", lambda s: s.name not in PACED_RECORDS)
    row("all, EC57 VF out", lambda s: True, ec57)
    row("non-paced EC57", lambda s: s.name not in PACED_RECORDS, ec57)
    speed = [f"{signal_s / max(seconds[k], 1e-9):15.0f}" for k in chosen]
    print(f"{'x real time':>16} " + " ".join(speed))
    for key in chosen:
        g, ge = gross(scores[key]), gross(ec57[key])
        print(f"{key}: {g.tp + g.fn} reference beats, {g.fn} missed, {g.fp} false "
              f"({ge.fp} with EC57's flutter left out)")
    print("\nworst records (ours, by FN + FP):")
    for s in sorted(scores.get("ours", []), key=lambda s: -(s.fn + s.fp))[:5]:
        print(f"  {s.name}: TP {s.tp} FN {s.fn} FP {s.fp}  Se {s.se:.2f} +P {s.ppv:.2f}")


if __name__ == "__main__":
    main()
