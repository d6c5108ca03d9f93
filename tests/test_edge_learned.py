"""edge.learned: the vitals bundle scored per bed and per second, next to the fixed limits.

One tiny real bundle (tests/_vitals_bundle.py: simulator patients, sklearn + Keras int8, ~20 s)
is trained once per module. Scenario tests drive `EdgeCore` with a fake clock, one VITALS frame
per simulated second, values rounded to the wire's 0.1 unit, and the configured alarm timing
(onset 5 s), so they see what the runtime would publish. Patients are chosen by seed outside
every set the models were fitted on; the normal patient is one of the held-out patients the
thresholds were calibrated on (at 0.1-0.2 % false rows per detector), since a model trained in
20 s does not generalise to every synthetic patient (see the report on model quality).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is in vigil[edge]")
pytest.importorskip("tensorflow", reason="tensorflow-cpu is in vigil[train]")
pytest.importorskip("sklearn", reason="scikit-learn is in vigil[train]")

import _vitals_bundle as vb

from edge.bedstate import VITAL_FIELDS, BedState
from edge.commands import ManualReading
from edge.config import EdgeConfig, parse_config
from edge.ecg import EcgDetector
from edge.events import AlertEvent, EventType, Priority
from edge.learned import (
    ENSEMBLE,
    LearnedDetector,
    LearnedModelError,
    check_bundle,
    load_learned,
)
from edge.payloads import alert_payload
from edge.runtime import EdgeCore, Runtime
from firmware_bridge.frames import VitalsFrame
from models.bundle import MANIFEST_FILE, BundleError, load_bundle
from models.features import VITAL_NAMES, compute_features

REPO = Path(__file__).resolve().parents[1]
MODEL = f"vitals-bundle/{vb.VERSION}"
NORMAL_SEED = 40  # held out from fitting; one of the threshold-calibration patients
DESAT_SEED, RAMP_SEED = 30, 31  # never seen by any model
LEARNED_KINDS = {"ensemble_anomaly", "risk_high", "early_warning"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> vb.VitalsBundle:
    return vb.build(tmp_path_factory.mktemp("vitals-bundle"))


def _config(bundle: Path | str = "", hold_s: float = 0.0, **alarms: float) -> EdgeConfig:
    return parse_config(
        {
            "beds": [{"id": "bed1", "serial": "/dev/null"}],
            "alarms": {"onset_s": 5.0, "clear_s": 3.0, "stale_s": 3.0, **alarms},
            "model": {"bundle": str(bundle), "artefact_hold_s": hold_s},
        }
    )


def _frame(k: int, row: np.ndarray) -> VitalsFrame:
    pairs = zip(VITAL_FIELDS, row, strict=True)
    values = {n: None if math.isnan(v) else round(float(v), 1) for n, v in pairs}
    return VitalsFrame(seq=k & 0xFFFF, **values)


def _play(core: EdgeCore, vitals: np.ndarray, t0: int = 0) -> list[AlertEvent]:
    """One frame per simulated second, evaluated after each; every alert event, in order."""
    events: list[AlertEvent] = []
    for k, row in enumerate(vitals):
        now = float(t0 + k)
        core.on_frame("bed1", _frame(k, row), now)
        events.extend(core.evaluate(now))
    return events


def _core(bundle: Path, hold_s: float = 0.0) -> tuple[EdgeCore, LearnedDetector]:
    config = _config(bundle, hold_s)
    setup = load_learned(config)
    assert setup.status["state"] == "loaded", setup.status
    learned = setup.detectors[-1]
    assert isinstance(learned, LearnedDetector)
    assert setup.gate is (learned if hold_s > 0 else None)
    return EdgeCore(config, now=0.0, detectors=setup.detectors, gate=setup.gate), learned


def _new(events: list[AlertEvent], kind: str) -> list[AlertEvent]:
    return [e for e in events if e.kind == kind and e.event is EventType.NEW]


# ------------------------------------------------------------------------------ scenarios


def test_manual_readings_fill_vitals_the_monitor_does_not_measure(built: vb.VitalsBundle) -> None:
    """Rule 10: no cuff on the monitor; a typed-in BP and temperature enter the features (and so
    every score), a monitor value still wins, and manual values alone raise nothing."""
    vitals = vb.normal_vitals(NORMAL_SEED, 400)
    cols = [VITAL_NAMES.index(n) for n in ("sbp_mmhg", "dbp_mmhg", "map_mmhg")]
    vitals[:, cols] = np.nan
    fpv = len(vb.SPEC.feature_names()) // len(VITAL_NAMES)
    runs = {}
    for manual in (False, True):
        core, learned = _core(built.path)
        if manual:
            core.command(ManualReading("bed1", {"sbp_mmhg": 78.0, "dbp_mmhg": 39.0,
                                                "temp_c": 39.4, "hr_bpm": 150.0}), 0.0)
        _play(core, vitals)
        features = learned._beds["bed1"].features
        assert features is not None
        runs[manual] = (features.reshape(len(VITAL_NAMES), fpv).copy(),
                        learned.scores("bed1")["risk.probability"])
    (without, p_without), (with_manual, p_with) = runs[False], runs[True]
    sbp, dbp, mbp, hr = (VITAL_NAMES.index(n) for n in ("sbp_mmhg", "dbp_mmhg", "map_mmhg",
                                                         "hr_bpm"))
    assert without[sbp, -1] == 1.0  # missing flag: not measured
    assert (with_manual[sbp, 0], with_manual[dbp, 0], with_manual[sbp, -1]) == (78.0, 39.0, 0.0)
    assert with_manual[mbp, 0] == pytest.approx((78.0 + 2 * 39.0) / 3)
    assert with_manual[hr, 0] == without[hr, 0] == pytest.approx(vitals[-1, hr], abs=0.05)
    assert p_with != p_without
    # Manual values alone: a monitor sending nothing valid raises no learned alert.
    core, _ = _core(built.path)
    core.command(ManualReading("bed1", {"sbp_mmhg": 60.0, "dbp_mmhg": 30.0}), 0.0)
    silent = np.full((200, len(VITAL_NAMES)), np.nan)
    assert [e for e in _play(core, silent) if e.kind in LEARNED_KINDS] == []


def test_normal_stretch_raises_no_learned_alert(built: vb.VitalsBundle) -> None:
    core, learned = _core(built.path)
    events = _play(core, vb.normal_vitals(NORMAL_SEED))
    assert [e for e in events if e.kind in LEARNED_KINDS] == []
    assert [e for e in events if not e.technical] == []
    scores = learned.scores("bed1")
    assert set(scores) == {
        "autoencoder.mse", "iforest.score", "dbscan.ratio", "risk.probability",
        "forecaster.p_event",
    }


def test_desaturation_raises_a_high_ensemble_alert_with_scores_votes_and_vitals(
    built: vb.VitalsBundle,
) -> None:
    core, _ = _core(built.path)
    vitals, _ = vb.with_events(
        vb.normal_vitals(DESAT_SEED), ("desaturation@300+30:240=15",), DESAT_SEED
    )
    events = _play(core, vitals)
    assert [e for e in events if e.kind in LEARNED_KINDS and e.time_s < 300] == []
    (alert,) = _new(events, "ensemble_anomaly")
    assert alert.priority is Priority.HIGH
    assert alert.model == MODEL
    assert set(alert.votes) == set(ENSEMBLE)
    assert sum(alert.votes.values()) >= 2
    assert set(alert.scores) >= {"autoencoder.mse", "iforest.score", "dbscan.ratio"}
    assert alert.values["spo2_pct"] < 97.0
    assert set(alert.values) == set(VITAL_FIELDS)
    # Explained in words (edge/learned.py rule 9): the falling SpO2 leads.
    assert (alert.drivers[0].name, alert.drivers[0].direction) in {
        ("spo2_pct", "low"), ("spo2_pct", "falling")}
    assert alert.explanation.startswith(
        "Unusual combination of vital signs (anomaly detectors agree): SpO2 ")
    for e in events:
        if e.kind in LEARNED_KINDS:
            assert e.drivers, e
            assert all(d.value == e.values[d.name] for d in e.drivers)
    assert alert.thresholds == {
        k: built.thresholds[k] for k in ("autoencoder.mse", "iforest.score", "dbscan.ratio")
    }
    for name, voted in alert.votes.items():
        if voted:
            assert name in alert.message
    wire = json.loads(alert_payload("dev", alert, 1.7e9, 1.7e9))
    assert wire["model"] == MODEL
    assert wire["votes"] == dict(alert.votes)
    assert wire["scores"] == pytest.approx(dict(alert.scores))


def test_a_single_vote_raises_nothing_and_two_votes_do(
    built: vb.VitalsBundle, tmp_path: Path
) -> None:
    never = {"iforest.score": -10.0, "dbscan.ratio": 1e9, "risk.probability": 1.0,
             "forecaster.p_event": 2.0}  # fmt: skip
    one = built.variant(tmp_path / "one", thresholds={**never, "autoencoder.mse": -1.0})
    core, learned = _core(one)
    events = _play(core, vb.normal_vitals(NORMAL_SEED, 120))
    assert [e for e in events if e.kind in LEARNED_KINDS] == []
    assert learned.scores("bed1")["autoencoder.mse"] > -1.0  # it did vote, every second

    two = built.variant(
        tmp_path / "two", thresholds={**never, "autoencoder.mse": -1.0, "dbscan.ratio": -1.0}
    )
    core, _ = _core(two)
    events = _play(core, vb.normal_vitals(NORMAL_SEED, 120))
    (alert,) = _new(events, "ensemble_anomaly")
    assert alert.votes == {"autoencoder": True, "iforest": False, "dbscan": True}
    # Warm-up: the shortest window (30 s) of history, then the onset delay (5 s).
    assert alert.started_s == 29.0
    assert alert.time_s == 34.0


def test_forecaster_warns_before_a_slow_ramp_crosses_the_fixed_limit(
    built: vb.VitalsBundle,
) -> None:
    """With the bundle's own threshold (chosen on normal patients, not tuned for this test)."""
    core, _ = _core(built.path)
    vitals, _ = vb.with_events(
        vb.normal_vitals(RAMP_SEED), ("desaturation@300+200:200=14",), RAMP_SEED
    )
    events = _play(core, vitals)
    (warning,) = _new(events, "early_warning")
    (limit,) = _new(events, "spo2_low")
    assert warning.priority is Priority.MEDIUM
    assert warning.model == MODEL
    assert 300 <= warning.time_s < limit.time_s
    assert warning.scores["forecaster.p_event"] > built.thresholds["forecaster.p_event"]


def _spo2_breach(seed: int, start: int, seconds: int) -> np.ndarray:
    vitals = vb.normal_vitals(seed)
    vitals[start : start + seconds, VITAL_FIELDS.index("spo2_pct")] = 82.0
    return vitals


@pytest.mark.parametrize("seconds", [8, 14])
def test_artefact_gate_holds_back_a_brief_breach_the_trend_does_not_support(
    built: vb.VitalsBundle, seconds: int
) -> None:
    """Longer than the 5 s onset, shorter than onset + 10 s hold: alarms only ungated."""
    vitals = _spo2_breach(NORMAL_SEED, 400, seconds)
    plain, _ = _core(built.path)
    assert len(_new(_play(plain, vitals), "spo2_low")) == 1
    gated, learned = _core(built.path, hold_s=10.0)
    _play(gated, vitals[:400])
    # A normal patient's trend: no event, SpO2 forecast well above the 90 % limit.
    assert learned.artefact_hold("bed1", "spo2_pct", "low", 90.0) == 10.0
    assert learned.artefact_hold("bed1", "spo2_pct", "low", 99.5) == 0.0  # forecast reaches it
    assert _new(_play(gated, vitals[400:], t0=400), "spo2_low") == []


def test_artefact_gate_delays_a_lasting_breach_by_at_most_the_hold(
    built: vb.VitalsBundle,
) -> None:
    vitals = _spo2_breach(NORMAL_SEED, 400, 120)
    (plain,) = _new(_play(_core(built.path)[0], vitals), "spo2_low")
    (gated,) = _new(_play(_core(built.path, hold_s=10.0)[0], vitals), "spo2_low")
    assert plain.time_s == 405.0
    assert plain.time_s < gated.time_s <= plain.time_s + 10.0
    assert gated.started_s == plain.started_s == 400.0


def test_artefact_gate_never_holds_during_warm_up_nor_for_unknown_beds(
    built: vb.VitalsBundle,
) -> None:
    """No forecaster output yet = no trend to disagree with: the limits alarm at onset."""
    vitals = _spo2_breach(NORMAL_SEED, 10, 30)[:120]
    core, learned = _core(built.path, hold_s=10.0)
    (alert,) = _new(_play(core, vitals), "spo2_low")
    assert alert.time_s == 15.0
    assert learned.artefact_hold("no-such-bed", "spo2_pct", "low", 90.0) == 0.0
    with pytest.raises(ValueError, match="artefact_hold_s"):
        LearnedDetector(load_bundle(built.path), ["bed1"], artefact_hold_s=31.0)


def test_risk_model_raises_a_medium_alert(built: vb.VitalsBundle, tmp_path: Path) -> None:
    low = built.variant(tmp_path / "risk", thresholds={**built.thresholds, "risk.probability": 0.0})
    core, _ = _core(low)
    events = _play(core, vb.normal_vitals(NORMAL_SEED, 60))
    (alert,) = _new(events, "risk_high")
    assert (alert.priority, alert.model) == (Priority.MEDIUM, MODEL)
    assert alert.thresholds == {"risk.probability": 0.0}


def test_stale_or_invalid_vitals_raise_no_learned_detection(
    built: vb.VitalsBundle, tmp_path: Path
) -> None:
    always = built.variant(tmp_path / "always", thresholds={**built.thresholds,
                           "autoencoder.mse": -1.0, "dbscan.ratio": -1.0})  # fmt: skip
    learned = LearnedDetector(load_bundle(always), ["bed1"], stale_s=3.0)
    bed = BedState("bed1", now=0.0, vitals_history_s=600, waveform_history_s=30)
    rows = vb.normal_vitals(NORMAL_SEED, 40)
    for k, row in enumerate(rows):
        bed.apply(_frame(k, row), float(k))
        learned.update(bed, float(k))
    assert [d.kind for d in learned.update(bed, 39.0)] == ["ensemble_anomaly"]
    assert learned.update(bed, 39.0 + 3.5) == []  # newest sample older than stale_s
    bed.apply(VitalsFrame(seq=99), 43.0)  # nothing valid in it
    assert learned.update(bed, 43.0) == []


# ------------------------------------------------------------------- per-second feeding


def test_one_feature_row_per_sample_and_nan_rows_for_gaps(built: vb.VitalsBundle) -> None:
    learned = LearnedDetector(load_bundle(built.path), ["bed1"])
    bed = BedState("bed1", now=0.0, vitals_history_s=600, waveform_history_s=30)
    rows = vb.normal_vitals(NORMAL_SEED, 120)
    times = [*range(50), *range(60, 120)]  # no frames for t = 50..59
    sent = []
    for k, t in enumerate(times):
        frame = _frame(k, rows[k])
        bed.apply(frame, float(t))
        sent.append([getattr(frame, n) for n in VITAL_FIELDS])
        for _ in range(2 if k % 7 == 0 else 1):  # repeated calls feed nothing new
            learned.update(bed, float(t))
    x = np.array([[np.nan if v is None else v for v in r] for r in sent], dtype=np.float64)
    expected = np.vstack([x[:50], np.full((10, 7), np.nan), x[50:]])  # 10 missing seconds
    want = compute_features(expected, learned._plan.spec)[-1]
    st = learned._beds["bed1"]
    assert st.features is not None
    np.testing.assert_array_equal(st.features, want)
    assert st.history == len(times)


def test_the_zero_copy_path_scores_like_the_components_reference(built: vb.VitalsBundle) -> None:
    learned = LearnedDetector(load_bundle(built.path), ["bed1"])
    bed = BedState("bed1", now=0.0, vitals_history_s=600, waveform_history_s=30)
    vitals, _ = vb.with_events(vb.normal_vitals(DESAT_SEED, 400), ("desaturation@300+30:60",), 1)
    for k, row in enumerate(vitals):
        bed.apply(_frame(k, row), float(k))
        learned.update(bed, float(k))
        if k in (40, 200, 330, 399):
            got, want = learned.scores("bed1"), learned.reference_scores("bed1")
            assert set(got) == set(want)
            for key in got:
                assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-9), key


def test_a_tick_allocates_nothing_beyond_a_few_small_objects(built: vb.VitalsBundle) -> None:
    learned = LearnedDetector(load_bundle(built.path), ["bed1"])
    bed = BedState("bed1", now=0.0, vitals_history_s=600, waveform_history_s=30)
    rows = np.vstack([vb.normal_vitals(NORMAL_SEED), vb.normal_vitals(NORMAL_SEED + 1)])
    frames = [_frame(k, r) for k, r in enumerate(rows)]
    for k in range(100):  # past both warm-ups: every component runs on every tick
        bed.apply(frames[k], float(k))
        learned.update(bed, float(k))
    assert "forecaster.p_event" in learned.scores("bed1")
    tracemalloc.start()
    try:
        # Past the longest feature window (300 s): numpy fills small internal caches once.
        for k in range(100, 400):
            bed.apply(frames[k], float(k))
            learned.update(bed, float(k))
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        for k in range(400, 1200):
            bed.apply(frames[k], float(k))  # the bed's own ring write (not the detector's)
            learned.update(bed, float(k))
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current - base < 512
    # The forecaster window alone is 560 bytes of float32 and the features 672 of float64;
    # no array of either size (nor any per-tick array) may be created.
    assert peak - base < 4096


# --------------------------------------------------------------------------- refusals


def _tamper(path: Path, edit: Any) -> None:
    raw = json.loads((path / MANIFEST_FILE).read_text())
    edit(raw)
    (path / MANIFEST_FILE).write_text(json.dumps(raw))


class _FakeReader:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from firmware_bridge.codec import DecoderStats  # noqa: PLC0415

        self.stats = DecoderStats()
        self.connected = True

    def start(self) -> None: ...

    def stop(self, timeout: float = 0.0) -> None: ...


def test_tampered_bundle_keeps_fixed_limits_and_raises_model_unavailable(
    built: vb.VitalsBundle, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / "tampered"
    shutil.copytree(built.path, bad)
    _tamper(bad, lambda m: m["thresholds"].update({"autoencoder.mse": 99.0}))
    runtime = Runtime(_config(bad), reader_factory=_FakeReader)
    assert runtime.models is not None
    assert runtime.models.status["state"] == "refused"
    assert "edited after the bundle was written" in runtime.models.status["reason"]
    assert "refused" in caplog.text
    assert not any(isinstance(d, LearnedDetector) for d in runtime.core.detectors)
    status = json.loads(runtime.status())
    assert status["model"]["state"] == "refused"
    vitals = vb.normal_vitals(NORMAL_SEED, 60)
    vitals[20:, 1] = 80.0  # SpO2 far below both fixed limits
    events = _play(runtime.core, vitals)
    (down,) = _new(events, "model_unavailable")
    assert (down.technical, down.priority) == (True, Priority.MEDIUM)
    assert "edited after the bundle was written" in down.message
    (limit,) = _new(events, "spo2_low")
    assert (limit.priority, limit.model) == (Priority.HIGH, "fixed-limits/1")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"feature_spec": {**vb.SPEC.to_dict(), "version": 2}}, "feature_spec.version"),
        ({"requires": {"feature_spec_version": 2}}, "requires.feature_spec_version"),
        ({"extra": {}}, "extra.forecaster is missing"),
        ("window", "component forecaster: input shape"),
        ("scaler", "scaler.mean: must be a list of 3"),
        ("threshold", "thresholds.forecaster.p_event"),
    ],
)
def test_a_verified_bundle_this_edge_cannot_run_is_refused_before_scoring(
    built: vb.VitalsBundle, tmp_path: Path, overrides: Any, message: str
) -> None:
    fields = dict(built.manifest_fields)
    if overrides == "window":
        fc = dict(fields["extra"]["forecaster"], window_steps=vb.WINDOW + 1)
        overrides = {"extra": {"forecaster": fc}}
    elif overrides == "scaler":
        overrides = {"scaler": {**fields["scaler"], "n_features": 3}}
    elif overrides == "threshold":
        overrides = {"thresholds": {k: v for k, v in built.thresholds.items()
                                    if k != "forecaster.p_event"}}  # fmt: skip
    path = built.variant(tmp_path / "variant", **overrides)
    bundle = load_bundle(path)  # a valid bundle container ...
    with pytest.raises(LearnedModelError, match=message):
        LearnedDetector(bundle, ["bed1"])  # ... that this edge refuses to score
    setup = load_learned(_config(path))
    assert setup.status["state"] == "refused"
    assert [d.model for d in setup.detectors] == [
        "board-status/1", "fixed-limits/1", "news2/rcp-2017", "model-loader/1",
    ]


def test_model_unavailable_can_be_switched_off_but_not_the_fixed_limits(tmp_path: Path) -> None:
    config = parse_config({
        "beds": [{"id": "bed1", "serial": "/dev/null"}],
        "technical": {"model_unavailable": "off"},
        "model": {"bundle": str(tmp_path / "nowhere")},
    })  # fmt: skip
    setup = load_learned(config)
    assert setup.status["state"] == "refused"
    assert "no manifest.json" in setup.status["reason"]
    assert [d.model for d in setup.detectors] == [
        "board-status/1", "fixed-limits/1", "news2/rcp-2017"
    ]


def test_no_bundle_configured_means_fixed_limits_only() -> None:
    setup = load_learned(_config(""))
    assert setup.status == {"state": "off"}
    assert [d.model for d in setup.detectors] == [
        "board-status/1", "fixed-limits/1", "news2/rcp-2017"
    ]


def test_model_bundle_config_errors_name_the_key() -> None:
    from edge.config import ConfigError  # noqa: PLC0415

    with pytest.raises(ConfigError, match=r"model\.bundle: expected a string"):
        parse_config({"beds": [{"id": "b", "serial": "/dev/null"}], "model": {"bundle": 3}})
    with pytest.raises(ConfigError, match=r"model\.bundel: unknown key; did you mean 'bundle'"):
        parse_config({"beds": [{"id": "b", "serial": "/dev/null"}], "model": {"bundel": ""}})


# ------------------------------------------------------------------ import boundary


def test_the_scoring_path_runs_without_tensorflow_keras_or_sklearn(built: vb.VitalsBundle) -> None:
    """A fresh process builds the Runtime with the bundle and scores; then checks sys.modules."""
    probe = f"""
import json, math, sys
from edge.config import parse_config
from edge.runtime import Runtime
from firmware_bridge.frames import VitalsFrame
from firmware_bridge.sim import SyntheticPatient, get_profile
from edge.bedstate import VITAL_FIELDS

class Reader:
    def __init__(self, *a, **k):
        from firmware_bridge.codec import DecoderStats
        self.stats, self.connected = DecoderStats(), True
    def start(self): pass
    def stop(self, timeout=0.0): pass

config = parse_config({{"beds": [{{"id": "bed1", "serial": "/dev/null"}}],
                        "model": {{"bundle": {str(built.path)!r}}}}})
runtime = Runtime(config, reader_factory=Reader)
rows = SyntheticPatient(get_profile("adult"), seed=3).readings(90)
for k, row in enumerate(rows):
    pairs = zip(VITAL_FIELDS, row)
    values = {{n: None if math.isnan(v) else float(v) for n, v in pairs}}
    runtime.core.on_frame("bed1", VitalsFrame(seq=k, **values), float(k))
    runtime.core.evaluate(float(k))
learned = runtime.core.detectors[-1]
bad = ("tensorflow", "keras", "tf_keras", "sklearn", "training")
print(json.dumps({{"status": runtime.models.status, "scores": learned.scores("bed1"),
                  "errors": runtime.core.detector_errors,
                  "bad": sorted(m for m in sys.modules if m.split(".")[0] in bad)}}))
"""
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                         text=True, check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["bad"] == []
    assert result["status"]["state"] == "loaded"
    assert result["errors"] == 0
    assert "forecaster.p_event" in result["scores"]


# ------------------------------------------------------------------------- end to end


@pytest.fixture
def e2e() -> Any:
    import test_edge_e2e as e2e_module  # noqa: PLC0415

    return e2e_module


@pytest.mark.slow
def test_vigil_edge_run_with_a_bundle_publishes_learned_alerts(  # noqa: PLR0917 - fixtures
    built: vb.VitalsBundle, tmp_path: Path, mosquitto: Any, device_id: str,
    mqtt_collector: Any, e2e: Any,
) -> None:
    """Real pty, real mosquitto, `python -m edge.cli run` with ``[model] bundle`` set."""
    feeder = e2e.Feeder()
    sub = mqtt_collector(mosquitto, [f"vigil/{device_id}/#"])
    config = e2e._write_config(tmp_path / "edge.toml", mosquitto, device_id, feeder.path)
    config.write_text(config.read_text() + f'\n[model]\nbundle = "{built.path}"\n')
    edge = e2e.EdgeProcess(config)
    try:
        status = sub.wait_for(
            lambda m: m.topic.endswith("/status") and isinstance(m.data, dict)
            and m.data.get("state") == "online", timeout_s=30,
        ).data
        assert status["model"] == {
            "state": "loaded", "version": vb.VERSION, "model": MODEL, "bundle": str(built.path),
            "source": "configured",
        }
        feeder.start()
        feeder.set(spo2_pct=70.0, hr_bpm=150.0, rr_per_min=35.0)
        alert = sub.wait_for(
            lambda m: m.topic.endswith("/alert") and isinstance(m.data, dict)
            and str(m.data.get("model", "")).startswith("vitals-bundle/"), timeout_s=60,
        ).data
        assert alert["model"] == MODEL
        assert alert["kind"] in LEARNED_KINDS
        assert set(alert["scores"]) >= {"autoencoder.mse", "iforest.score", "dbscan.ratio"}
        assert set(alert["votes"]) == set(ENSEMBLE)
        assert alert["values"]["spo2_pct"] == 70.0
        assert edge.stop() == 0
        assert "Traceback" not in edge.log()
    finally:
        edge.stop()
        feeder.close()


def test_forecaster_steps_of_several_seconds_see_every_stride_th_row(
    built: vb.VitalsBundle, tmp_path: Path
) -> None:
    """step_s = 2: the forecaster input is the scaled levels of every 2nd second, newest last."""
    fc = dict(built.manifest_fields["extra"]["forecaster"], step_s=2)
    learned = LearnedDetector(load_bundle(built.variant(tmp_path / "s2", extra={"forecaster": fc})),
                              ["bed1"])
    plan = learned._plan
    assert plan.forecaster.stride == 2
    assert plan.forecaster.span_rows == (vb.WINDOW - 1) * 2 + 1
    bed = BedState("bed1", now=0.0, vitals_history_s=600, waveform_history_s=30)
    rows = vb.normal_vitals(NORMAL_SEED, 90)
    sent = []
    for k, row in enumerate(rows):
        frame = _frame(k, row)
        bed.apply(frame, float(k))
        learned.update(bed, float(k))
        sent.append([np.nan if getattr(frame, n) is None else getattr(frame, n)
                     for n in VITAL_FIELDS])
    features = compute_features(np.array(sent, dtype=np.float64), plan.spec)
    levels = features[:, [plan.spec.feature_names().index(n) for n in VITAL_NAMES]]
    scaled = ((levels - plan.forecaster.vitals_mean) / plan.forecaster.vitals_scale)
    want = scaled[-1 - (vb.WINDOW - 1) * 2 :: 2].astype(np.float32)
    st = learned._beds["bed1"]
    span = plan.forecaster.span_rows
    got = st.ring[st.pos + 1 : st.pos + 1 + span : plan.forecaster.stride]
    np.testing.assert_array_equal(got, want)
    assert "forecaster.p_event" in learned.scores("bed1")


def test_a_forecaster_step_that_is_not_a_whole_number_of_rows_is_refused(
    built: vb.VitalsBundle, tmp_path: Path
) -> None:
    fc = dict(built.manifest_fields["extra"]["forecaster"], step_s=1.5)
    bundle = load_bundle(built.variant(tmp_path / "s15", extra={"forecaster": fc}))
    with pytest.raises(LearnedModelError, match="whole number of rows"):
        LearnedDetector(bundle, ["bed1"])


def _beat_variant(tmp_path: Path, name: str, edit: Callable[[dict[str, Any]], None]) -> Path:
    from _bundles import variant  # noqa: PLC0415

    return variant(tmp_path / name, f"v-{name}", edit=edit)


@pytest.mark.parametrize(
    ("name", "edit", "reason"),
    [
        ("spec", lambda m: m["requires"].update(beat_spec_version=1), "beat_spec_version"),
        ("extra", lambda m: m["extra"].pop("beats"), "extra.beats is missing"),
        ("classes", lambda m: m["extra"]["beats"].update(classes=["N", "V"]), "classes"),
        ("rr", lambda m: m["extra"]["beats"].update(rr_std=[0.0] * 9), "rr_std"),
        ("threshold", lambda m: m["thresholds"].pop("beat.v"), "thresholds.beat.v"),
        ("novelty", lambda m: m["thresholds"].pop("beat.novelty_mse"), "beat.novelty_mse"),
    ],
)
def test_a_bundle_whose_beat_model_cannot_run_is_refused_whole(
    tmp_path: Path, name: str, edit: Callable[[dict[str, Any]], None], reason: str
) -> None:
    """edge/learned.py rule 11: the ECG head never runs a beat model it cannot trust, and the
    refusal names the field (the vitals models of that bundle are not used either)."""
    path = _beat_variant(tmp_path, name, edit)
    config = parse_config({"beds": [{"id": "bed1", "serial": "/dev/null"}],
                           "ecg": {"enabled": True}, "model": {"bundle": str(path)}})
    setup = load_learned(config)
    assert setup.status["state"] == "refused"
    assert reason in setup.status["reason"]
    assert setup.beats is None
    with pytest.raises(BundleError, match=reason.rsplit(".", maxsplit=1)[-1]):
        check_bundle(path)


def test_the_shipped_bundle_gives_the_ecg_head_its_beat_model_and_a_reload_keeps_it() -> None:
    config = parse_config({"beds": [{"id": "bed1", "serial": "/dev/null"}],
                           "ecg": {"enabled": True}, "model": {"bundle": "default"}})
    setup = load_learned(config)
    (ecg,) = [d for d in setup.detectors if isinstance(d, EcgDetector)]
    assert setup.beats is not None
    assert setup.beats.novelty is not None
    assert ecg.classifier is setup.beats
    again = setup.with_defaults(config)
    (ecg2,) = [d for d in again.detectors if isinstance(d, EcgDetector)]
    assert ecg2 is not ecg
    assert ecg2.classifier is setup.beats
