"""The alert journal: what the outbox queued survives a new process, in order; acknowledged
and dropped messages leave it; old ones expire, counted; an unusable directory is named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.events import Priority
from edge.journal import Journal, JournalError
from edge.outbox import Outbox


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def test_what_was_not_acknowledged_comes_back_in_order_after_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    first = Outbox(10, window=2, journal=Journal(tmp_path, max_age_s=3600, clock=clock))
    for n in range(5):
        first.push(Priority.MEDIUM, "vigil/d/alert", f"m{n}".encode(), f"m{n}")
    a = first.next_to_hand()
    assert a is not None
    first.mark_handed(a, 101)
    first.ack(101)  # m0 delivered: gone from disk too
    b = first.next_to_hand()
    assert b is not None
    first.mark_handed(b, 102)  # m1 handed, no PUBACK yet: must survive
    # "kill -9": nothing is closed or flushed; a new process opens the same directory.
    journal = Journal(tmp_path, max_age_s=3600, clock=clock)
    again = Outbox(10, journal=journal)
    assert again.restore() == 4
    assert again.waiting_labels() == ["m1", "m2", "m3", "m4"]
    again.push(Priority.HIGH, "vigil/d/alert", b"new", "new")
    assert again.waiting_labels()[-1] == "new"
    assert len(journal) == 5
    for mid in range(5):
        item = again.next_to_hand()
        assert item is not None
        again.mark_handed(item, mid)
        again.ack(mid)
    assert len(journal) == 0
    assert Outbox(10, journal=Journal(tmp_path, max_age_s=3600, clock=clock)).restore() == 0


def test_a_message_the_bound_drops_leaves_the_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_age_s=3600)
    box = Outbox(2, journal=journal)
    box.push(Priority.LOW, "t", b"low", "low")
    box.push(Priority.HIGH, "t", b"high1", "high1")
    box.push(Priority.HIGH, "t", b"high2", "high2")  # the low one is dropped
    assert box.waiting_labels() == ["high1", "high2"]
    assert [e.label for e in journal.pending()] == ["high1", "high2"]
    assert box.dropped[Priority.LOW] == 1


def test_old_messages_expire_and_are_counted(tmp_path: Path) -> None:
    clock = Clock()
    journal = Journal(tmp_path, max_age_s=600, clock=clock)
    journal.add(Priority.HIGH, "t", b"old", "old")
    clock.t += 500
    journal.add(Priority.HIGH, "t", b"recent", "recent")
    clock.t += 200  # "old" is now 700 s old
    reopened = Journal(tmp_path, max_age_s=600, clock=clock)
    assert [e.label for e in reopened.pending()] == ["recent"]
    assert reopened.expired == 1


def test_an_unusable_state_directory_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    with pytest.raises(JournalError, match="not-a-dir"):
        Journal(blocker / "state", max_age_s=600)
    if os.geteuid() != 0:  # root can write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(JournalError, match="locked"):
            Journal(locked, max_age_s=600)
