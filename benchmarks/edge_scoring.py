"""Per-tick cost of the edge's learned scoring (edge.learned) against the naive way, same run.

The bundle is the test bundle (tests/_vitals_bundle.py: 84 features, IsolationForest of 60
trees, DBSCAN core set, logistic risk, int8 autoencoder, int8 LSTM forecaster of 20 steps),
trained at start (~20 s). One tick = one bed's new VITALS row -> all five components.

- **Edge**: `LearnedDetector.update(bed, now)` after one `BedState.apply` (not timed): feature
  row, scaling, both TFLite models through zero-copy views, numpy scorers, votes.
- **Naive**, the same features, then what one would write with the training stack on the
  device: Keras ``model.predict`` of the autoencoder and of the forecaster per sample,
  ``IsolationForest.score_samples(z[None])``, DBSCAN refitted on the last ``--dbscan-window``
  scaled rows plus the new one (reading the new row's label), and
  ``LogisticRegression.predict_proba(scaler.transform(...))``.
- **Batched**: B beds ticking together, the numpy parts vectorized over beds
  (MultiBedFeatureStream, scaler, batch scorers), the batch-1 TFLite models invoked per bed
  through the same runner; bed-ticks per second on one core (BLAS/OpenMP limited to 1 thread).

Reported: median and p99 per tick, the ratio of medians (naive / edge), bed-ticks/s, and the
edge tick on the shipped default bundle (models/bundles/default: larger networks and core set;
no naive twin, its training objects are not kept).
Run: .venv/bin/python benchmarks/edge_scoring.py [--ticks 2000] [--naive-ticks 60] [--beds 256]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.cluster import DBSCAN
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import _vitals_bundle as vb

from edge.bedstate import VITAL_FIELDS, BedState
from edge.learned import LearnedDetector
from firmware_bridge.frames import VitalsFrame
from models.bundle import load_bundle, packaged_bundle
from models.features import FeatureStream, MultiBedFeatureStream
from models.scaler import Standardizer


def _stats(samples: list[float]) -> tuple[float, float]:
    s = sorted(samples)
    return statistics.median(s), s[min(len(s) - 1, math.ceil(0.99 * len(s)) - 1)]


def _frame(k: int, row: np.ndarray) -> VitalsFrame:
    pairs = zip(VITAL_FIELDS, row, strict=True)
    values = {n: None if math.isnan(v) else round(float(v), 1) for n, v in pairs}
    return VitalsFrame(seq=k & 0xFFFF, **values)


def bench_edge(bundle_path: Path, rows: np.ndarray, ticks: int) -> list[float]:
    learned = LearnedDetector(load_bundle(bundle_path), ["bed1"])
    bed = BedState("bed1", now=0.0, vitals_history_s=600, waveform_history_s=30)
    frames = [_frame(k, r) for k, r in enumerate(rows)]
    times = []
    for k, frame in enumerate(frames[: ticks + 300]):
        bed.apply(frame, float(k))
        t0 = time.perf_counter()
        learned.update(bed, float(k))
        if k >= 300:  # past every warm-up
            times.append(time.perf_counter() - t0)
    return times


def bench_naive(built: vb.VitalsBundle, rows: np.ndarray, ticks: int, window: int) -> list[float]:
    f = built.fitted
    scaler = Standardizer.from_dict(built.manifest_fields["scaler"])
    fc_extra = built.manifest_fields["extra"]["forecaster"]
    mean, scale = np.array(fc_extra["vitals_mean"]), np.array(fc_extra["vitals_scale"])
    stream = FeatureStream(vb.SPEC)
    recent = [r for r in f["dbscan_rows"][-window:]]
    levels: list[np.ndarray] = []
    times = []
    for k, row in enumerate(rows[: ticks + 300]):
        feats = stream.update(row).copy()
        levels.append((feats[:: vb.SPEC.features_per_vital] - mean) / scale)
        if k < 300:
            continue
        t0 = time.perf_counter()
        z = scaler.transform(feats[None])
        recon = f["autoencoder"].predict(z.astype(np.float32), verbose=0)
        mse = float(np.mean((recon - z) ** 2))
        if_score = float(f["iforest"].score_samples(z)[0])
        recent = [*recent[1:], z[0]]
        labels = DBSCAN(eps=f["dbscan_eps"], min_samples=5).fit(np.array(recent)).labels_
        outlier = float(labels[-1] == -1)
        x = np.r_[z[0], mse, if_score, outlier][None]
        p = float(f["risk"].predict_proba(f["risk_scaler"].transform(x))[0, 1])
        window_x = np.array(levels[-vb.WINDOW :], dtype=np.float32)[None]
        p_event = f["forecaster"].predict(window_x, verbose=0)[1]
        times.append(time.perf_counter() - t0)
        del p, p_event
    return times


def bench_batched(bundle_path: Path, rows: np.ndarray, beds: int, ticks: int) -> dict[str, float]:
    bundle = load_bundle(bundle_path)
    det = LearnedDetector(bundle, ["x"])
    plan = det._plan
    n = plan.spec.n_features
    stream = MultiBedFeatureStream(plan.spec, n_beds=beds)
    z = np.empty((beds, n))
    z32 = np.empty((beds, 1, n), dtype=np.float32)
    ae, fc = plan.autoencoder, plan.forecaster_model
    window = np.zeros((beds, vb.WINDOW, 7), dtype=np.float32)
    mse = np.empty(beds)
    risk_in = np.empty((beds, n + 3))
    offsets = np.arange(beds) * 37  # each bed at a different point of the recording
    per = {"features+scaler": 0.0, "iforest+dbscan+risk": 0.0, "autoencoder": 0.0,
           "forecaster": 0.0}  # fmt: skip
    total = 0.0
    for k in range(ticks):
        x = rows[(offsets + k) % len(rows)]
        t0 = time.perf_counter()
        plan.scaler.transform(stream.update(x), out=z)
        t1 = time.perf_counter()
        np.copyto(z32[:, 0], z)
        for b in range(beds):
            out = ae.predict_into(z32[b])
            mse[b] = float(np.mean(np.square(out[0] - z[b])))
        t2 = time.perf_counter()
        risk_in[:, :n] = z
        risk_in[:, n] = mse
        risk_in[:, n + 1] = plan.iforest.score_samples(z)
        risk_in[:, n + 2] = plan.dbscan.score(z)
        plan.risk.predict_proba(risk_in)
        t3 = time.perf_counter()
        for b in range(beds):
            fc.predict_into(window[b][None])
        t4 = time.perf_counter()
        per["features+scaler"] += t1 - t0
        per["autoencoder"] += t2 - t1
        per["iforest+dbscan+risk"] += t3 - t2
        per["forecaster"] += t4 - t3
        total += t4 - t0
    bed_ticks = beds * ticks
    out = {f"{k} us/bed-tick": v / bed_ticks * 1e6 for k, v in per.items()}
    out["bed-ticks/s"] = bed_ticks / total
    out["bed-ticks/s without forecaster"] = bed_ticks / (total - per["forecaster"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=2000)
    parser.add_argument("--naive-ticks", type=int, default=60)
    parser.add_argument("--beds", type=int, default=256)
    parser.add_argument("--batched-ticks", type=int, default=40)
    parser.add_argument("--dbscan-window", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, threadpool_limits(1):
        t0 = time.perf_counter()
        built = vb.build(Path(tmp))
        print(f"bundle trained in {time.perf_counter() - t0:.1f} s: {built.path}")
        rows = np.vstack([vb.normal_vitals(100 + i) for i in range(4)])
        edge = bench_edge(built.path, rows, args.ticks)
        naive = bench_naive(built, rows, args.naive_ticks, args.dbscan_window)
        e_med, e_p99 = _stats(edge)
        n_med, n_p99 = _stats(naive)
        print(f"edge  per tick and bed: median {e_med * 1e6:8.1f} us  p99 {e_p99 * 1e6:8.1f} us"
              f"  ({len(edge)} ticks)")
        print(f"naive per tick and bed: median {n_med * 1e3:8.2f} ms  p99 {n_p99 * 1e3:8.2f} ms"
              f"  ({len(naive)} ticks, DBSCAN refit window {args.dbscan_window})")
        print(f"ratio of medians naive / edge: {n_med / e_med:.0f}x (target >= 300x)")
        shipped = packaged_bundle()
        if (shipped / "manifest.json").is_file():
            s_med, s_p99 = _stats(bench_edge(shipped, rows, args.ticks))
            print(f"edge, shipped default bundle ({load_bundle(shipped).version}): median "
                  f"{s_med * 1e6:.1f} us  p99 {s_p99 * 1e6:.1f} us  ({s_med / e_med:.2f}x the "
                  "test bundle's tick; the naive way exists only for the test bundle)")
        batched = bench_batched(built.path, rows, args.beds, args.batched_ticks)
        print(f"batched, {args.beds} beds x {args.batched_ticks} ticks, one core:")
        for key, value in batched.items():
            print(f"  {key}: {value:,.1f}")


if __name__ == "__main__":
    main()
