"""Speed of the ECG head on the edge, as a multiple of real time, on real MIT-BIH records.

What runs: `edge.ecg.EcgDetector.update` (the streaming QRS detector, beat windows and RR
features, the shipped bundle's int8 beat network and novelty autoencoder on every beat, the
signal-quality index every second, the pulse check, the rhythm state machine) on a bed whose
ECG ring receives a record in 200 ms chunks, as the board sends them; one `update` per second
of signal, as the runtime calls it; one thread. Measured against, in the same run on the same
samples:

The board sends lead II and the record's chest lead (V1; V5 in 114, V4 in 124), which the
shipped two-lead beat model reads (`models.beats` rule 9).

- the same head without a beat model (what it costs to class every beat);
- the streaming QRS detector alone (`models.qrs.QrsDetector` fed the same chunks), the part of
  the head that touches every sample;
- NeuroKit2's `ecg_process` on the whole record (cleaning, peaks, rate, quality), the usual
  open-source way to get the same kind of output, when NeuroKit2 is installed.

Run: .venv/bin/python benchmarks/ecg_head_speed.py [--records 101 208 ...] [--data DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.bedstate import BedState
from edge.ecg import EcgDetector
from edge.learned import beat_classifier
from firmware_bridge.frames import WaveformChannel, WaveformFrame
from models.beat_classifier import BeatClassifier
from models.bundle import load_bundle, packaged_bundle
from models.qrs import QrsDetector
from training.ecg_data import chest_lead
from training.qrs_score import load_ecg_record

_CHUNK_S = 0.2
_GAIN = 200.0  # counts per mV, as MIT-BIH's ADC


def _frames(signal_mv: np.ndarray, fs: int,
            channel: WaveformChannel = WaveformChannel.ECG_II) -> list[WaveformFrame]:
    n = int(_CHUNK_S * fs)
    counts = np.clip(np.round(np.nan_to_num(signal_mv) * _GAIN), -32768, 32767).astype(int)
    return [WaveformFrame(channel=channel, rate_hz=fs, gain=_GAIN, baseline=0,
                          first_sample=i, samples=tuple(counts[i:i + n].tolist()))
            for i in range(0, counts.size, n)]


def _per_chunk(*leads: list[WaveformFrame]) -> list[list[WaveformFrame]]:
    """Each chunk's frames, lead II first, as a board sends them."""
    return [list(chunk) for chunk in zip(*leads, strict=True)]


def _head(chunks: list[list[WaveformFrame]], fs: int,
          classifier: BeatClassifier | None) -> tuple[float, int]:
    """Seconds to run the head over the record, beats found (frames applied outside)."""
    bed = BedState("bed", now=0.0, vitals_history_s=60, waveform_history_s=30)
    det = EcgDetector(classifier=classifier)
    per_s = round(1.0 / _CHUNK_S)
    spent = 0.0
    for k, chunk in enumerate(chunks):
        for frame in chunk:
            bed.apply(frame, k * _CHUNK_S)
        if (k + 1) % per_s == 0:
            t0 = time.perf_counter()
            det.update(bed, (k + 1) * _CHUNK_S)
            spent += time.perf_counter() - t0
    st = det.state("bed")
    return spent, 0 if st is None else st.beats


def _qrs_alone(signal_mv: np.ndarray, fs: int) -> float:
    det = QrsDetector(fs)
    n = int(fs)  # the same one-second reads the head makes
    t0 = time.perf_counter()
    for i in range(0, signal_mv.size, n):
        det.update(signal_mv[i:i + n])
    return time.perf_counter() - t0


def _neurokit(signal_mv: np.ndarray, fs: int) -> float | None:
    try:
        import neurokit2 as nk  # noqa: PLC0415 - a baseline, train extra only
    except ImportError:
        return None
    t0 = time.perf_counter()
    nk.ecg_process(np.nan_to_num(signal_mv), sampling_rate=fs)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--records", nargs="*", default=["101", "106", "119", "203", "208", "215"])
    args = ap.parse_args()
    mitdb = Path(args.data) / "mitdb"
    if not mitdb.is_dir():
        print(f"no MIT-BIH records at {mitdb} (see ../shared/data/README.md)", file=sys.stderr)
        return 1
    classifier = beat_classifier(load_bundle(packaged_bundle()))
    assert classifier is not None, "the shipped bundle has no beat model"
    print("| record | minutes | ECG head (x real time) | head without beat model | QRS alone "
          "| NeuroKit2 ecg_process | beats |")
    print("|---|---|---|---|---|---|---|")
    heads, bare, qrs, nks = [], [], [], []
    for name in args.records:
        rec = load_ecg_record(mitdb / name)
        fs = int(rec.fs_hz)
        duration = rec.signal_mv.size / fs
        lead_ii = _frames(rec.signal_mv, fs)
        chest = chest_lead(mitdb / name, rec.lead)
        leads = [lead_ii] if chest is None else [lead_ii, _frames(chest[1], fs,
                                                                  WaveformChannel.ECG_V)]
        head_s, beats = _head(_per_chunk(*leads), fs, classifier)
        bare_s, _ = _head(_per_chunk(lead_ii), fs, None)
        bare.append(duration / bare_s)
        qrs_s = _qrs_alone(rec.signal_mv, fs)
        nk_s = _neurokit(rec.signal_mv, fs)
        heads.append(duration / head_s)
        qrs.append(duration / qrs_s)
        nk_text = "-"
        if nk_s is not None:
            nks.append(duration / nk_s)
            nk_text = f"{duration / nk_s:,.0f}"
        print(f"| {name} | {duration / 60:.1f} | {duration / head_s:,.0f} | "
              f"{duration / bare_s:,.0f} | {duration / qrs_s:,.0f} | {nk_text} | {beats} "
              f"(reference {rec.beats.size}) |")
    nk_median = f"{statistics.median(nks):,.0f}" if nks else "-"
    print(f"| median | | {statistics.median(heads):,.0f} | {statistics.median(bare):,.0f} | "
          f"{statistics.median(qrs):,.0f} | {nk_median} | |")
    print("target (issue 8): the whole head >= 200x real time on one core; the detector >= 1000x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
