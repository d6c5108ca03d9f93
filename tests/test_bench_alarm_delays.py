"""benchmarks/alarm_delays.py: event accounting on one real MIMIC-III patient (s25047, 1.2 h):
its minute numerics and the per-second vitals derived from its 125 Hz waveforms.

Fast (a few seconds): no sweep, one injected copy; other records are only looked at through
their headers. Nothing here depends on wall-clock time.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from _data import shared_data_dir

from benchmarks.alarm_delays import (
    build,
    inject,
    load_records,
    load_waveform_records,
    main,
    matching_kinds,
    measure,
    present_spans,
    skip_reason,
)
from edge.config import EdgeConfig, default_config_text
from edge.rhythm import KIND_ONSET_S
from firmware_bridge.sim.events import EventKind
from firmware_bridge.sim.vitals import Vital
from training.evaluate import LabelledPatient
from training.labels import KIND_VITALS

REPO = Path(__file__).resolve().parents[1]


def _configs() -> dict[str, EdgeConfig]:
    doc = tomllib.loads(default_config_text())
    return {"before": build(doc, onset_s=0.0, technical_onset_s=0.0, clear_s=0.0),
            "after": build(doc)}


def test_matching_kinds_follow_the_event_direction() -> None:
    limits = build(tomllib.loads(default_config_text())).limits
    assert matching_kinds(EventKind.HYPOTENSION, limits) == {"sbp_low", "map_low"}
    assert matching_kinds(EventKind.DESATURATION, limits) == {"spo2_low"}
    assert matching_kinds(EventKind.APNOEA, limits) == {"rr_low"}
    assert matching_kinds(EventKind.FEVER, limits) == {"temp_high", "hr_high"}


def test_before_has_no_delays_and_after_is_the_shipped_file() -> None:
    cfg = _configs()
    before, after = cfg["before"], cfg["after"]
    assert (before.alarms.onset_s, before.alarms.clear_s) == (0.0, 0.0)
    # Per-kind timing: only the rhythm kinds' own onset defaults (edge/rhythm.py), all zero.
    assert set(before.alarms.kinds.values()) <= {(0.0, 0.0)}
    shipped = tomllib.loads(default_config_text())["alarms"]
    assert after.alarms.onset_s == shipped.get("onset_s", 5.0)
    assert after.alarms.clear_s == shipped.get("clear_s", 3.0)
    assert set(after.alarms.kinds) == set(shipped.get("kinds", {})) | set(KIND_ONSET_S)
    assert after.model.bundle == ""
    assert after.journal.state_dir == ""


def test_event_accounting_on_a_real_record() -> None:
    records = load_records(shared_data_dir("physionet-samples", "mimic3-s25047"))
    assert len(records) == 1
    injected, _dropped = inject(records, seed=3, per_hour=3.0, copies=1)
    (p,) = injected
    assert p.events, "no event was injected"
    ordered = sorted(p.events, key=lambda e: e.onset_s)
    assert all(a.end_s <= b.onset_s for a, b in itertools.pairwise(ordered))
    assert p.vitals.shape == records[0].vitals.shape
    # NaN (not measured) stays NaN: only physiology moves.
    assert np.array_equal(np.isnan(p.vitals), np.isnan(records[0].vitals))
    for name, config in _configs().items():
        f = measure(name, config, records, injected)
        assert f.events == len(p.events)
        assert f.detected + f.covered_by_earlier_alert <= f.events
        assert sum(r.events for r in f.by_event_kind) == f.events
        assert sum(r.detected for r in f.by_event_kind) == f.detected
        assert len(f.detected_ids) == f.detected
        onsets = {f"{p.patient}@{e.onset_s:g}" for e in p.events}
        assert set(f.detected_ids) <= onsets
        assert sum(f.alerts_real_by_kind.values()) == f.alerts_real
        assert 0 < f.outside_hours < f.measured_hours
        # Without events, every alert of the copy is outside events and equals the clean run.
        plain = [LabelledPatient(p.patient, records[0].vitals, ())]
        g = measure(name, config, records, plain)
        assert g.alerts_outside == f.alerts_real
        assert g.outside_hours == f.measured_hours


def test_waveform_set_derives_vitals_per_second_from_the_waveforms() -> None:
    records, left_out = load_waveform_records(shared_data_dir("physionet-samples",
                                                              "mimic3-s25047"))
    assert left_out == []
    (rec,) = records
    assert (rec.name, rec.patient, rec.native_period_s) == (
        "s25047-2704-05-04-10-44", "mimic3:s25047", 1.0)
    hr = rec.vitals[:, Vital.HR]
    assert np.isfinite(hr).mean() > 0.9
    assert 40.0 < float(np.nanmedian(hr)) < 150.0
    # Derived every second, not the minute numerics beside the record held at 1 Hz.
    changes = np.diff(hr)
    assert (changes[np.isfinite(changes)] != 0).mean() > 0.5
    for vital in (Vital.SPO2, Vital.RR, Vital.TEMP):  # no loader derives these from waveforms
        assert np.isnan(rec.vitals[:, vital]).all()
    injected, dropped = inject(records, seed=3, per_hour=3.0, copies=1)
    (p,) = injected
    assert p.events, "no event was injected"
    assert all(KIND_VITALS[e.kind][0] not in (Vital.SPO2, Vital.RR, Vital.TEMP) for e in p.events)
    assert not set(dropped) & {"tachycardia", "bradycardia"}
    cfg = _configs()
    before = measure("before", cfg["before"], records, injected)
    after = measure("after", cfg["after"], records, injected)
    for f in (before, after):
        assert f.events == len(p.events)
        assert sum(f.alerts_real_by_record.values()) == f.alerts_real
        assert sum(r.detected for r in f.by_event_kind) == f.detected
    # Brief 1 Hz crossings are what the onset delay is for: the real record has some.
    assert after.alerts_real < before.alerts_real


def test_waveform_selection_rules() -> None:
    assert ".atr" in (skip_reason(shared_data_dir("physionet-samples", "100")) or "")
    assert "alarm" in (skip_reason(shared_data_dir("physionet-samples", "a103l")) or "")
    assert skip_reason(shared_data_dir("physionet-samples", "03700181")) is None
    folder = shared_data_dir("physionet-samples", "mimic3-s00001")
    # Segments 0009-0011 are not in the data folder: they split the record in two pieces.
    assert present_spans(folder / "s00001-2896-10-10-00-31") == [
        (3261, 2227598), (14428365, 14518365)]
    assert present_spans(folder / "s00001-2896-10-09-01-56") == []  # only a gap segment


def test_main_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = shared_data_dir("physionet-samples", "mimic3-s25047")
    out = tmp_path / "figures.json"
    assert main(["--data", str(data), "--copies", "1", "--wave-copies", "1", "--no-sweep",
                 "--json", str(out)]) == 0
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert set(figures["sets"]) == {"numerics", "waveform"}
    for name, record in (("numerics", "s25047-2704-05-04-10-44n"),
                         ("waveform", "s25047-2704-05-04-10-44")):
        one = figures["sets"][name]
        assert [r["name"] for r in one["records"]] == [record]
        assert one["before"]["events"] == one["after"]["events"] > 0
        assert one["sweep"] == []
    text = capsys.readouterr().out
    assert text.count("| ratio after / before |") == 2
    assert "## real 1 Hz (waveform-derived)" in text


def test_benchmark_does_not_import_tensorflow() -> None:
    code = ("import sys; import benchmarks.alarm_delays; "
            "sys.exit(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules) or 0)")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_missing_data_folder_exits_with_a_message(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not found"):
        main(["--data", str(tmp_path / "absent")])
