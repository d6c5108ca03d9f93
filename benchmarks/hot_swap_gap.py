"""Longest gap in scoring while the running edge switches to another model bundle.

Real parts: the `edge.runtime.Runtime` loop with the shipped bundle, its model store in a
temporary directory, a real mosquitto on a random loopback port, and `ModelStore.install` of a
signed copy of the shipped bundle (as `vigil-edge model install` does); the runtime notices the
switch, loads and warms the new bundle on a worker thread and swaps it between two ticks
(edge/activation.py). Frames: ``--beds`` beds, each a synthetic adult at ``--rate`` VITALS
frames per second, handed to the runtime's reader callbacks by a feeder thread.

Measured: the time between consecutive scoring passes (`EdgeCore.evaluate` calls), in the
``--window`` seconds after each switch, against the same runtime over two windows with no
switch, one before the switches and one after them (the baseline, same run). ``--swaps``
switches alternate between two bundles. Also reported: the load + warm-up time on the
worker, and the swap itself.

Run: .venv/bin/python benchmarks/hot_swap_gap.py [--beds 4] [--rate 10] [--swaps 5]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.bedstate import VITAL_FIELDS
from edge.config import parse_config
from edge.learned import check_bundle
from edge.runtime import Runtime
from firmware_bridge.codec import DecoderStats
from firmware_bridge.frames import Frame, VitalsFrame
from firmware_bridge.sim import SyntheticPatient, get_profile
from tests._bundles import trusted, variant
from tests.mosquitto import MosquittoBroker, find_mosquitto

_SWAP_TIMEOUT_S = 60.0


class _Reader:
    """The runtime's view of a serial reader; the feeder thread calls ``on_frame``."""

    def __init__(self, port: str, on_frame: Callable[[Frame], None], **kw: Any) -> None:
        self.on_frame = on_frame
        self.on_link: Callable[[bool], None] = kw["on_link"]
        self.stats = DecoderStats()
        self.connected = True

    def start(self) -> None:
        self.on_link(True)

    def stop(self, timeout: float = 5.0) -> None:
        self.connected = False


def _feed(readers: list[_Reader], rate: float, stop: threading.Event) -> None:
    rows = [SyntheticPatient(get_profile("adult"), seed=s).readings(20_000)
            for s in range(len(readers))]
    k = 0
    while not stop.wait(1.0 / rate) and k < 20_000:
        for reader, r in zip(readers, rows, strict=True):
            values: dict[str, Any] = {n: None if np.isnan(v) else round(float(v), 1)
                      for n, v in zip(VITAL_FIELDS, r[k], strict=True)}
            reader.on_frame(VitalsFrame(seq=k & 0xFFFF, **values))
        k += 1


def _gaps(stamps: list[float], start: float, end: float) -> list[float]:
    inside = [t for t in stamps if start <= t <= end]
    return [b - a for a, b in itertools.pairwise(inside)]


def _measure(runtime: Runtime, key: Ed25519PrivateKey, bundles: list[Path],
             args: argparse.Namespace, stamps: list[float],
             ) -> tuple[list[float], list[float], list[float], list[float]]:
    """(baseline gaps, gaps after switches, worker load times s, swap times ms)."""
    models = runtime.models
    assert models is not None
    store = models.store
    assert store is not None
    time.sleep(5.0)  # past start-up (first connect, first status)
    t0 = time.perf_counter()
    time.sleep(args.window)
    baseline = _gaps(stamps, t0, time.perf_counter())
    swap_gaps: list[float] = []
    loads, swaps = [], []
    for i in range(args.swaps):
        t0 = time.perf_counter()
        installed = store.install(bundles[i % 2], trusted=[trusted(key)],
                                  check=lambda p: check_bundle(p, ["bed0"]))
        deadline = time.monotonic() + _SWAP_TIMEOUT_S
        while models.running_id != installed.bundle_id and time.monotonic() < deadline:
            time.sleep(0.05)
        if models.running_id != installed.bundle_id:
            raise RuntimeError(f"switch {i + 1} not followed within {_SWAP_TIMEOUT_S} s")
        loads.append(float(models.last_swap["load_s"]))
        swaps.append(float(models.last_swap["swap_ms"]))
        time.sleep(max(0.0, args.window - (time.perf_counter() - t0)))
        swap_gaps += _gaps(stamps, t0, time.perf_counter())
    t0 = time.perf_counter()  # and a window with no switch after them all
    time.sleep(args.window)
    baseline += _gaps(stamps, t0, time.perf_counter())
    return baseline, swap_gaps, loads, swaps


def _report(args: argparse.Namespace, baseline: list[float], swap_gaps: list[float],
            loads: list[float], swaps: list[float]) -> None:
    print(f"{args.beds} beds at {args.rate:g} VITALS frames/s each; {args.swaps} switches "
          "between two copies of the shipped bundle")
    print("| window | passes | median gap (ms) | p99 gap (ms) | longest gap (ms) |")
    print("|---|---|---|---|---|")
    for name, g in (("baseline, no switch", baseline), ("after each switch", swap_gaps)):
        print(f"| {name} | {len(g) + 1} | {statistics.median(g) * 1e3:.1f} | "
              f"{np.percentile(g, 99) * 1e3:.1f} | {max(g) * 1e3:.1f} |")
    print(f"longest gap during a switch / longest without: {max(swap_gaps) / max(baseline):.2f}x")
    print(f"load + warm-up on the worker thread: median {statistics.median(loads):.2f} s; "
          f"the swap between two ticks: median {statistics.median(swaps):.3f} ms, "
          f"longest {max(swaps):.3f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--beds", type=int, default=4)
    ap.add_argument("--rate", type=float, default=10.0, help="VITALS frames/s per bed")
    ap.add_argument("--swaps", type=int, default=5)
    ap.add_argument("--window", type=float, default=8.0, help="seconds measured per switch")
    args = ap.parse_args()
    binary = find_mosquitto()
    if binary is None:
        print("mosquitto is needed (apt-get install mosquitto)", file=sys.stderr)
        return 1
    key = Ed25519PrivateKey.generate()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        pub = d / "k.pub"
        pub.write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        bundles = [variant(d / f"b{i}", f"bench-{i}", key=key) for i in range(2)]
        (d / "mosquitto").mkdir()
        broker = MosquittoBroker(binary, d / "mosquitto")
        broker.start()
        config = parse_config({
            "device": {"id": "bench-swap"}, "mqtt": {"port": broker.port},
            "beds": [{"id": f"bed{i}", "serial": f"/dev/fake{i}"} for i in range(args.beds)],
            "model": {"bundle": "default", "store_dir": str(d / "store"),
                      "trusted_keys": [str(pub)]},
        })
        readers: list[_Reader] = []

        def factory(port: str, on_frame: Callable[[Frame], None], **kw: Any) -> _Reader:
            readers.append(_Reader(port, on_frame, **kw))
            return readers[-1]

        runtime = Runtime(config, reader_factory=factory)
        stamps: list[float] = []
        evaluate = runtime.core.evaluate

        def timed(now: float) -> Any:
            stamps.append(time.perf_counter())
            return evaluate(now)

        runtime.core.evaluate = timed  # type: ignore[method-assign]
        stop, feeding = threading.Event(), threading.Event()
        loop = threading.Thread(target=runtime.run, args=(stop,))
        feeder = threading.Thread(target=_feed, args=(readers, args.rate, feeding))
        loop.start()
        feeder.start()
        try:
            results = _measure(runtime, key, bundles, args, stamps)
        finally:
            feeding.set()
            feeder.join(10)
            stop.set()
            loop.join(15)
            broker.kill()
    _report(args, *results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
