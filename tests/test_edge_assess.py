"""edge.assess and ``vigil-edge assess``: manual vitals scored by the bundle's risk model.

Input validation needs no bundle. The scoring tests use the tiny real bundle of
tests/_vitals_bundle.py (sklearn + Keras int8, ~20 s), built once for the module; its risk
model is small and oddly weighted, so the tests check arithmetic and ordering, not clinical
quality. The device-side check runs the CLI in a process where scikit-learn, TensorFlow and
Keras cannot be imported.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.assess import (
    MG_DL_PER_MMOL_L,
    PLAUSIBLE_RANGES,
    AssessError,
    Assessment,
    ManualVitals,
    assess,
    format_assessment,
    parse_manual,
)
from edge.bedstate import VITAL_FIELDS, BedState
from edge.cli import main
from edge.learned import LearnedDetector
from firmware_bridge.frames import VitalsFrame
from models.bundle import Bundle, load_bundle
from models.features import DEFAULT_FILL_VALUES

REPO = Path(__file__).resolve().parents[1]
DASH = "\u2013"  # between the bounds of a range in messages
VALID = {"hr": "80", "spo2": "97", "rr": "16", "sbp": "120", "dbp": "80", "temp": "37"}
DERANGED = {  # the milestone's example: no DBP, glucose given
    "hr": "128", "spo2": "88", "rr": "26", "sbp": "95", "temp": "38.6", "glucose": "11.2",
}
BEDS = '[[beds]]\nid = "bed1"\nserial = "/dev/null"\n'
NORMAL = {"hr": "72", "spo2": "98", "rr": "14", "sbp": "120", "dbp": "80", "temp": "36.8"}


def _flags(raw: dict[str, str]) -> list[str]:
    out = []
    for key, value in raw.items():
        out += [f"--{key.replace('_', '-')}", value]
    return out


def _with(**changes: str | None) -> dict[str, str]:
    """VALID with fields replaced (None removes one)."""
    raw = {**VALID, **{k: v for k, v in changes.items() if v is not None}}
    for k, v in changes.items():
        if v is None:
            raw.pop(k, None)
    return raw


def _around(name: str, value: float) -> dict[str, str]:
    """A valid set with ``name`` = value, other fields moved so DBP < SBP still holds."""
    key = PLAUSIBLE_RANGES[name].key
    if name == "dbp_mmhg":
        return _with(sbp="300", dbp=repr(value))
    if name == "sbp_mmhg":
        return _with(sbp=repr(value), dbp=None)
    return _with(**{key: repr(value)})


# ------------------------------------------------------------------------------ validation


@pytest.mark.parametrize("name", list(PLAUSIBLE_RANGES))
def test_both_bounds_of_every_range_are_accepted(name: str) -> None:
    spec = PLAUSIBLE_RANGES[name]
    for bound in (spec.low, spec.high):
        assert getattr(parse_manual(_around(name, bound)), name) == bound


@pytest.mark.parametrize("name", list(PLAUSIBLE_RANGES))
def test_just_outside_a_range_is_refused_naming_field_value_and_range(name: str) -> None:
    spec = PLAUSIBLE_RANGES[name]
    for bad in (spec.low - 0.1, spec.high + 0.1):
        with pytest.raises(AssessError) as info:
            parse_manual(_around(name, bad))
        message = str(info.value)
        assert message.startswith(
            f"{spec.flag}: {bad:g} {spec.unit} is outside the plausible range "
            f"{spec.low:g}{DASH}{spec.high:g} {spec.unit}"
        ), message
        assert info.value.flag == spec.flag


@pytest.mark.parametrize("name", list(PLAUSIBLE_RANGES))
@pytest.mark.parametrize("text", ["abc", "", "nan", "inf", "12,5", "88%"])
def test_non_numeric_input_is_refused_naming_field_and_range(name: str, text: str) -> None:
    spec = PLAUSIBLE_RANGES[name]
    with pytest.raises(AssessError) as info:
        parse_manual(_with(**{spec.key: text}))
    assert str(info.value) == (
        f"{spec.flag}: {text!r} is not a number; plausible "
        f"{spec.low:g}{DASH}{spec.high:g} {spec.unit}"
    )


def test_the_brief_example_message() -> None:
    with pytest.raises(AssessError) as info:
        parse_manual(_with(spo2="abc"))
    assert str(info.value) == f"--spo2: 'abc' is not a number; plausible 50{DASH}100 %"


@pytest.mark.parametrize("key", ["hr", "spo2", "rr", "sbp", "temp"])
def test_a_missing_required_vital_is_named(key: str) -> None:
    with pytest.raises(AssessError, match=rf"^--{key}: missing; plausible "):
        parse_manual(_with(**{key: None}))


def test_unknown_field_and_unit_are_refused() -> None:
    with pytest.raises(AssessError, match="unknown field; known: hr, spo2"):
        parse_manual({**VALID, "lactate": "2"})
    with pytest.raises(AssessError, match=r"^--glucose-unit: 'mg' is not a known unit"):
        parse_manual({**VALID, "glucose": "100", "glucose_unit": "mg"})


def test_temperature_in_fahrenheit_and_glucose_in_mg_dl_get_a_hint() -> None:
    with pytest.raises(AssessError, match=r"101 °C .* \(a temperature in °F\? enter °C\)"):
        parse_manual(_with(temp="101"))
    with pytest.raises(AssessError, match=r"add --glucose-unit mg/dL\)$"):
        parse_manual(_with(glucose="180"))


def test_glucose_in_mg_dl_is_converted_and_checked_in_mg_dl() -> None:
    got = parse_manual(_with(glucose="202", glucose_unit="mg/dL"))
    assert got.glucose_mmol_l == pytest.approx(202 / MG_DL_PER_MMOL_L, rel=1e-15)
    assert parse_manual(_with(glucose="11.2", glucose_unit="MMOL/L")).glucose_mmol_l == 11.2
    low, high = 1.0 * MG_DL_PER_MMOL_L, 50.0 * MG_DL_PER_MMOL_L  # 18.016, 900.8
    assert parse_manual(_with(glucose=repr(low), glucose_unit="mg/dL")).glucose_mmol_l == 1.0
    assert parse_manual(_with(glucose=repr(high), glucose_unit="mg/dL")).glucose_mmol_l == 50.0
    for bad in ("18", "901"):
        with pytest.raises(AssessError) as info:
            parse_manual(_with(glucose=bad, glucose_unit="mg/dL"))
        assert str(info.value).startswith(
            f"--glucose: {bad} mg/dL is outside the plausible range 18.016{DASH}900.8 mg/dL"
        )
    with pytest.raises(AssessError) as info:
        parse_manual(_with(glucose="x", glucose_unit="mg/dL"))
    assert str(info.value) == f"--glucose: 'x' is not a number; plausible 18.016{DASH}900.8 mg/dL"


@pytest.mark.parametrize(("sbp", "dbp"), [("120", "120"), ("95", "120")])
def test_dbp_not_below_sbp_is_refused(sbp: str, dbp: str) -> None:
    with pytest.raises(AssessError, match=rf"^--dbp: {dbp} mmHg is not below --sbp {sbp} mmHg"):
        parse_manual(_with(sbp=sbp, dbp=dbp))
    assert parse_manual(_with(sbp="40", dbp="39.9")).dbp_mmhg == 39.9


def test_the_dataclass_validates_itself_and_derives_map() -> None:
    with pytest.raises(AssessError, match=r"^--hr: 400 bpm"):
        ManualVitals(400, 97, 16, 120, 80, 37)
    with pytest.raises(AssessError, match=r"^--dbp: "):
        ManualVitals(80, 97, 16, 120, 130, 37)
    m = ManualVitals(80, 97, 16, 120, 60, 37)
    assert m.map_mmhg == 80.0
    assert np.array_equal(m.vitals_row(), [80, 97, 16, 120, 60, 80, 37])
    row = ManualVitals(80, 97, 16, 120, None, 37).vitals_row()
    assert np.isnan(row[[4, 5]]).all()
    assert np.isfinite(np.delete(row, [4, 5])).all()


# ------------------------------------------------------------------------------- scoring


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert is in vigil[edge]")
    pytest.importorskip("tensorflow", reason="tensorflow-cpu is in vigil[train]")
    pytest.importorskip("sklearn", reason="scikit-learn is in vigil[train]")
    import _vitals_bundle as vb  # noqa: PLC0415 - trains with sklearn + Keras

    return vb.build(tmp_path_factory.mktemp("vitals-bundle"))


@pytest.fixture(scope="module")
def bundle(built: Any) -> Bundle:
    return load_bundle(built.path)


@pytest.fixture(scope="module")
def deranged(bundle: Bundle) -> Assessment:
    return assess(bundle, parse_manual(DERANGED))


@pytest.fixture(scope="module")
def normal(bundle: Bundle) -> Assessment:
    return assess(bundle, parse_manual(NORMAL))


def _logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def test_a_deranged_set_has_a_higher_risk_than_a_normal_one(
    deranged: Assessment, normal: Assessment
) -> None:
    assert deranged.probability > normal.probability
    assert deranged.bundle_version == normal.bundle_version == "test-2026.1"


@pytest.mark.parametrize("which", ["deranged", "normal"])
def test_factors_are_the_models_own_arithmetic(which: str, request: pytest.FixtureRequest) -> None:
    a: Assessment = request.getfixturevalue(which)
    total = a.intercept + math.fsum(f.contribution for f in a.factors)
    assert total == pytest.approx(_logit(a.probability), rel=1e-9, abs=1e-9)
    assert total == pytest.approx(a.logit, rel=1e-12, abs=1e-12)
    assert math.fsum(a.contributions.values()) == pytest.approx(total - a.intercept, abs=1e-9)
    names = [f.name for f in a.factors]
    assert sorted(names) == sorted([*VITAL_FIELDS, "autoencoder.mse", "iforest.score",
                                    "dbscan.ratio"])  # fmt: skip
    sizes = [abs(f.contribution) for f in a.factors]
    assert sizes == sorted(sizes, reverse=True)
    for f in a.factors:
        assert f.direction == ("raises" if f.contribution > 0 else "lowers")
        if f.parts:
            assert math.fsum(f.parts.values()) == pytest.approx(f.contribution, abs=1e-9)


def test_held_steady_parts_are_the_same_offset_for_every_entry(
    deranged: Assessment, normal: Assessment
) -> None:
    steady = {f.name: f.parts["held steady"] for f in normal.factors if f.parts}
    for f in deranged.factors:
        if f.parts:
            assert f.parts["held steady"] == pytest.approx(steady[f.name], abs=1e-12), f.name


def test_the_assessment_is_what_the_running_edge_reports_after_300_steady_seconds(
    bundle: Bundle, normal: Assessment
) -> None:
    learned = LearnedDetector(bundle, ["bed1"])
    bed = BedState("bed1", now=0.0, vitals_history_s=600, waveform_history_s=30)
    row = normal.manual.vitals_row()
    values: dict[str, Any] = {
        n: None if math.isnan(v) else float(v) for n, v in zip(VITAL_FIELDS, row, strict=True)
    }
    frame = VitalsFrame(**values)
    for k in range(int(normal.series_s)):
        bed.apply(frame, float(k))
        learned.update(bed, float(k))
    edge = learned.scores("bed1")
    ours = {**normal.detector_scores, "risk.probability": normal.probability}
    for key, value in ours.items():
        assert edge[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


def test_glucose_is_validated_but_reported_as_unused(
    bundle: Bundle, deranged: Assessment
) -> None:
    without = assess(bundle, parse_manual({k: v for k, v in DERANGED.items() if k != "glucose"}))
    assert without.probability == deranged.probability
    glucose = [n for n in deranged.notes if n.startswith("Glucose")]
    assert len(glucose) == 1
    assert "bundle test-2026.1's risk model does not use glucose" in glucose[0]
    assert "did not count" in glucose[0]
    assert not any(n.startswith("Glucose") for n in without.notes)
    assert deranged.to_dict()["glucose_used"] is False


def test_a_missing_dbp_uses_the_fill_values_and_says_so(deranged: Assessment) -> None:
    by_name = {f.name: f for f in deranged.factors}
    assert by_name["dbp_mmhg"].value == DEFAULT_FILL_VALUES[4]
    assert by_name["map_mmhg"].value == DEFAULT_FILL_VALUES[5]
    assert "not given: fill value" in by_name["dbp_mmhg"].note
    assert any(n.startswith("DBP not given") and "80 and 93 mmHg" in n for n in deranged.notes)
    assert any("held steady" in n for n in deranged.notes)


def test_the_text_report(deranged: Assessment) -> None:
    text = format_assessment(deranged)
    where = "above" if deranged.above_threshold else "not above"
    assert text.startswith(
        f"Risk of deterioration: {deranged.probability:.2f} ({where} this bundle's alert "
        f"threshold {deranged.threshold:.2f}) — bundle test-2026.1\n"
    )
    for shown in ("SpO2 88 % ", "HR 128 bpm ", "Temp 38.6 °C "):
        assert shown in text
    assert "DBP 80 mmHg (not given: fill value)" in text


# ---------------------------------------------------------------------------------- the CLI


def test_cli_prints_the_risk_and_its_factors(
    built: Any, deranged: Assessment, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["assess", "--bundle", str(built.path), *_flags(DERANGED)]) == 0
    out = capsys.readouterr().out
    assert out == format_assessment(deranged)
    assert "risk by" in out
    assert "does not use glucose" in out


def test_cli_json_factors_reproduce_the_logit_of_the_printed_probability(
    built: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(f'{BEDS}[model]\nbundle = "{built.path}"\n')
    argv = ["assess", "--config", str(config), *_flags(NORMAL), "--glucose", "202",
            "--glucose-unit", "mg/dL", "--json"]  # fmt: skip
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    risk = doc["risk"]
    total = risk["intercept"] + math.fsum(f["contribution"] for f in doc["factors"])
    assert total == pytest.approx(_logit(risk["probability"]), rel=1e-9, abs=1e-9)
    assert doc["bundle_version"] == "test-2026.1"
    assert doc["inputs"]["glucose_mmol_l"] == pytest.approx(202 / MG_DL_PER_MMOL_L)
    assert doc["inputs"]["map_mmhg"] == pytest.approx(80 + 40 / 3)
    assert doc["glucose_used"] is False
    assert set(doc["detectors"]) == {"autoencoder", "iforest", "dbscan"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"spo2": "abc"}, f"--spo2: 'abc' is not a number; plausible 50{DASH}100 %"),
        ({"hr": "350"}, f"--hr: 350 bpm is outside the plausible range 20{DASH}300 bpm"),
        ({"dbp": "130"}, "--dbp: 130 mmHg is not below --sbp 120 mmHg"),
        ({"glucose": "1000", "glucose_unit": "mg/dL"}, f"18.016{DASH}900.8 mg/dL"),
    ],
)
def test_cli_bad_input_exits_2_naming_the_field(
    change: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # No bundle needed: input is validated before any bundle is looked for.
    assert main(["assess", "--bundle", "/nonexistent", *_flags({**VALID, **change})]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err


def test_cli_uses_the_shipped_bundle_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["assess", "--json", *_flags(VALID)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bundle_version"].startswith("vitals-default-s0-")
    assert 0.0 <= out["risk"]["probability"] <= 1.0
    assert out["factors"]


def test_cli_without_a_bundle_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(f'{BEDS}[model]\nbundle = ""\n')
    assert main(["assess", "--config", str(config), *_flags(VALID)]) == 1
    assert f"no model bundle: {config} sets" in capsys.readouterr().err
    config.write_text(f'{BEDS}[model]\nbundel = "x"\n')
    assert main(["assess", "--config", str(config), *_flags(VALID)]) == 1
    assert "model.bundel" in capsys.readouterr().err


def test_cli_names_the_reason_a_bundle_is_refused(
    built: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(built.path, tampered)
    (tampered / "risk.npz").write_bytes(b"not a model")
    assert main(["assess", "--bundle", str(tampered), *_flags(VALID)]) == 1
    err = capsys.readouterr().err
    assert f"bundle {tampered} refused: " in err
    assert "risk.npz" in err
    thresholds = {k: v for k, v in built.thresholds.items() if k != "risk.probability"}
    cannot_run = built.variant(tmp_path / "variant", thresholds=thresholds)
    assert main(["assess", "--bundle", str(cannot_run), *_flags(VALID)]) == 1
    assert "thresholds.risk.probability is missing" in capsys.readouterr().err


def test_cli_runs_without_scikit_learn_or_tensorflow(built: Any, deranged: Assessment) -> None:
    argv = ["assess", "--bundle", str(built.path), *_flags(DERANGED), "--json"]
    probe = (
        "import sys\n"
        "for m in ('tensorflow', 'keras', 'tf_keras', 'sklearn'): sys.modules[m] = None\n"
        "from edge.cli import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                         text=True, check=False, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["risk"]["probability"] == pytest.approx(deranged.probability, rel=1e-12)
    bad = subprocess.run([sys.executable, "-c", probe.replace("'128'", "'abc'")], cwd=REPO,
                         capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
    assert bad.returncode == 2
    assert f"--hr: 'abc' is not a number; plausible 20{DASH}300 bpm" in bad.stderr
