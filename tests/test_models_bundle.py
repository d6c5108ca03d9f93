"""Model bundles: written by training, verified and self-tested before the device uses one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _tflite_builder import dense_float32, dense_int8, int8_reference, quantize_dense

from models.bundle import MANIFEST_FILE, BundleError, content_digest, load_bundle
from training.bundle import ComponentFile, Golden, write_bundle

REPO = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(11)
W = RNG.normal(size=(3, 8)).astype(np.float32)
B = RNG.normal(size=3).astype(np.float32)
X = RNG.uniform(-1, 1, size=(4, 8)).astype(np.float32)
Q = quantize_dense(W, B, (-1.0, 1.0), (-6.0, 6.0))


def _write(tmp_path: Path, name: str = "bundle", **overrides: object) -> Path:
    (tmp_path / "src").mkdir(exist_ok=True)
    f32 = tmp_path / "src" / "dense_f32.tflite"
    i8 = tmp_path / "src" / "dense_i8.tflite"
    f32.write_bytes(dense_float32(W, B, batch=4))
    i8.write_bytes(dense_int8(Q, batch=4))
    kwargs: dict[str, object] = {
        "bundle_version": "2026.11.24-test",
        "components": {
            "reference": ComponentFile("tflite", f32, "reference.tflite"),
            "detector": ComponentFile("tflite", i8, "detector.tflite"),
        },
        "golden": {
            "reference": Golden(X, X @ W.T + B, atol=1e-5),
            "detector": Golden(X, int8_reference(Q, X), atol=0.0),
        },
        "thresholds": {"detector.mse": 0.25},
        "scaler": {"mean": [0.0] * 8, "std": [1.0] * 8},
        "training_data": {"fingerprint": "ab" * 32, "patients": 3},
        "metrics": {"auroc": 0.97},
    }
    kwargs.update(overrides)
    return write_bundle(tmp_path / name, **kwargs)  # type: ignore[arg-type]


def test_a_written_bundle_loads_and_scores(tmp_path: Path) -> None:
    bundle = load_bundle(_write(tmp_path))
    assert bundle.version == "2026.11.24-test"
    assert bundle.manifest.thresholds == {"detector.mse": 0.25}
    np.testing.assert_allclose(bundle.components["reference"].score(X), X @ W.T + B, atol=1e-5)
    listed = set(bundle.manifest.files)
    assert listed == {"reference.tflite", "detector.tflite", "golden.npz"}


def test_a_bundle_is_never_written_over_another(tmp_path: Path) -> None:
    _write(tmp_path)
    with pytest.raises(FileExistsError):
        _write(tmp_path)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _edit_manifest(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    raw = json.loads((path / MANIFEST_FILE).read_text())
    edit(raw)
    (path / MANIFEST_FILE).write_text(json.dumps(raw))


def test_edited_threshold_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path)
    _edit_manifest(path, lambda m: m["thresholds"].update({"detector.mse": 9.0}))
    with pytest.raises(BundleError, match="edited after the bundle was written"):
        load_bundle(path)


def test_swapped_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path)
    other = dense_float32(W * 2, B, batch=4)
    assert len(other) == (path / "reference.tflite").stat().st_size
    (path / "reference.tflite").write_bytes(other)
    with pytest.raises(BundleError, match=r"reference\.tflite: sha256 differs"):
        load_bundle(path)


def test_truncated_tflite_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path)
    data = (path / "detector.tflite").read_bytes()
    (path / "detector.tflite").write_bytes(data[: len(data) // 2])
    with pytest.raises(BundleError, match=r"detector\.tflite: \d+ bytes, the manifest says"):
        load_bundle(path)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path)
    (path / "golden.npz").unlink()
    with pytest.raises(BundleError, match=r"golden\.npz: listed in the manifest but missing"):
        load_bundle(path)


def test_failing_golden_vectors_are_refused(tmp_path: Path) -> None:
    wrong = Golden(X, X @ W.T + B + 0.01, atol=1e-5)
    path = _write(tmp_path, golden={"reference": wrong,
                                    "detector": Golden(X, int8_reference(Q, X), atol=0.0)})
    with pytest.raises(BundleError, match=r"component reference: golden outputs differ by 0\.01"):
        load_bundle(path)


def test_rehashed_manifest_with_unknown_kind_or_schema_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path)

    def kind(m: dict) -> None:  # type: ignore[type-arg]
        m["components"]["detector"]["kind"] = "xgboost"
        m["content_sha256"] = content_digest(m)

    _edit_manifest(path, kind)
    with pytest.raises(BundleError, match="kind 'xgboost' cannot be loaded here"):
        load_bundle(path)

    def schema(m: dict) -> None:  # type: ignore[type-arg]
        m["schema_version"] = 2
        m["content_sha256"] = content_digest(m)

    _edit_manifest(path, schema)
    with pytest.raises(BundleError, match="schema_version 2 is not supported"):
        load_bundle(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no manifest.json"),
        ("{not json", "not valid JSON"),
        ("[]", "top level must be a JSON object"),
        ('{"schema_version": 1}', "bundle_version is missing"),
    ],
)
def test_broken_manifest_is_refused(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "b"
    path.mkdir()
    if content is not None:
        (path / MANIFEST_FILE).write_text(content)
    with pytest.raises(BundleError, match=message):
        load_bundle(path)


def test_golden_vectors_reproduce_in_a_process_without_tensorflow(tmp_path: Path) -> None:
    path = _write(tmp_path)
    probe = (
        "import sys\n"
        "for m in ('tensorflow', 'keras', 'sklearn'): sys.modules[m] = None\n"
        "from models.bundle import load_bundle\n"
        f"b = load_bundle({str(path)!r})\n"
        "print(b.version, sorted(b.components))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                         text=True, check=False, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2026.11.24-test ['detector', 'reference']"


def test_vigil_train_inspect_prints_a_verified_bundle_and_refuses_a_bad_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.cli import main  # noqa: PLC0415

    path = _write(tmp_path)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "bundle 2026.11.24-test" in out
    assert "component detector" in out
    assert "detector.mse" in out
    (path / "detector.tflite").write_bytes(b"\x00" * 10)
    assert main(["inspect", str(path)]) == 1
    assert "REFUSED" in capsys.readouterr().err


def test_numpy_scorers_reproduce_scikit_learn_through_a_bundle_without_sklearn(
    tmp_path: Path,
) -> None:
    from sklearn.cluster import DBSCAN  # noqa: PLC0415
    from sklearn.ensemble import IsolationForest  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

    from training.export import (  # noqa: PLC0415
        export_dbscan,
        export_isolation_forest,
        export_logistic,
    )

    rng = np.random.default_rng(5)
    train = rng.normal(size=(400, 6))
    labels = (train[:, 0] + 0.5 * train[:, 1] > 0.3).astype(int)
    probe = rng.normal(scale=1.5, size=(50, 6))
    forest = IsolationForest(n_estimators=30, random_state=0).fit(train)
    clusters = DBSCAN(eps=1.6, min_samples=5).fit(train)
    scaler = StandardScaler().fit(train)
    risk = LogisticRegression().fit(scaler.transform(train), labels)
    src = tmp_path / "src"
    src.mkdir()
    export_isolation_forest(forest).save(src / "iforest.npz")
    export_dbscan(clusters, train).save(src / "dbscan.npz")
    export_logistic(scaler, risk).save(src / "risk.npz")
    core = train[clusters.core_sample_indices_]
    nearest = np.sqrt(((probe[:, None, :] - core[None]) ** 2).sum(-1)).min(1)
    path = write_bundle(
        tmp_path / "bundle",
        bundle_version="classical-test",
        components={
            "iforest": ComponentFile("iforest", src / "iforest.npz", "iforest.npz"),
            "dbscan": ComponentFile("dbscan", src / "dbscan.npz", "dbscan.npz"),
            "risk": ComponentFile("logistic", src / "risk.npz", "risk.npz"),
        },
        golden={
            "iforest": Golden(probe, forest.score_samples(probe), atol=1e-9),
            "dbscan": Golden(probe, nearest / 1.6, atol=1e-9),
            "risk": Golden(probe, risk.predict_proba(scaler.transform(probe))[:, 1], atol=1e-12),
        },
    )
    probe_code = (
        "import sys\n"
        "for m in ('tensorflow', 'keras', 'sklearn'): sys.modules[m] = None\n"
        "from models.bundle import load_bundle\n"
        f"b = load_bundle({str(path)!r})\n"
        "print(sorted(b.components))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe_code], cwd=REPO, capture_output=True,
                         text=True, check=False, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['dbscan', 'iforest', 'risk']"


def test_a_written_bundle_is_readable_by_other_users(tmp_path: Path) -> None:
    """The edge service may run as another user than the one who trained."""
    assert _write(tmp_path).stat().st_mode & 0o755 == 0o755
