"""Feature pipeline throughput on one core: streaming ticks/s against batch rows/s.

Input: a synthetic adult patient (1 Hz vitals, with SpO2 dropouts and motion artefacts) plus a
90 s gap, default FeatureSpec (7 vitals, windows 30/120/300 s, 84 features). Measured in the
same run:

- batch: `compute_features` over the whole recording (what training does), rows/s;
- streaming, one bed: `FeatureStream.update` per row (the edge's per-tick path), ticks/s;
- streaming, many beds: `MultiBedFeatureStream.update` with B beds per tick, bed-ticks/s.

The ratios streaming/batch say what the per-tick Python and numpy call overhead costs relative
to the vectorized batch, independent of machine speed. The target for the edge is 10,000
bed-ticks/s on one core.

Run: .venv/bin/python benchmarks/features_throughput.py [--seconds N] [--beds B] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from firmware_bridge.sim import SyntheticPatient, get_profile
from models.features import FeatureSpec, FeatureStream, MultiBedFeatureStream, compute_features


def recording(seconds: int) -> np.ndarray:
    x = SyntheticPatient(get_profile("adult"), seed=1).readings(seconds)
    x[seconds // 2 : seconds // 2 + 90] = np.nan
    return x


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3600, help="rows of vitals (1 Hz)")
    parser.add_argument("--beds", type=int, default=100, help="beds for the multi-bed stream")
    parser.add_argument("--repeat", type=int, default=3, help="best of R runs")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    spec = FeatureSpec()
    x = recording(args.seconds)
    n = x.shape[0]

    t_batch = best_of(args.repeat, lambda: compute_features(x, spec))

    def single() -> None:
        stream = FeatureStream(spec)
        for row in x:
            stream.update(row)

    t_single = best_of(args.repeat, single)

    beds = np.ascontiguousarray(np.repeat(x[:, None, :], args.beds, axis=1))
    ticks = min(n, 600)

    def multi() -> None:
        stream = MultiBedFeatureStream(spec, n_beds=args.beds)
        for row in beds[:ticks]:
            stream.update(row)

    t_multi = best_of(args.repeat, multi)

    batch_rate = n / t_batch
    single_rate = n / t_single
    multi_rate = ticks * args.beds / t_multi
    print(f"features: {spec.n_features} per row, windows {spec.windows_s} s, one core")
    print(f"batch compute_features : {batch_rate:12,.0f} rows/s ({n} rows)")
    print(f"FeatureStream (1 bed)  : {single_rate:12,.0f} ticks/s "
          f"({1e6 / single_rate:.1f} us/tick; {single_rate / batch_rate:.3f} of batch)")
    print(f"MultiBed ({args.beds:4d} beds)  : {multi_rate:12,.0f} bed-ticks/s "
          f"({1e6 * t_multi / ticks:.1f} us/tick; {multi_rate / batch_rate:.3f} of batch)")


if __name__ == "__main__":
    main()
