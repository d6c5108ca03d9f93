"""Forecaster on the device runtime: LSTM as a TFLite WHILE loop vs unrolled, float32 and int8.

Why: the milestone ships the unrolled form (fixed batch 1, ``unroll=True``) because it is the
only one that converts to full int8 with builtin ops, and it was measured about 4x faster than
the WHILE form. This re-measures both through `models.tflite.load_interpreter` (LiteRT, one
thread, as on the Pi) with the same weights, checks they agree, and reports file sizes and ops.
With --try-int8-while it also retries full-int8 conversion of the WHILE form in a child process,
bypassing training.quantize's guard, because that conversion crashes the converter (SIGSEGV with
TF 2.21) and would take this process down with it.

Run: .venv/bin/python benchmarks/lstm_while_vs_unrolled.py [--runs N] [--units U] [--try-int8-while]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import keras
import numpy as np

from models.tflite import TFLiteModel, load_interpreter
from training.nets import build_forecaster, inference_copy
from training.quantize import builtin_ops, to_tflite_float, to_tflite_int8

_INT8_WHILE_CHILD = textwrap.dedent(
    """
    import sys
    import keras, numpy as np, tensorflow as tf
    from training.nets import build_forecaster, inference_copy
    window, vitals, horizon, units = map(int, sys.argv[1:5])
    keras.utils.set_random_seed(0)
    model = inference_copy(build_forecaster(window, vitals, horizon, units), 1, unroll=False)
    x = np.random.default_rng(0).normal(size=(64, window, vitals)).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[i : i + 1]] for i in range(len(x)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    print("converted", len(converter.convert()), "bytes")
    """
)


def _time_us(model: TFLiteModel, x: np.ndarray, runs: int) -> float:
    """Median wall time of one predict() in microseconds (after warm-up)."""
    for i in range(min(50, runs)):
        model.predict(x[i % len(x) : i % len(x) + 1])
    times = []
    for i in range(runs):
        sample = x[i % len(x) : i % len(x) + 1]
        start = time.perf_counter()
        model.predict(sample)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=30, help="input steps (e.g. 30 min)")
    parser.add_argument("--vitals", type=int, default=4)
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--try-int8-while", action="store_true")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    trained_shape = build_forecaster(args.window, args.vitals, args.horizon, args.units)
    x = np.random.default_rng(0).normal(size=(256, args.window, args.vitals)).astype(np.float32)
    forms = {
        "WHILE float32": to_tflite_float(inference_copy(trained_shape, 1, unroll=False)),
        "unrolled float32": to_tflite_float(inference_copy(trained_shape, 1, unroll=True)),
        "unrolled int8": to_tflite_int8(inference_copy(trained_shape, 1, unroll=True), x),
    }
    print(
        f"forecaster window={args.window} vitals={args.vitals} horizon={args.horizon} "
        f"units={args.units}; median of {args.runs} predict() calls, 1 thread"
    )
    outputs: dict[str, np.ndarray] = {}
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, tflite in forms.items():
            path = Path(tmp) / (name.replace(" ", "_") + ".tflite")
            path.write_bytes(tflite)
            model = load_interpreter(path, num_threads=1)
            outputs[name] = np.concatenate([model.predict(x[i : i + 1]) for i in range(64)])
            timings[name] = _time_us(model, x, args.runs)
            ops = builtin_ops(tflite)
            print(
                f"  {name:<17} {timings[name]:8.1f} us  {len(tflite):>8,} B  "
                f"{len(ops)} op kinds{' (WHILE)' if 'WHILE' in ops else ''}"
            )
    diff = float(np.max(np.abs(outputs["WHILE float32"] - outputs["unrolled float32"])))
    print(f"  WHILE vs unrolled float32 max |diff| {diff:.2e}")
    speedup = timings["WHILE float32"] / timings["unrolled float32"]
    print(f"  unrolled float32 is {speedup:.1f}x faster than WHILE float32")

    if args.try_int8_while:
        child = subprocess.run(
            [sys.executable, "-c", _INT8_WHILE_CHILD]
            + [str(v) for v in (args.window, args.vitals, args.horizon, args.units)],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if child.returncode < 0:
            outcome = f"killed by {signal.Signals(-child.returncode).name}"
        elif child.returncode == 0:
            outcome = "converted: " + child.stdout.strip().splitlines()[-1]
        else:
            outcome = f"exit code {child.returncode}: " + child.stderr.strip()[-300:]
        print(f"  int8 WHILE conversion in a child process: {outcome}")


if __name__ == "__main__":
    main()
