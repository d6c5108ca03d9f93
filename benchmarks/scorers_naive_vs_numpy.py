"""Per-tick and batched cost of the numpy edge scorers against scikit-learn used naively.

One tick is one bed's feature row (F = 60 by default) scored by all three models:
IsolationForest (100 trees, max_samples 256), DBSCAN novelty, and scaled logistic risk.

"Naive", measured in the same run on the same rows, is what one would write with sklearn on
the device: ``IsolationForest.score_samples(row[None])``,
``LogisticRegression.predict_proba(scaler.transform(row[None]))`` and, for DBSCAN (which
has no predict), a refit on a sliding window of recent normal rows plus the new row, reading
the new row's label. The numpy side calls each scorer's streaming ``update(row)``: exported
arrays, preallocated buffers, no sklearn. Reported: median and p99 per tick, per model and for
the whole tick, and the ratio of medians (machine-independent).

Batched: B beds' rows scored at once with each scorer's batch method; rows/s (bed-ticks/s) on
one core. BLAS and OpenMP pools are limited to one thread (threadpoolctl) for both sides.

The naive DBSCAN refits on a sliding window of ``--dbscan-window`` rows ending with the new
one. The default, 2000, is the size of the reference set the exported model was fitted on, so
the refit asks (nearly) the question the exported rule answers: is the new row noise relative
to normal data. A short window (say 256) is cheaper and asks a different question; the ratio
depends on this choice, so it is printed with the results.

Run: .venv/bin/python benchmarks/scorers_naive_vs_numpy.py [--features 60] [--ticks 400]
     [--beds 100] [--dbscan-window 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.cluster import DBSCAN
from sklearn.ensemble import IsolationForest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from training.export import export_dbscan, export_isolation_forest, export_logistic

REFERENCE_ROWS = 2000  # normal rows DBSCAN is fitted on
DBSCAN_MIN_SAMPLES = 5

Scorer = Callable[[np.ndarray], Any]


def make_data(n_features: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Standardised vitals-like features: a few correlated normal states, 5% deterioration."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 1.5, size=(4, n_features))
    which = rng.integers(0, 4, size=6000)
    normal = centers[which] + rng.normal(0.0, 0.6, size=(6000, n_features))
    risk_w = rng.normal(size=n_features) / np.sqrt(n_features)
    y = (rng.uniform(size=6000) < 1 / (1 + np.exp(-(normal @ risk_w * 3 - 2)))).astype(int)
    ticks = centers[rng.integers(0, 4, size=5000)] + rng.normal(0.0, 0.8, size=(5000, n_features))
    ticks[::20] += rng.normal(0.0, 4.0, size=(250, n_features))  # abnormal rows
    return {"normal": normal, "y": y, "ticks": ticks}


def time_per_call(fn: Scorer, rows: np.ndarray) -> list[float]:
    out = []
    for row in rows:
        t0 = time.perf_counter()
        fn(row)
        out.append(time.perf_counter() - t0)
    return out


def whole_tick(fns: dict[str, Scorer]) -> Scorer:
    parts = tuple(fns.values())

    def tick(row: np.ndarray) -> None:
        for fn in parts:
            fn(row)

    return tick


def build(args: argparse.Namespace) -> tuple[dict[str, Scorer], dict[str, Scorer],
                                                 dict[str, Scorer], dict[str, Scorer]]:
    """Fit the three models; return naive, numpy per-tick, numpy batch and sklearn batch."""
    data = make_data(args.features)
    normal, y = data["normal"], data["y"]
    t0 = time.perf_counter()
    iforest = IsolationForest(n_estimators=100, contamination=0.02, random_state=0).fit(normal)
    scaler = StandardScaler().fit(normal)
    logistic = LogisticRegression(max_iter=1000).fit(scaler.transform(normal), y)
    reference = normal[:REFERENCE_ROWS]
    # eps: 90th percentile of the distance to the min_samples-th neighbour on normal rows.
    sample = reference[:500]
    kth = np.sort(np.linalg.norm(sample[:, None] - sample[None, :], axis=2), axis=1)
    eps = float(np.quantile(kth[:, DBSCAN_MIN_SAMPLES], 0.9))
    dbscan = DBSCAN(eps=eps, min_samples=DBSCAN_MIN_SAMPLES).fit(reference)
    print(f"features={args.features}  fit {time.perf_counter() - t0:.1f}s")

    numpy_if = export_isolation_forest(iforest)
    numpy_db = export_dbscan(dbscan, reference)
    numpy_lr = export_logistic(scaler, logistic)
    print(f"{numpy_if!r}\n{numpy_db!r}\n{numpy_lr!r}")

    window = reference[-args.dbscan_window:].copy()

    def naive_dbscan(row: np.ndarray) -> bool:
        window[:-1] = window[1:]
        window[-1] = row
        labels = DBSCAN(eps=eps, min_samples=DBSCAN_MIN_SAMPLES).fit(window).labels_
        return bool(labels[-1] == -1)

    naive: dict[str, Scorer] = {
        "iforest": lambda row: iforest.score_samples(row[None]),
        "dbscan": naive_dbscan,
        "logistic": lambda row: logistic.predict_proba(scaler.transform(row[None]))[0, 1],
    }
    fast: dict[str, Scorer] = {
        "iforest": numpy_if.update, "dbscan": numpy_db.update, "logistic": numpy_lr.update,
    }
    batched: dict[str, Scorer] = {
        "iforest": numpy_if.score_samples,
        "dbscan": numpy_db.score,
        "logistic": numpy_lr.predict_proba,
    }
    sk_batched: dict[str, Scorer] = {
        "iforest": iforest.score_samples,
        "logistic": lambda x: logistic.predict_proba(scaler.transform(x))[:, 1],
    }
    return naive, fast, batched, sk_batched


def per_tick(naive: dict[str, Scorer], fast: dict[str, Scorer], ticks: np.ndarray,
             args: argparse.Namespace) -> None:
    n_features, dbscan_window = args.features, args.dbscan_window
    naive_rows = ticks[: args.ticks]
    fast_rows = ticks[: args.ticks * 10]
    for fns in (naive, fast):  # warm-up: caches, first-call allocations, BLAS init
        for fn in fns.values():
            for row in ticks[:20]:
                fn(row)
    print(f"\nper tick (one bed, one row of {n_features} features), microseconds; "
          f"naive DBSCAN refits on the last {dbscan_window} rows, the new one included")
    print(f"{'model':<10}{'naive med':>12}{'naive p99':>12}{'numpy med':>12}{'numpy p99':>12}"
          f"{'ratio':>10}")
    for name in (*naive, "TICK"):
        if name == "TICK":
            slow_t = time_per_call(whole_tick(naive), naive_rows)
            fast_t = time_per_call(whole_tick(fast), fast_rows)
        else:
            slow_t = time_per_call(naive[name], naive_rows)
            fast_t = time_per_call(fast[name], fast_rows)
        slow_med, fast_med = statistics.median(slow_t), statistics.median(fast_t)
        print(f"{name:<10}{slow_med * 1e6:>12.1f}{np.percentile(slow_t, 99) * 1e6:>12.1f}"
              f"{fast_med * 1e6:>12.1f}{np.percentile(fast_t, 99) * 1e6:>12.1f}"
              f"{slow_med / fast_med:>9.0f}x")


def throughput(batched: dict[str, Scorer], sk_batched: dict[str, Scorer], batch: np.ndarray,
               reps: int = 200) -> None:
    beds = len(batch)
    print(f"\nbatched, B={beds} beds per call, rows (bed-ticks) per second on one core")
    total = 0.0
    for name, fn in batched.items():
        fn(batch)
        t0 = time.perf_counter()
        for _ in range(reps):
            fn(batch)
        per_call = (time.perf_counter() - t0) / reps
        total += per_call
        sk = ""
        if name in sk_batched:
            sk_batched[name](batch)
            t0 = time.perf_counter()
            for _ in range(20):
                sk_batched[name](batch)
            sk_call = (time.perf_counter() - t0) / 20
            sk = f"   (sklearn batched: {beds / sk_call:>10,.0f} rows/s)"
        print(f"{name:<10}{per_call * 1e3:>8.3f} ms/call {beds / per_call:>12,.0f} rows/s{sk}")
    print(f"{'all three':<10}{total * 1e3:>8.3f} ms/call {beds / total:>12,.0f} rows/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=60)
    parser.add_argument("--ticks", type=int, default=400, help="naive ticks timed (numpy: 10x)")
    parser.add_argument("--beds", type=int, default=100, help="batch size for throughput")
    parser.add_argument("--dbscan-window", type=int, default=REFERENCE_ROWS,
                        help="rows the naive DBSCAN refits on with each new row")
    args = parser.parse_args()
    if not 1 <= args.dbscan_window <= REFERENCE_ROWS:
        parser.error(f"--dbscan-window must be in [1, {REFERENCE_ROWS}]")
    with threadpool_limits(limits=1):
        naive, fast, batched, sk_batched = build(args)
        ticks = make_data(args.features)["ticks"]
        per_tick(naive, fast, ticks, args)
        throughput(batched, sk_batched, ticks[: args.beds])


if __name__ == "__main__":
    main()
