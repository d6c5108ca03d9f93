"""Download PhysioNet databases for users who have a network, through wfdb's downloader.

Nothing in Vigil downloads at run time; this is a workstation command a user runs on purpose
(`vigil-train data fetch NAME --dest DIR`). ``base_url`` points wfdb at a mirror instead of
PhysioNet: a hospital's internal copy, or a loopback server in the tests. A mirror serves the
PhysioNet layout: ``<base>/content/<db>/`` (a page naming the ``Version:``), the page
``<base>/content/<db>/<version>/``, and ``<base>/files/<db>/<version>/`` with ``RECORDS`` and
the record files (and HEAD and byte-range requests, which wfdb uses to resume).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = ["DATABASES", "Database", "FetchError", "fetch"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Database:
    """A PhysioNet database Vigil knows how to use."""

    slug: str
    title: str
    annotators: tuple[str, ...]
    use: str


DATABASES: Final = {
    db.slug: db
    for db in (
        Database("mitdb", "MIT-BIH Arrhythmia Database", ("atr",), "ECG beats and rhythms"),
        Database("bidmc", "BIDMC PPG and Respiration Dataset", ("breath",), "ICU vitals"),
        Database("mimic3wdb-matched", "MIMIC-III Waveform Database Matched Subset", (),
                 "bedside numerics and waveforms (large: name --records)"),
        Database("challenge-2015", "PhysioNet/CinC Challenge 2015 (false ICU alarms)", (),
                 "alarm records with expert verdicts"),
    )
}


class FetchError(RuntimeError):
    """A download that could not be done, with the reason (unknown name, network, server)."""


@contextlib.contextmanager
def _mirror(wfdb_download: Any, base_url: str | None) -> Iterator[None]:
    if base_url is None:
        yield
        return
    base = base_url.rstrip("/") + "/"
    saved = (wfdb_download.PN_CONTENT_URL, wfdb_download.config.db_index_url)
    wfdb_download.PN_CONTENT_URL = base + "content/"
    wfdb_download.config.db_index_url = base + "files/"
    try:
        yield
    finally:
        wfdb_download.PN_CONTENT_URL, wfdb_download.config.db_index_url = saved


@contextlib.contextmanager
def _each_file_once(wfdb_download: Any) -> Iterator[None]:
    """Download every file at most once per run.

    ``wfdb.dl_database`` lists a record's signal file once per signal (a two-lead MIT-BIH
    record names its ``.dat`` twice) and downloads the list on two threads. Two threads then
    fetch the same file, and one "resumes" the other's partial file by appending to it: the
    record is silently corrupted (seen here with wfdb 4.3). Not thread-safe across concurrent
    fetches in one process, which the CLI never does.
    """
    original = wfdb_download.dl_pn_file
    seen: set[tuple[str, str]] = set()
    lock = threading.Lock()

    def once(inputs: tuple[Any, ...]) -> Any:
        key = (str(inputs[1]), str(inputs[0]))  # (subdir, file name)
        with lock:
            if key in seen:
                return None
            seen.add(key)
        return original(inputs)

    wfdb_download.dl_pn_file = once
    try:
        yield
    finally:
        wfdb_download.dl_pn_file = original


def fetch(
    name: str,
    dest: str | Path,
    *,
    records: Sequence[str] | None = None,
    base_url: str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Download database ``name`` (or some of its ``records``) into ``dest``; the files written.

    Raises FetchError naming the database and the cause; a partial download can be resumed
    by running the same command again (files already complete are kept unless ``overwrite``).
    """
    db = DATABASES.get(name)
    if db is None:
        known = ", ".join(sorted(DATABASES))
        raise FetchError(f"unknown database {name!r}; known: {known}")
    import wfdb  # noqa: PLC0415 - training extra
    from wfdb.io import download  # noqa: PLC0415

    target = Path(dest)
    target.mkdir(parents=True, exist_ok=True)
    before = {p for p in target.rglob("*") if p.is_file()}
    try:
        with _mirror(download, base_url), _each_file_once(download):
            wfdb.dl_database(
                db.slug,
                str(target),
                records=list(records) if records else "all",
                annotators=list(db.annotators) or None,
                overwrite=overwrite,
            )
    except (OSError, ValueError) as exc:
        where = base_url or "PhysioNet"
        raise FetchError(f"downloading {db.slug} from {where} failed: {exc}") from exc
    written = sorted(p for p in target.rglob("*") if p.is_file() and p not in before)
    _log.info("%s: %d file(s) written to %s", db.slug, len(written), target)
    return written
