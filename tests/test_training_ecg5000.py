"""training.ecg5000: the LOF scorer against sklearn's, the numpy smoothing against scipy's, the
whitened embedding against sklearn's PCA(whiten=True), the cross-validated selection on
synthetic beats, and on the real ECG5000 files that the selection reads the training split only.

Real-data floors: the LOF chosen by the benchmark (sigma 1, 6 whitened components, k 10) fitted
on the 292 training normals scores 0.9957 test AUROC (benchmarks/ecg5000.py); the test asserts
issue 8's 0.995, which leaves only 0.0007 for BLAS and library differences (the whitening axes'
signs do not change distances). Without the division by each axis' standard deviation it
drops below (checked by hand). The earlier raw-beat LOF (sigma 1, k 6) scores 0.9931, asserted
>= 0.99: it fails on a scorer that lost its density normalisation or its smoothing (the
nearest-normal distance 0.9932, IsolationForest 0.949, a plain distance ratio without LOF's
density step about 0.96 in cross-validation).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from _data import shared_data_dir
from scipy.ndimage import gaussian_filter1d
from sklearn.decomposition import PCA
from sklearn.neighbors import LocalOutlierFactor

from training.beat_eval import auroc_auprc
from training.ecg5000 import (
    DEFAULT_CANDIDATES,
    Candidate,
    Embedding,
    LofScorer,
    _auroc_rows,
    cv_folds,
    fit_scorer,
    gaussian_smooth,
    knn_distance,
    paired_bootstrap,
    pairwise_distances,
    select,
    select_ecg5000,
)
from training.ecg_data import Ecg5000, load_ecg5000

RNG = np.random.default_rng(7)


def _beats(n: int, shift: float = 0.0, noise: float = 0.1) -> np.ndarray:
    """Noisy sine beats; ``shift`` bends the second half (an 'abnormal' morphology)."""
    t = np.linspace(0.0, 2 * np.pi, 40)
    base = np.sin(t) + shift * (t > np.pi) * np.sin(2 * t)
    return base + noise * RNG.standard_normal((n, t.size))


@pytest.mark.parametrize("sigma", [0.7, 1.0, 2.5])
def test_smoothing_matches_scipy(sigma: float) -> None:
    x = RNG.standard_normal((3, 50))
    expected = gaussian_filter1d(x, sigma, axis=1, mode="nearest", truncate=4.0)
    np.testing.assert_allclose(gaussian_smooth(x, sigma), expected, atol=1e-12)


def test_smoothing_zero_is_identity_and_bad_sigma_refused() -> None:
    x = RNG.standard_normal((2, 9))
    np.testing.assert_array_equal(gaussian_smooth(x, 0.0), x)
    np.testing.assert_allclose(gaussian_smooth(np.full((1, 20), 3.0), 2.0), 3.0)
    with pytest.raises(ValueError, match="sigma"):
        gaussian_smooth(x, -1.0)


@pytest.mark.parametrize("k", [1, 3, 6])
def test_lof_matches_sklearn_novelty_mode(k: int) -> None:
    ref = RNG.standard_normal((60, 8)) * np.linspace(0.5, 2.0, 60)[:, None]
    query = RNG.standard_normal((25, 8)) * 2.0
    sk = LocalOutlierFactor(n_neighbors=k, novelty=True, algorithm="brute").fit(ref)
    np.testing.assert_allclose(LofScorer.fit(ref, 0.0, k).score(query),
                               -sk.score_samples(query), rtol=1e-9)


def test_whitened_embedding_has_unit_covariance_and_matches_sklearn_pca() -> None:
    """The embedded normals are centred with identity covariance; distances between embedded
    beats equal those after sklearn's PCA(whiten=True) (axes' signs may differ)."""
    normals = RNG.standard_normal((80, 30)) @ RNG.standard_normal((30, 30))
    query = RNG.standard_normal((10, 30)) * 3.0
    embed = Embedding.fit(normals, 1.5, 6)
    z = embed(normals)
    assert z.shape == (80, 6)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(6), atol=1e-10)
    pca = PCA(n_components=6, whiten=True, svd_solver="full").fit(gaussian_smooth(normals, 1.5))
    ours = pairwise_distances(embed(query), z)
    theirs = pairwise_distances(pca.transform(gaussian_smooth(query, 1.5)),
                                pca.transform(gaussian_smooth(normals, 1.5)))
    np.testing.assert_allclose(ours, theirs, rtol=1e-8)


def test_whitened_lof_is_sklearn_lof_in_the_whitened_space() -> None:
    normals = RNG.standard_normal((70, 20)) * np.linspace(0.2, 3.0, 20)
    query = RNG.standard_normal((15, 20)) * 2.0
    embed = Embedding.fit(normals, 0.0, 5)
    sk = LocalOutlierFactor(n_neighbors=8, novelty=True, algorithm="brute").fit(embed(normals))
    np.testing.assert_allclose(LofScorer.fit(normals, 0.0, 8, components=5).score(query),
                               -sk.score_samples(embed(query)), rtol=1e-9)
    knn = fit_scorer(Candidate("knn", 0.0, 1, 5), normals).score(query)
    np.testing.assert_allclose(knn, pairwise_distances(embed(query), embed(normals)).min(axis=1))


def test_whitening_refuses_components_beyond_the_normals() -> None:
    assert Embedding.fit(np.zeros((5, 3)), 0.0, 0).basis is None
    with pytest.raises(ValueError, match="components must be"):
        Embedding.fit(RNG.standard_normal((5, 40)), 0.0, 5)
    with pytest.raises(ValueError, match="fewer directions"):
        Embedding.fit(RNG.standard_normal((30, 1)) * RNG.standard_normal((1, 12)), 0.0, 2)
    with pytest.raises(ValueError, match="fewer directions"):
        Embedding.fit(np.ones((30, 12)), 0.0, 1)


def test_lof_judges_distance_against_local_density() -> None:
    """Two grids of normals, one with spacing 0.01 and one with spacing 1: a beat 0.5 off the
    dense grid is an outlier, one in the middle of a cell of the sparse grid is not. The
    nearest-normal distance ranks them the other way round (0.5 < 0.71); LOF does not."""
    grid = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0)), -1).reshape(-1, 2)
    normals = np.vstack([0.01 * grid, 20.0 + grid])
    query = np.array([[0.045, 0.59], [24.5, 24.5]])
    lof = LofScorer.fit(normals, 0.0, 5).score(query)
    assert lof[0] > 10.0
    assert lof[1] < 1.1
    dist = knn_distance(normals, query, 1)
    assert dist[0] < dist[1]


def test_lof_refuses_k_beyond_references() -> None:
    with pytest.raises(ValueError, match="k must be"):
        LofScorer.fit(np.zeros((5, 3)), 0.0, 5)


def test_cv_folds_partition_each_repeat() -> None:
    pairs = list(cv_folds(23, n_folds=5, repeats=2, seed=3))
    assert len(pairs) == 10
    for r in range(2):
        held = np.concatenate([h for _, h in pairs[5 * r : 5 * r + 5]])
        assert sorted(held.tolist()) == list(range(23))
    for ref, held in pairs:
        assert np.intersect1d(ref, held).size == 0
        assert ref.size + held.size == 23


def test_select_scores_every_candidate_and_picks_the_best() -> None:
    x = np.vstack([_beats(60), _beats(30, shift=0.6)])
    abnormal = np.r_[np.zeros(60, bool), np.ones(30, bool)]
    candidates = [Candidate("knn", 0.0, 1), Candidate("lof", 1.0, 5)]
    sel = select(x, abnormal, candidates, n_folds=3, repeats=2)
    assert [r.candidate for r in sel.results] == candidates
    assert all(len(r.fold_auroc) == 6 for r in sel.results)
    assert sel.chosen == max(sel.results, key=lambda r: r.mean).candidate
    assert (sel.n_normals, sel.n_abnormal) == (60, 30)
    assert all(r.mean > 0.9 for r in sel.results)  # the bend is far outside the noise
    tie = select(x, abnormal, [candidates[0], candidates[0]], n_folds=3, repeats=1)
    assert tie.chosen == candidates[0]


def test_select_needs_training_positives_and_matching_labels() -> None:
    x = _beats(20)
    with pytest.raises(ValueError, match="positives"):
        select(x, np.zeros(20, bool))
    with pytest.raises(ValueError, match="labels"):
        select(x, np.zeros(19, bool))


def test_row_auroc_matches_sklearn_with_ties() -> None:
    neg = RNG.standard_normal((3, 50))
    pos = RNG.standard_normal((3, 30)) + 1.0
    pos[0, :5] = neg[0, :5]
    pos[1] = np.round(pos[1])
    neg[1] = np.round(neg[1])
    y = np.r_[np.zeros(50, bool), np.ones(30, bool)]
    for i in range(3):
        expected, _ = auroc_auprc(y, np.r_[neg[i], pos[i]])
        assert _auroc_rows(neg, pos)[i] == pytest.approx(expected, abs=1e-12)


def test_paired_bootstrap_is_zero_for_a_candidate_against_itself_and_signed() -> None:
    x = np.vstack([_beats(40), _beats(20, shift=0.3, noise=0.3)])
    abnormal = np.r_[np.zeros(40, bool), np.ones(20, bool)]
    knn, lof = Candidate("knn", 0.0, 1), Candidate("lof", 0.0, 5)
    same = paired_bootstrap(x, abnormal, knn, knn, n_folds=4, repeats=1, n_boot=50)
    np.testing.assert_allclose(same, 0.0, atol=1e-12)
    ab = paired_bootstrap(x, abnormal, knn, lof, n_folds=4, repeats=1, n_boot=50)
    ba = paired_bootstrap(x, abnormal, lof, knn, n_folds=4, repeats=1, n_boot=50)
    np.testing.assert_allclose(ab, -ba, atol=1e-12)
    sel = select(x, abnormal, [knn, lof], n_folds=4, repeats=1)
    point = sel.result(knn).mean - sel.result(lof).mean
    assert np.min(ab) - 1e-9 <= point <= np.max(ab) + 1e-9


def test_default_grid_has_both_kinds() -> None:
    kinds = {(c.kind, c.components > 0) for c in DEFAULT_CANDIDATES}
    assert kinds == {("knn", False), ("lof", False), ("knn", True), ("lof", True)}
    assert CHOSEN in DEFAULT_CANDIDATES
    assert len(set(DEFAULT_CANDIDATES)) == len(DEFAULT_CANDIDATES)


CHOSEN = Candidate("lof", 1.0, 10, 6)
"""What benchmarks/ecg5000.py's full selection chose (fold AUROC 0.9987)."""
SMALL_GRID = (Candidate("knn", 0.0, 1), Candidate("lof", 1.0, 6), CHOSEN)


@pytest.fixture(scope="module")
def ecg() -> Ecg5000:
    return load_ecg5000(shared_data_dir("ecg5000"))


def test_real_selection_reads_the_training_split_only(ecg: Ecg5000) -> None:
    """Test beats replaced by NaN and test labels scrambled: the selection is unchanged."""
    blind = dataclasses.replace(
        ecg, test_x=np.full_like(ecg.test_x, np.nan), test_y=np.zeros_like(ecg.test_y)
    )
    seen = select_ecg5000(ecg, candidates=SMALL_GRID, repeats=1)
    unseen = select_ecg5000(blind, candidates=SMALL_GRID, repeats=1)
    assert seen == unseen
    assert (seen.n_normals, seen.n_abnormal) == (292, 208)
    assert all(r.mean > 0.98 for r in seen.results)
    assert seen.chosen == CHOSEN  # whitening wins in one repeat too (0.9980 vs <= 0.9968)


@pytest.mark.parametrize(
    ("candidate", "floor"), [(CHOSEN, 0.995), (Candidate("lof", 1.0, 6), 0.99)]
)
def test_real_test_floor(ecg: Ecg5000, candidate: Candidate, floor: float) -> None:
    normals = ecg.train_x[~Ecg5000.abnormal(ecg.train_y)]
    score = fit_scorer(candidate, normals).score(ecg.test_x)
    auroc, _ = auroc_auprc(Ecg5000.abnormal(ecg.test_y), score)
    assert auroc >= floor
