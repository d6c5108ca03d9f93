"""Finding, loading, splitting and downloading training data."""

from __future__ import annotations

import http.server
import io
import re
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _data import shared_data_dir

from firmware_bridge.sim import replay
from training.cli import main as train_main
from training.datasets import (
    DatasetError,
    discover,
    fingerprint,
    load_vitals,
    patient_id,
    split_by_patient,
)
from training.fetch import FetchError, fetch

FIXTURE_RECORD = "mitdb_100_60s"


@pytest.mark.parametrize(
    ("record", "folder", "expected"),
    [
        ("s00001-2896-10-10-00-31n", "x", "mimic3:s00001"),
        ("s00001-2896-10-09-01-56", "x", "mimic3:s00001"),
        ("bidmc_03_Signals", "bidmc", "bidmc:03"),
        ("bidmc03", "bidmc", "bidmc:03"),
        ("208", "mitdb", "mitdb:208"),
        ("202", "mitdb", "mitdb:201"),  # same subject as 201
        ("a103l", "challenge", "challenge:a103l"),
    ],
)
def test_patient_identity(record: str, folder: str, expected: str) -> None:
    assert patient_id(record, folder) == expected


def test_split_is_by_patient_deterministic_and_complete() -> None:
    ids = [f"p{i}" for i in range(10)] * 3  # several recordings per patient
    groups = split_by_patient(ids, [0.6, 0.2, 0.2], seed=3)
    assert [len(g) for g in groups] == [6, 2, 2]
    assert sorted(p for g in groups for p in g) == sorted(set(ids))
    assert split_by_patient(list(reversed(ids)), [0.6, 0.2, 0.2], seed=3) == groups
    assert split_by_patient(ids, [0.6, 0.2, 0.2], seed=4) != groups
    assert [len(g) for g in split_by_patient(ids[:3], [0.9, 0.05, 0.05], seed=0)] == [1, 1, 1]


def test_split_refuses_what_cannot_be_split_by_patient() -> None:
    with pytest.raises(DatasetError, match="never by sample"):
        split_by_patient(["a", "a", "b"], [0.5, 0.25, 0.25], seed=0)
    with pytest.raises(DatasetError, match="sum to 1"):
        split_by_patient(["a", "b"], [0.5, 0.6], seed=0)


def test_discover_and_load_the_shipped_fixtures(tmp_path: Path) -> None:
    for name in ("mitdb_100_60s.hea", "mitdb_100_60s.dat", "mitdb_100_60s.atr",
                 "s00001_numerics_2h.hea", "s00001_numerics_2h.dat", "bidmc_01_Numerics.csv"):
        shutil.copy(_fixture_file(name), tmp_path)
    found = {r.path.name: r for r in discover(tmp_path)}
    assert found["mitdb_100_60s"].kind == "waveform"
    assert found["s00001_numerics_2h"].kind == "numerics"
    assert found["bidmc_01_Numerics.csv"].kind == "bidmc_numerics"
    assert {p.suffix for p in found["mitdb_100_60s"].files} == {".hea", ".dat", ".atr"}
    vitals = {v.name: v for v in load_vitals(found.values())}
    numerics = vitals["s00001_numerics_2h"]
    assert numerics.vitals.shape == (7200, 7)
    assert numerics.native_period_s == 60.0
    assert np.nanmax(numerics.vitals[:, 0]) < 200  # heart rate in bpm


def _fixture_file(name: str) -> Path:
    return replay.FIXTURE_DIR / name


def test_discover_groups_the_shared_data_by_patient() -> None:
    root = shared_data_dir()
    found = discover(root)
    patients = {r.patient for r in found}
    assert "mimic3:s00001" in patients
    mimic = [r for r in found if r.patient == "mimic3:s00001"]
    # Two numerics records of one stay; the waveform records beside them are not repeated.
    assert sorted(r.kind for r in mimic) == ["numerics", "numerics"]
    assert not any(r.path.name.endswith("_layout") or re.search(r"_\d{4}$", r.path.name)
                   for r in found)
    in_mitdb = [r for r in found if r.path.parent.name == "mitdb"]
    assert len(in_mitdb) == 26
    assert all(r.patient.startswith("mitdb:") for r in in_mitdb)
    # Record 100 lies among the PhysioNet samples, not in mitdb/: still an MIT-BIH patient.
    assert {r.patient for r in found if r.path.name == "100"} == {"mitdb:100"}


def test_fingerprint_changes_with_any_byte(tmp_path: Path) -> None:
    a, b = tmp_path / "a.dat", tmp_path / "b.dat"
    a.write_bytes(b"\x01\x02")
    b.write_bytes(b"\x03")
    first = fingerprint([a, b])
    assert fingerprint([b, a]) == first
    b.write_bytes(b"\x04")
    assert fingerprint([a, b]) != first


class _PhysioNetMirror(http.server.SimpleHTTPRequestHandler):
    """Serves a PhysioNet-shaped tree with HEAD and single byte ranges, as wfdb requests."""

    served: Counter[str]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def send_head(self):  # type: ignore[no-untyped-def]
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            path = path / "index.html"
        if not path.is_file():
            self.send_error(404)
            return None
        data = path.read_bytes()
        if self.command == "GET":
            self.served[path.name] += 1
        rng = self.headers.get("Range")
        if rng and (m := re.fullmatch(r"bytes=(\d+)-(\d*)", rng)):
            start = int(m.group(1))
            end = int(m.group(2)) + 1 if m.group(2) else len(data)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
            data = data[start:end]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        return io.BytesIO(data)


class _Mirror(str):
    """The mirror's base URL, with a count of GET requests per file name."""

    served: Counter[str]


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[_Mirror]:
    root = tmp_path / "mirror"
    for page in (root / "content" / "mitdb", root / "content" / "mitdb" / "1.0.0"):
        page.mkdir(parents=True)
        (page / "index.html").write_text("<html><p>Version: 1.0.0</p></html>")
    files = root / "files" / "mitdb" / "1.0.0"
    files.mkdir(parents=True)
    for ext in ("hea", "dat", "atr"):
        shutil.copy(_fixture_file(f"{FIXTURE_RECORD}.{ext}"), files)
    (files / "RECORDS").write_text(f"{FIXTURE_RECORD}\n")
    (files / "ANNOTATORS").write_text("atr\treference beat and rhythm annotations\n")

    served: Counter[str] = Counter()

    def handler(*args, **kwargs):  # type: ignore[no-untyped-def]
        h = _PhysioNetMirror.__new__(_PhysioNetMirror)
        h.served = served
        h.__init__(*args, directory=str(root), **kwargs)  # type: ignore[misc]
        return h

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = _Mirror(f"http://127.0.0.1:{server.server_address[1]}")
        url.served = served
        yield url
    finally:
        server.shutdown()
        thread.join(5)


def test_fetch_downloads_a_database_from_a_mirror(tmp_path: Path, mirror: str) -> None:
    dest = tmp_path / "data"
    written = fetch("mitdb", dest, base_url=mirror)
    expected = [f"{FIXTURE_RECORD}.{ext}" for ext in ("atr", "dat", "hea")]
    assert sorted(p.name for p in written) == expected
    for p in written:
        assert p.read_bytes() == _fixture_file(p.name).read_bytes()
    # Run again: complete files are kept, nothing new is written.
    assert fetch("mitdb", dest, base_url=mirror) == []
    # What was downloaded is a dataset at once.
    assert [(r.path.name, r.kind) for r in discover(dest)] == [(FIXTURE_RECORD, "waveform")]


def test_a_signal_file_shared_by_two_leads_is_downloaded_once(
    tmp_path: Path, mirror: _Mirror
) -> None:
    """wfdb lists a two-lead record's .dat twice and downloads on two threads; two downloads of
    one file corrupt it (one appends to the other's partial file). Each file is fetched once."""
    written = fetch("mitdb", tmp_path / "data", base_url=mirror)
    assert mirror.served[f"{FIXTURE_RECORD}.dat"] == 1
    dat = next(p for p in written if p.suffix == ".dat")
    assert dat.read_bytes() == _fixture_file(dat.name).read_bytes()


def test_fetch_errors_are_clear(tmp_path: Path, mirror: str) -> None:
    with pytest.raises(FetchError, match="unknown database 'nope'; known: "):
        fetch("nope", tmp_path)
    with pytest.raises(FetchError, match=r"downloading bidmc from http://127\.0\.0\.1"):
        fetch("bidmc", tmp_path, base_url=mirror)


def test_cli_data_fetch_and_list(
    tmp_path: Path, mirror: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "d"
    assert train_main(["data", "fetch", "mitdb", "--dest", str(dest), "--base-url", mirror]) == 0
    assert train_main(["data", "list", str(dest)]) == 0
    out = capsys.readouterr().out
    assert FIXTURE_RECORD in out
    assert "waveform" in out
    assert train_main(["data", "fetch", "nope", "--dest", str(dest)]) == 2
    assert "unknown database" in capsys.readouterr().err
