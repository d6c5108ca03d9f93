"""benchmarks/edge_memory.py on a short run: the accelerated edge keeps its containers bounded.

Half a simulated hour, two beds, a clinical event every 5 minutes per bed, through the real
runtime, journal and mosquitto. No wall-clock or RSS assertions: what is checked would fail on
a real defect (an alert lost, a journal row left behind, an ack refused, a queue that grows).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.mosquitto import find_mosquitto

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "edge_memory.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_edge_memory", _PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report():
    if find_mosquitto() is None:
        reason = "mosquitto is not installed (apt-get install mosquitto)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    bench = _load()
    opts = bench.Options(hours=0.5, beds=2, waveform_beds=1, warmup_hours=0.25,
                         sample_minutes=5.0, event_every_min=5.0, trace_hours=0.05,
                         max_wall_s=120.0)
    return bench.run(opts)


def test_run_completes_and_exercises_alerts_and_commands(report):
    assert report.completed
    assert report.simulated_hours == 0.5
    assert report.samples[-1].alert_events > 10
    assert report.commands_sent.get("ack", 0) >= 2
    assert report.delivered["refused"] == 0, report.delivered["refused_first"]
    assert report.delivered["counts"]["cmd/result"] == sum(report.commands_sent.values())


def test_every_alert_event_reaches_the_subscriber(report):
    assert report.delivered["alert_events"] == report.samples[-1].alert_events


def test_journal_mirrors_the_outbox_and_is_empty_after_shutdown(report):
    for s in report.samples:
        assert s.journal_rows == s.outbox, s
        assert s.outbox <= 10, s  # the in-flight window: PUBACKs keep up on loopback
    assert report.journal_rows_after_shutdown == 0
    pushed, acked, dropped = (int(x) for x in
                              report.containers["alert events pushed / acked / dropped"]
                              .split(" / "))
    assert dropped == 0
    assert pushed - acked == report.containers["outbox held (waiting + in flight)"]


def test_alarm_tracks_and_queues_stay_bounded(report):
    for s in report.samples:
        assert s.active_alerts <= s.alarm_tracks <= s.active_alerts + 12, s  # + pending onsets
        assert s.paho_backlog < 1000, s
    c = report.containers
    assert c["learned detector bed states"] == 2
    assert c["runtime frame inbox / command queue"] == "0 / 0"
    assert c["core per-bed dicts (last_eval, last_vitals_out, vitals_pending, dirty, news2_now)"
             ].startswith("2, 2,")
    assert c["decoder errors (all beds)"] == 0


def test_tracemalloc_tail_reports_allocation_sites(report):
    assert report.top_allocations, "no allocation growth reported by the tracing tail"
    assert all(a["growth_kb"] > 0 for a in report.top_allocations)
