"""On-disk journal of the alert outbox: no alert lost to a restart, a crash or a power cut.

Why SQLite: one file, atomic transactions, and WAL mode with ``synchronous=FULL`` makes each
committed insert survive a power cut; the Pi has it in the standard library. The outbox
(edge/outbox.py) writes every alert message here when it is queued, before it is handed to MQTT,
and deletes it when the broker acknowledged it (PUBACK). At start-up the runtime loads what is
left, in the original order, ahead of anything new. A message whose PUBACK arrived just before a
crash is sent again: subscribers de-duplicate on ``(id, seq)``, so delivery is at least once.

Policy (bounded, never silent):

- **Age.** Messages older than ``max_age_s`` when the journal is opened are deleted and counted
  (`expired`): a days-old alert would mislead more than it helps.
- **Size.** The outbox's capacity (``mqtt.queue_max``) bounds the journal too: a message the
  outbox drops (oldest of the lowest priority) is deleted here and counted by the outbox.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edge.events import Priority

__all__ = ["Journal", "JournalEntry", "JournalError"]

_log = logging.getLogger(__name__)

FILE_NAME: Final = "outbox.sqlite3"
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    priority INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    label TEXT NOT NULL,
    created REAL NOT NULL
)
"""


class JournalError(OSError):
    """The journal cannot be opened or written; the message names the file."""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One message still waiting for its PUBACK; ``created`` is epoch seconds."""

    id: int
    priority: Priority
    topic: str
    payload: bytes
    label: str
    created: float


class Journal:
    """The outbox's file in ``state_dir`` (created if needed). One thread: the runtime's."""

    def __init__(
        self, state_dir: str | Path, *, max_age_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(state_dir).expanduser() / FILE_NAME
        self._clock = clock
        self._max_age_s = max_age_s
        self.expired = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Opened on the main thread, used by the runtime thread only (never concurrently).
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"alert journal {self.path}: cannot open: {exc}") from exc

    def _run(self, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise JournalError(f"alert journal {self.path}: {exc}") from exc

    def add(self, priority: Priority, topic: str, payload: bytes, label: str) -> int:
        """Store one message (committed before this returns); its journal id."""
        cur = self._run(
            "INSERT INTO outbox (priority, topic, payload, label, created) VALUES (?,?,?,?,?)",
            (int(priority), topic, payload, label, self._clock()),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def remove(self, entry_id: int) -> None:
        """Forget a message (acknowledged, or dropped by the outbox's bound)."""
        self._run("DELETE FROM outbox WHERE id = ?", (entry_id,))

    def pending(self) -> list[JournalEntry]:
        """Messages left from before, oldest first, after deleting the expired ones."""
        cutoff = self._clock() - self._max_age_s
        expired = self._run("DELETE FROM outbox WHERE created < ?", (cutoff,)).rowcount
        if expired:
            self.expired += expired
            _log.warning("alert journal: %d message(s) older than %g s dropped", expired,
                         self._max_age_s)
        rows = self._run(
            "SELECT id, priority, topic, payload, label, created FROM outbox ORDER BY id"
        ).fetchall()
        return [JournalEntry(r[0], Priority(r[1]), r[2], bytes(r[3]), r[4], r[5]) for r in rows]

    def __len__(self) -> int:
        return int(self._run("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        """Close the file (a checkpoint folds the WAL into it)."""
        self._db.close()
