"""training.evaluate: held-out replay through EdgeCore, counting rules, report, CLI.

The bundle is the tiny real one of tests/_vitals_bundle.py (trained once per module, ~20 s).
Hand-built patients hold every vital flat at a normal value, so the fixed limits see exactly
the dips written into them and the expected counts can be worked out by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is in vigil[edge]")
pytest.importorskip("tensorflow", reason="tensorflow-cpu is in vigil[train]")
pytest.importorskip("sklearn", reason="scikit-learn is in vigil[train]")

import _vitals_bundle as vb

from firmware_bridge.sim import get_profile
from firmware_bridge.sim.events import Event, EventKind, event_labels
from firmware_bridge.sim.replay import load_recording
from firmware_bridge.sim.vitals import Vital
from training.cli import main
from training.datasets import PatientVitals
from training.evaluate import (
    POST_EVENT_S,
    AlertSpan,
    EvaluationReport,
    LabelledPatient,
    PatientReplay,
    SetFigures,
    count_set,
    edge_config,
    evaluate,
    held_out_patients,
    replay,
)
from training.synth import SynthPatient

NORMAL = {Vital.HR: 72.0, Vital.SPO2: 97.0, Vital.RR: 14.0, Vital.SBP: 120.0, Vital.DBP: 78.0,
          Vital.MAP: 92.0, Vital.TEMP: 36.8}
DESAT_SPO2 = 80.0  # below the default high limit (85 %)
ONSET_S = 5.0


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return vb.build(tmp_path_factory.mktemp("eval-bundle")).path


def _flat(seconds: int) -> np.ndarray:
    v = np.empty((seconds, len(Vital)))
    for vital, value in NORMAL.items():
        v[:, vital] = value
    return v


def _patient(
    name: str, seconds: int, events: tuple[Event, ...] = (), dips: tuple[tuple[int, int], ...] = ()
) -> SynthPatient:
    """Flat normal vitals; SpO2 at DESAT_SPO2 during each event and each (start, length) dip."""
    v = _flat(seconds)
    for e in events:
        v[int(e.onset_s) : int(e.end_s), Vital.SPO2] = DESAT_SPO2
    for start, length in dips:
        v[start : start + length, Vital.SPO2] = DESAT_SPO2
    t = np.arange(seconds, dtype=np.float64)
    return SynthPatient(
        patient=name, name=name, vitals=v, profile=get_profile("adult"), events=events,
        labels=event_labels(t, list(events)),
    )


def _set(report: EvaluationReport, name: str) -> SetFigures:
    return next(s for s in report.sets if s.name == name)


def test_fixed_limits_detect_one_deep_desaturation_after_the_onset_delay(bundle: Path) -> None:
    desat = Event(EventKind.DESATURATION, 400.0, 120.0, 0.0, 17.0)
    report = evaluate(bundle, cohort=[_patient("desat", 1200, (desat,))], onset_s=ONSET_S)
    fixed = _set(report, "fixed_limits")
    kind = next(k for k in fixed.kinds if k.kind == "desaturation")
    assert (kind.events, kind.detected, kind.sensitivity) == (1, 1, 1.0)
    assert kind.median_delay_s == ONSET_S  # limit crossed at the onset, alert after onset_s
    assert fixed.false_alerts == 0
    assert report.suppression["hold_s"] == 10.0
    assert report.suppression["fixed_limit_alerts_identical_without_model"] is True


def test_flat_normal_patient_raises_no_fixed_limit_alert(bundle: Path) -> None:
    report = evaluate(bundle, cohort=[_patient("flat", 1800)], onset_s=ONSET_S)
    fixed = _set(report, "fixed_limits")
    assert (fixed.alerts, fixed.false_alerts, fixed.false_per_hour) == (0, 0, 0.0)
    assert fixed.events == 0
    assert fixed.sensitivity is None
    assert fixed.event_free_hours == 0.5
    assert fixed.event_free_record_hours == 0.5


def test_known_alert_pattern_gives_the_hand_counted_false_alert_rate(bundle: Path) -> None:
    # One hour; one labelled 120 s desaturation at 1800 s; three unlabelled 20 s dips far from
    # it: three false alerts. Event-free time = 3600 - (120 + 2 x 60) s = 3360 s.
    desat = Event(EventKind.DESATURATION, 1800.0, 120.0, 0.0, 17.0)
    p = _patient("pattern", 3600, (desat,), dips=((300, 20), (900, 20), (3000, 20)))
    report = evaluate(bundle, cohort=[p], onset_s=ONSET_S)
    fixed = _set(report, "fixed_limits")
    assert fixed.alerts == 4
    assert fixed.false_alerts == 3
    assert fixed.event_free_hours == round(3360 / 3600, 4)
    assert fixed.false_per_hour == round(3 / (3360 / 3600), 4)  # 3.2143 per patient-hour
    assert fixed.detected == 1
    assert fixed.false_alerts_event_free_records == 0  # this record has an event


def test_counting_rules_on_hand_made_alerts() -> None:
    ev = Event(EventKind.TACHYCARDIA, 1000.0, 100.0, 0.0, 40.0)  # active [1000, 1100)
    p = LabelledPatient("p", _flat(3600), (ev,))
    alerts = (
        AlertSpan("ensemble_anomaly", "m", 900.0, 950.0),  # ends 50 s before onset: in margin
        AlertSpan("ensemble_anomaly", "m", 500.0, 600.0),  # false
        AlertSpan("ensemble_anomaly", "m", 1160.0, 1170.0),  # new at end + 60: detects
        AlertSpan("ensemble_anomaly", "m", 1161.0 + POST_EVENT_S, 1300.0),  # false
    )
    rep = PatientReplay("p", 3600, alerts, np.full((3600, 5), np.nan))
    f = count_set("ensemble", [rep], [p])
    assert (f.alerts, f.false_alerts, f.detected, f.median_delay_s) == (4, 2, 1, 160.0)
    assert f.event_free_hours == round((3600 - 220) / 3600, 4)


def test_the_gated_set_drops_a_brief_dip_and_delays_a_lasting_event_by_at_most_the_hold(
    bundle: Path,
) -> None:
    desat = Event(EventKind.DESATURATION, 1200.0, 120.0, 0.0, 17.0)
    p = _patient("gate", 1800, (desat,), dips=((600, 8),))
    report = evaluate(bundle, cohort=[p], onset_s=ONSET_S)
    plain, gated = _set(report, "fixed_limits"), _set(report, "fixed_limits_gated")
    assert (plain.false_alerts, plain.detected, plain.median_delay_s) == (1, 1, ONSET_S)
    assert (gated.false_alerts, gated.detected) == (0, 1)
    assert gated.median_delay_s is not None
    assert ONSET_S <= gated.median_delay_s <= ONSET_S + report.suppression["hold_s"]


def test_fixed_limit_alerts_do_not_depend_on_the_learned_detectors(bundle: Path) -> None:
    from models.bundle import load_bundle  # noqa: PLC0415

    p = _patient("dips", 900, dips=((100, 30), (500, 8)))
    config = edge_config(bundle, onset_s=ONSET_S, clear_s=3.0)
    alone = replay(config, None, p.patient, p.vitals)
    both = replay(config, load_bundle(bundle), p.patient, p.vitals)
    assert len(alone.alerts) == 2
    assert list(alone.alerts) == [a for a in both.alerts if a.model == "fixed-limits/1"]


def test_report_round_trips_json_and_markdown_has_the_tables(bundle: Path) -> None:
    desat = Event(EventKind.DESATURATION, 300.0, 90.0, 0.0, 17.0)
    rec = load_recording("fixture:mimic3-numerics")
    real = [PatientVitals("mimic3:s00001", rec.name, rec.vitals, 60.0)]
    report = evaluate(
        bundle, cohort=[_patient("a", 900, (desat,)), _patient("b", 900)],
        real_patients=real, real_source="fixture:mimic3-numerics", onset_s=ONSET_S,
    )
    text = json.dumps(report.to_dict(), allow_nan=False)
    again = EvaluationReport.from_dict(json.loads(text))
    assert again == EvaluationReport.from_dict(report.to_dict())
    assert again.to_dict() == report.to_dict()
    # real-data path: the shipped 2 h MIMIC-III excerpt, held piecewise-constant at 1 Hz
    assert report.real is not None
    assert report.real["native_period_s"] == 60.0
    assert 0 < report.real["measured_hours"] <= report.real["hours"]
    assert report.real["hours"] == pytest.approx(rec.vitals.shape[0] / 3600, abs=1e-4)
    assert {r.name for r in report.real_sets} == {s.name for s in report.sets}
    assert all(r.alerts >= 0 and r.hours > 0 for r in report.real_sets)
    md = report.to_markdown()
    for needle in (
        "| set | sensitivity | median / p90 delay (s)", "| (a) fixed limits only |",
        "| (c) 2-of-3 ensemble |", "| (d) ensemble + LSTM early warning |",
        "| score | AUROC |", "| network | int8 | float32 |", "LSTM lead time",
        "Artefact suppression by the LSTM (hold 10 s", "piecewise-constant at 1 Hz",
        "UPPER BOUNDS", "| (a') fixed limits + LSTM artefact gate |",
        "2 patients, 0.5 h, 1 injected events",
    ):
        assert needle in md, needle


def test_held_out_split_is_refused_for_a_bundle_without_one(bundle: Path) -> None:
    with pytest.raises(ValueError, match="test split"):
        held_out_patients(bundle, None)


def test_cli_evaluate_writes_json_and_markdown(bundle: Path, tmp_path: Path) -> None:
    out, md = tmp_path / "report.json", tmp_path / "report.md"
    code = main([
        "evaluate", str(bundle), "--patients", "1", "--hours", "0.2", "--seed", "7",
        "--out", str(out), "--markdown", str(md),
    ])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["synthetic"]["patients"] == 1
    assert "seed 7" in data["synthetic"]["what"]
    assert data["real"]["source"] == "fixture:mimic3-numerics"
    assert "| set | sensitivity" in md.read_text()


def test_weak_zscore_labels_are_tuned_on_training_patients_and_reported(bundle: Path) -> None:
    from training.calibration import calibrate  # noqa: PLC0415
    from training.synth import synth_cohort  # noqa: PLC0415

    rec = load_recording("fixture:mimic3-numerics")
    calib = calibrate([PatientVitals("mimic3:s00001", rec.name, rec.vitals, 60.0)])
    cohort = synth_cohort(4, 1.0, calib, seed=7, event_free_fraction=0.0, events_per_hour=2.0)
    train, test = cohort[:3], cohort[3:]
    report = evaluate(bundle, cohort=test, weak_label_train=train, onset_s=ONSET_S)
    w = report.weak_labels
    assert w is not None
    assert w["tuned_on"].startswith("3 training patients")
    assert 2.0 <= w["threshold"] <= 10.0
    assert {"any"} <= set(w["zscore"])
    assert set(w["learned_any"]) == {
        "zscore weak labels", "2-of-3 ensemble vote", "risk model", "forecaster p_event"
    }
    for figures in w["learned_any"].values():
        assert figures["flag_rate"] is not None
        assert 0.0 <= figures["flag_rate"] <= 1.0
    again = EvaluationReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again.to_dict() == report.to_dict()
    assert "Weak labels of the original design" in report.to_markdown()
    with pytest.raises(ValueError, match="both train and test"):
        evaluate(bundle, cohort=test, weak_label_train=cohort, onset_s=ONSET_S)
