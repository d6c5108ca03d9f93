"""training.beat_bundle and `vigil-train ecg`: a tiny beat model trained on three real MIT-BIH
records, added to the shipped bundle, loaded by the edge exactly as at start-up; thresholds
chosen on validation records; the DS1/DS2 split and its fallback."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from _data import shared_data_dir

pytest.importorskip("tensorflow", reason="tensorflow-cpu is in vigil[train]")

from edge.config import parse_config
from edge.learned import load_learned
from models.beat_classifier import (
    COMPONENT,
    TREES_TWO_LEADS,
    BeatClassifier,
    BeatClassifierError,
)
from models.beats import CONTEXT_FEATURE_NAMES, DEFAULT_SPEC, BeatSpec
from models.bundle import load_bundle, packaged_bundle
from training.beat_bundle import (
    GOLDEN_PER_CLASS,
    BeatModelArtifacts,
    add_beat_model,
    fit_beat_model,
    tune_threshold,
)
from training.ecg_cli import _splits, ecg_main
from training.ecg_data import load_mitdb

RECORDS = ("119", "208", "209")
TINY = {"filters": (8, 16), "kernel_size": 5, "dense": 16, "dropout": 0.0, "batch_size": 256}


@pytest.fixture(scope="module")
def artifacts() -> BeatModelArtifacts:
    records = load_mitdb(shared_data_dir("mitdb"), RECORDS)
    return fit_beat_model(records, seed=0, epochs=2, members=2, **TINY)


def test_threshold_maximises_f1_on_the_grid() -> None:
    p = np.array([0.1, 0.2, 0.35, 0.6, 0.9, 0.95])
    positive = np.array([False, False, True, True, True, False])
    # Every t in (0.2, 0.35] calls 4 beats with 3 right (F1 6/7, the best); ties go to the
    # lowest grid value, 0.25 (more sensitive).
    assert tune_threshold(p, positive) == pytest.approx(0.25)
    assert tune_threshold(p, np.zeros(6, bool)) == 0.5


def test_fitted_beat_model_has_thresholds_golden_rows_and_figures(
    artifacts: BeatModelArtifacts,
) -> None:
    assert set(artifacts.thresholds) == {"beat.v", "beat.s", "beat.f", "beat.novelty_mse",
                                         "beat.s_irregularity"}
    assert all(0.05 <= t <= 0.95 for t in artifacts.thresholds.values())
    assert artifacts.thresholds["beat.s_irregularity"] == 0.08
    assert artifacts.golden_input.shape[1] == DEFAULT_SPEC.network_columns.stop
    assert artifacts.trees is not None
    assert artifacts.trees.n_features == DEFAULT_SPEC.n_features
    assert artifacts.trees_golden_input.shape == (artifacts.golden_input.shape[0],
                                                  DEFAULT_SPEC.n_features)
    # The numpy trees give LightGBM's own probabilities (the golden outputs are LightGBM's).
    np.testing.assert_allclose(artifacts.trees.predict_proba(artifacts.trees_golden_input),
                               artifacts.trees_golden_output, rtol=0, atol=1e-12)
    assert 4 <= artifacts.golden_input.shape[0] <= 4 * GOLDEN_PER_CLASS
    np.testing.assert_allclose(artifacts.golden_output.sum(axis=1), 1.0, atol=0.02)
    assert set(artifacts.metrics["validation_records"]) <= set(RECORDS)
    assert artifacts.training_data["records"] == list(RECORDS)


def test_no_s_call_in_an_irregular_rhythm(artifacts: BeatModelArtifacts, tmp_path: Path) -> None:
    clf = BeatClassifier(DEFAULT_SPEC, artifacts.scaling, artifacts.runner(tmp_path),
                         artifacts.thresholds)
    s_beat = [0.1, 0.8, 0.05, 0.05]  # P(N, S, V, F)
    assert clf.label(s_beat, math.nan, 0.02) == "S"
    assert clf.label(s_beat, math.nan, 0.08) == "N"  # at the threshold: irregular
    assert clf.label(s_beat, math.nan, math.nan) == "S"  # unknown does not hold S back
    assert clf.label([0.1, 0.3, 0.55, 0.05], math.nan, 0.5) == "V"  # V calls stand
    row = artifacts.trees_golden_input[:1].copy()
    col = DEFAULT_SPEC.context_columns.start + CONTEXT_FEATURE_NAMES.index("irregularity30")
    row[0, col] = 0.3
    assert clf.irregularity(row)[0] == 0.3
    assert clf.s_allowed(np.array([0.02, 0.08, np.nan])).tolist() == [True, False, True]
    # The evaluation's S score is the device's: 0 where no S call is allowed.
    rows = np.repeat(row, 2, axis=0)
    rows[1, col] = 0.01
    got = artifacts.on_device(rows).scores.s
    assert got[0] == 0.0
    assert got[1] == artifacts.on_device(rows[1:]).probabilities[0, 1]
    # A bundle without the key calls S whatever the rhythm; a bad value is refused.
    free = {k: v for k, v in artifacts.thresholds.items() if k != "beat.s_irregularity"}
    runner = artifacts.runner(tmp_path)
    assert BeatClassifier(DEFAULT_SPEC, artifacts.scaling, runner, free).label(
        s_beat, math.nan, 0.5) == "S"
    with pytest.raises(BeatClassifierError, match="s_irregularity"):
        BeatClassifier(DEFAULT_SPEC, artifacts.scaling, runner,
                       {**free, "beat.s_irregularity": -1.0})


def test_paced_records_are_refused() -> None:
    with pytest.raises(ValueError, match="paced"):
        fit_beat_model(load_mitdb(shared_data_dir("mitdb"), ["102"], include_paced=True))


def test_the_edge_loads_the_added_beat_model_as_at_start_up(
    artifacts: BeatModelArtifacts, tmp_path: Path
) -> None:
    out = add_beat_model(packaged_bundle(), tmp_path / "b", artifacts, version="v-beats")
    bundle = load_bundle(out)  # hashes and golden vectors through the device's loader
    assert bundle.version == "v-beats"
    assert bundle.manifest.requires["beat_spec_version"] == DEFAULT_SPEC.to_dict()["version"] == 3
    assert bundle.manifest.components["beat_trees"]["kind"] == "gbdt"
    assert bundle.manifest.thresholds["beat.v"] == artifacts.thresholds["beat.v"]
    # The vitals components came along unchanged.
    src = load_bundle(packaged_bundle())
    for name in ("autoencoder", "iforest", "dbscan", "risk", "forecaster"):
        assert bundle.manifest.files[src.manifest.components[name]["file"]] == \
            src.manifest.files[src.manifest.components[name]["file"]]
    config = parse_config({"beds": [{"id": "bed1", "serial": "/dev/null"}],
                           "ecg": {"enabled": True}, "model": {"bundle": str(out)}})
    setup = load_learned(config)
    assert setup.status["state"] == "loaded", setup.status
    assert setup.beats is not None
    assert setup.beats.version == "v-beats"
    got = setup.beats.model.score(artifacts.golden_input)
    np.testing.assert_allclose(got, artifacts.golden_output, atol=1e-6)
    # The edge's probabilities are the mean of the network's and the trees'.
    assert setup.beats.trees is not None
    rows = artifacts.trees_golden_input
    both = setup.beats.probabilities(rows)
    np.testing.assert_allclose(
        both, 0.5 * (got + setup.beats.trees.predict_proba(rows)), atol=1e-6)
    assert setup.beats.novelty is not None
    # Novelty: real beats mostly under the threshold, white noise above it, and a noise
    # "beat" the network calls N or F is classed Q (models/beat_classifier.py).
    t = bundle.manifest.thresholds["beat.novelty_mse"]
    real = setup.beats.novelty_mse(artifacts.golden_input)
    assert np.median(real) < t
    noise = np.random.default_rng(0).normal(size=(20, DEFAULT_SPEC.n_features))
    noise[:, DEFAULT_SPEC.rr_columns] = artifacts.golden_input[0, DEFAULT_SPEC.rr_columns]
    novel = setup.beats.novelty_mse(noise) > t
    assert np.mean(novel) >= 0.8  # a tiny, 2-epoch model
    labels = np.array([setup.beats.classify(row)[0] for row in noise])
    assert set(labels[novel]) <= {"Q", "V", "S"}
    assert "Q" in labels
    with pytest.raises(FileExistsError):
        add_beat_model(packaged_bundle(), out, artifacts)


def _touch(directory: Path, names: list[str]) -> Path:
    directory.mkdir()
    for n in names:
        (directory / f"{n}.hea").write_text("")
        (directory / f"{n}.atr").write_bytes(b"")
    return directory


def test_ds1_to_ds2_when_both_are_there_else_folds(tmp_path: Path) -> None:
    import argparse  # noqa: PLC0415

    both = _touch(tmp_path / "both", ["101", "106", "102", "100", "103"])
    how, splits = _splits(argparse.Namespace(data=str(both), folds=5))
    assert how.startswith("DS1 -> DS2")
    assert splits == [(["101", "106"], ["100", "103"])]  # paced 102 left out
    ds1 = shared_data_dir("mitdb")
    how, splits = _splits(argparse.Namespace(data=str(ds1), folds=5))
    assert how.startswith("DS2 absent: 5 leave-records-out folds over the 22")
    assert len(splits) == 5
    for train, test in splits:
        assert not set(train) & set(test)
        assert len(train) + len(test) == 22


def test_ecg_cli_fit_writes_a_loadable_bundle_and_refuses_bad_input(tmp_path: Path) -> None:
    mitdb = str(shared_data_dir("mitdb"))
    out = tmp_path / "b"
    assert ecg_main(["fit", "--data", mitdb, "--bundle", str(packaged_bundle()), "--out",
                     str(out), "--records", "119", "209", "--epochs", "1", "--members", "2"]) == 0
    assert COMPONENT in load_bundle(out).manifest.components
    assert ecg_main(["fit", "--data", mitdb, "--bundle", str(packaged_bundle()), "--out",
                     str(tmp_path / "c"), "--records", "999"]) == 2
    assert ecg_main(["fit", "--data", mitdb, "--bundle", str(packaged_bundle()), "--out",
                     str(tmp_path / "d"), "--records", "119"]) == 1
    assert not (tmp_path / "c").exists()
    assert not (tmp_path / "d").exists()


def test_a_two_lead_beat_model_reads_the_chest_lead_where_a_beat_has_it(tmp_path: Path) -> None:
    """Rule 9 end to end: records cut with lead II and V1, trees on both leads' rows and on
    lead II's alone, both in the bundle with golden vectors; the edge's classifier uses the
    two-lead trees for a beat with a chest-lead block and the lead II trees without one."""
    spec = BeatSpec(leads=2)
    records = load_mitdb(shared_data_dir("mitdb"), RECORDS, spec=spec)
    assert {r.lead for r in records} == {"MLII+V1"}
    art = fit_beat_model(records, seed=0, epochs=1, members=1, spec=spec, **TINY)
    assert art.trees is not None
    assert art.trees_two_leads is not None
    assert art.trees.n_features == spec.primary_columns.stop
    assert art.trees_two_leads.n_features == spec.n_features
    out = add_beat_model(packaged_bundle(), tmp_path / "b", art, version="v-two")
    bundle = load_bundle(out)  # both trees' golden vectors checked by the device's loader
    assert bundle.manifest.requires["beat_spec_version"] == 4
    assert bundle.manifest.components[TREES_TWO_LEADS]["kind"] == "gbdt"
    config = parse_config({"beds": [{"id": "bed1", "serial": "/dev/null"}],
                           "ecg": {"enabled": True}, "model": {"bundle": str(out)}})
    clf = load_learned(config).beats
    assert clf is not None
    assert clf.spec == spec
    block = spec.second_lead_columns
    assert block is not None
    rows = art.trees_golden_input
    lead_ii = rows.copy()
    lead_ii[1::2, block] = np.nan  # every other beat without its chest lead
    got = clf.tree_probabilities(lead_ii)
    np.testing.assert_array_equal(got[::2], art.trees_two_leads.predict_proba(rows[::2]))
    np.testing.assert_array_equal(
        got[1::2], art.trees.predict_proba(rows[1::2, spec.primary_columns]))
    assert clf.classify(lead_ii[1])[0] in {"N", "S", "V", "F", "Q"}
    with pytest.raises(BeatClassifierError, match=TREES_TWO_LEADS):
        BeatClassifier(DEFAULT_SPEC, art.scaling, art.runner(tmp_path), art.thresholds,
                       trees=art.trees, trees_two_leads=art.trees_two_leads)
