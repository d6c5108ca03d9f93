"""MIT-BIH and ECG5000 beat data, patient-wise folds and the beat baselines' metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _data import shared_data_dir

from models.beats import AAMI_CLASSES, RR_FEATURE_NAMES, BeatSpec
from training.beat_eval import (
    MODELS,
    FoldScores,
    evaluate_ecg5000,
    evaluate_folds,
    metrics,
    s_sensitivity_at_ppv,
)
from training.ecg_data import (
    DS1,
    DS2,
    PACED_RECORDS,
    BeatDataset,
    class_counts,
    find_records,
    load_ecg5000,
    load_mitdb,
    load_mitdb_record,
    record_folds,
)

SPEC = BeatSpec()
PRE_RATIO = SPEC.rr_columns.start + RR_FEATURE_NAMES.index("pre_ratio")


def test_record_208_loads_with_its_v_and_f_beats() -> None:
    rec = load_mitdb_record(shared_data_dir("mitdb", "208"))
    assert (rec.lead, rec.fs, rec.patient) == ("MLII", 360.0, "mitdb:208")
    # Reference annotation counts of record 208 (AAMI classes).
    assert rec.counts() == {"N": 1586, "S": 2, "V": 992, "F": 373, "Q": 2}
    assert rec.features.shape == (rec.r_samples.size, SPEC.n_features)
    # Not usable: the first beat (no previous interval), the next two (too few earlier beats
    # for the context scalars of beat spec 3, models/beat_context.py) and the last (no next
    # interval).
    assert rec.usable.sum() == rec.r_samples.size - 4
    assert not np.any(rec.usable[:3])
    assert not rec.usable[-1]
    assert np.all(np.isfinite(rec.features[rec.usable]))
    v = rec.usable & (rec.aami == AAMI_CLASSES.index("V"))
    n = rec.usable & (rec.aami == AAMI_CLASSES.index("N"))
    # PVCs come early: their RR ratio is well below the normal beats'.
    assert np.median(rec.features[v, PRE_RATIO]) < 0.85 * np.median(rec.features[n, PRE_RATIO])
    # and their shape differs from the record's normal beats.
    shape = SPEC.window_columns
    mean_n = rec.features[n, shape].mean(axis=0)
    mean_v = rec.features[v, shape].mean(axis=0)
    assert np.corrcoef(mean_n, mean_v)[0, 1] < 0.8
    # and from the patient's running template, more than the normal beats do (not by far
    # here: 38 % of 208's beats are V, so the template is a mix of both shapes).
    dev_rms = np.sqrt(np.mean(rec.features[:, SPEC.deviation_columns] ** 2, axis=1))
    assert np.median(dev_rms[v]) > 1.2 * np.median(dev_rms[n])


@pytest.mark.parametrize(("record", "lead"), [("114", "MLII"), ("102", "V5"), ("119", "MLII")])
def test_lead_is_mlii_where_the_header_has_it(record: str, lead: str) -> None:
    assert load_mitdb_record(shared_data_dir("mitdb", record)).lead == lead


def test_class_counts_of_the_shared_records_match_ds1() -> None:
    counts = class_counts(shared_data_dir("mitdb"))
    assert sorted(counts) == sorted(set(DS1) | PACED_RECORDS)
    ds1 = {c: sum(counts[r][c] for r in DS1) for c in AAMI_CLASSES}
    # de Chazal et al. 2004, Table I, DS1: S 944, V 3788, F 415, Q 8.
    assert (ds1["S"], ds1["V"], ds1["F"], ds1["Q"]) == (944, 3788, 415, 8)
    assert counts["217"]["Q"] > 1000  # paced


def test_load_mitdb_excludes_paced_records_unless_asked() -> None:
    root = shared_data_dir("mitdb")
    records = load_mitdb(root, ["101", "107"])
    assert [r.record for r in records] == ["101"]
    paced = load_mitdb(root, ["107"], include_paced=True)
    assert paced[0].paced
    assert paced[0].counts()["Q"] > 2000


def test_folds_are_patient_wise_balanced_and_exclude_paced_records() -> None:
    counts = class_counts(shared_data_dir("mitdb"))
    usable = {r: c for r, c in counts.items() if r not in PACED_RECORDS}
    folds = record_folds(usable, 5)
    flat = [r for f in folds for r in f]
    assert len(flat) == len(set(flat)) == len(usable)  # no record in two folds
    assert set(flat) == set(DS1)
    assert not set(flat) & PACED_RECORDS
    assert sorted(len(f) for f in folds) == [4, 4, 4, 5, 5]
    for fold in folds:
        assert sum(counts[r]["S"] for r in fold) >= 100
        assert sum(counts[r]["V"] for r in fold) >= 500
    assert record_folds(usable, 5) == folds  # deterministic


def test_records_of_one_subject_share_a_fold() -> None:
    counts = {str(r): {"N": 100, "S": i % 3, "V": i % 5} for i, r in enumerate(range(200, 212))}
    folds = record_folds(counts, 4)
    (home,) = [f for f in folds if "201" in f]
    assert "202" in home  # 201 and 202 are one patient
    with pytest.raises(ValueError, match="patients"):
        record_folds({"100": {"N": 1}, "101": {"N": 1}}, 3)


def test_find_records_reports_ds1_and_ds2(tmp_path: Path) -> None:
    shared = find_records(shared_data_dir("mitdb"))
    assert shared.ds1_found == DS1
    assert shared.ds1_missing == ()
    assert shared.ds2_found == ()
    assert len(shared.ds2_missing) == len(DS2) == 22
    for name in ("100", "101", "x1"):
        (tmp_path / f"{name}.hea").write_text("", encoding="ascii")
    (tmp_path / "100.atr").write_bytes(b"")
    inv = find_records(tmp_path)
    assert inv.present == ("100", "101", "x1")
    assert inv.annotated == ("100",)
    assert inv.ds2_found == ("100",)
    assert "101" in inv.ds1_missing  # a header without a reference is not enough
    assert "DS2 1/22" in inv.summary()


def test_ecg5000_loads_the_archive_split() -> None:
    ecg = load_ecg5000(shared_data_dir("ecg5000"))
    assert ecg.train_x.shape == (500, 140)
    assert ecg.test_x.shape == (4500, 140)
    assert np.bincount(ecg.train_y).tolist() == [0, 292, 177, 10, 19, 2]
    assert np.bincount(ecg.test_y).tolist() == [0, 2627, 1590, 86, 175, 22]
    assert int(ecg.abnormal(ecg.test_y).sum()) == 4500 - 2627


def test_ecg5000_knn_distance_baseline() -> None:
    result = evaluate_ecg5000(load_ecg5000(shared_data_dir("ecg5000")))
    assert result["knn_dist_k1"]["auroc"] > 0.98
    assert result["knn_dist_k1"]["train_normals"] == 292
    assert result["iforest"]["auroc"] > 0.85


def test_metrics_of_known_scores() -> None:
    n, s, v, f = (AAMI_CLASSES.index(c) for c in "NSVF")
    aami = np.array([n] * 6 + [s] * 2 + [v] * 2 + [f], dtype=np.int8)
    perfect = np.array([0.0] * 6 + [1.0] * 5)
    decision = np.array([n] * 5 + [v] + [s, n] + [v, v] + [f], dtype=np.int8)
    got = metrics(aami, FoldScores(perfect, perfect, perfect, decision))
    assert got["auroc_abnormal"] == 1.0
    assert got["auprc_abnormal"] == 1.0
    assert got["v_se"] == 1.0
    assert got["v_ppv"] == pytest.approx(2 / 3)
    assert got["v_ppv_ec57"] == pytest.approx(2 / 3)  # the false V call is a normal beat
    assert got["s_se"] == 0.5
    # EC57 (bxb): a fusion beat called V is not a false V; a supraventricular one is.
    fused = decision.copy()
    fused[5], fused[10] = n, v  # the N beat's V call moves to the F beat
    ec57 = metrics(aami, FoldScores(perfect, perfect, perfect, fused))
    assert ec57["v_ppv"] == pytest.approx(2 / 3)
    assert ec57["v_ppv_ec57"] == 1.0
    fused[6] = v  # an S beat called V
    assert metrics(aami, FoldScores(perfect, perfect, perfect, fused))["v_ppv_ec57"] == \
        pytest.approx(2 / 3)
    # S score: S beats at 0.9 and 0.5 among 9 others; best Se with +P >= 0.5.
    y = np.array([False] * 9 + [True, True])
    score = np.array([0.1] * 7 + [0.6, 0.95, 0.9, 0.5])
    assert s_sensitivity_at_ppv(y, score) == 1.0  # 2 S in top 4: +P 0.5
    score[[0, 1]] = 0.55
    assert s_sensitivity_at_ppv(y, score) == 0.5  # at Se 1, +P = 2/6
    assert np.isnan(s_sensitivity_at_ppv(np.zeros(3, bool), np.ones(3)))


def test_evaluate_folds_on_separable_synthetic_beats() -> None:
    rng = np.random.default_rng(0)
    rows, labels, recs = [], [], []
    for rec in range(6):
        cls = rng.choice([0, 1, 2], size=300, p=[0.8, 0.1, 0.1])
        x = rng.normal(size=(300, SPEC.n_features))
        x[:, :32] += 2.0 * (cls == 2)[:, None]  # V: shape differs
        x[:, SPEC.rr_columns.start] -= 4.0 * (cls == 1)  # S: early
        rows.append(x)
        labels.append(cls)
        recs.append(np.full(300, f"r{rec}"))
    data = BeatDataset(
        np.concatenate(rows).astype(np.float32),
        np.concatenate(labels).astype(np.int8),
        np.concatenate(recs),
        np.zeros(1800, dtype=np.int64),
    )
    folds = [("r0", "r1"), ("r2", "r3"), ("r4", "r5")]
    result = evaluate_folds(data, folds, n_jobs=1)
    assert len(result["folds"]) == 3
    assert result["pooled"]["counts"]["N"] == int(np.sum(data.aami == 0))
    pooled = result["pooled"]["metrics"]
    assert set(pooled) == set(MODELS)
    assert pooled["lightgbm"]["auroc_abnormal"] > 0.95
    assert pooled["lightgbm"]["v_se"] > 0.9
    assert pooled["knn"]["auroc_v"] > 0.9
    with pytest.raises(ValueError, match="two folds"):
        evaluate_folds(data, [("r0", "r1"), ("r1", "r2")])
