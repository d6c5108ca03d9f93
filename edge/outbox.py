"""Bounded, ordered queue of alert messages waiting for the broker's PUBACK.

Sans-I/O: the MQTT adapter pushes every alert message here, asks for the next one to hand to
the client, records the message id the client assigned and reports PUBACKs. A message leaves
the queue only when its PUBACK arrived, never when it was merely written to a socket.

Rules:

1. **Order.** Messages are handed out in the order they were pushed. Only the first ``window``
   not-yet-acknowledged messages are ever in the client's hands; the rest wait here.
2. **Bound.** At most ``capacity`` messages are held (handed + waiting). When a new message
   arrives at a full queue, the victim is the *oldest message of the lowest priority* among the
   waiting ones and the new one (messages already handed to the client cannot be recalled). So a
   flood of low-priority alerts during an outage can never push out a high-priority one, and
   among equals the newest information is kept. Every drop is counted per priority.
3. **Acknowledgement.** ``ack(mid)`` removes the message the client published under ``mid``;
   unknown ids (status messages, duplicates) are ignored.
4. **Journal.** With a `edge.journal.Journal`, every pushed message is written to disk before
   `push` returns, and deleted when acknowledged or dropped; `restore` queues what an earlier
   run left, in its order, ahead of anything new.
"""

from __future__ import annotations

import itertools
import logging
from collections import OrderedDict
from dataclasses import dataclass

from edge.events import Priority
from edge.journal import Journal

__all__ = ["Outbox", "OutboxItem"]

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class OutboxItem:
    """One queued message; ``mid`` is set once it is handed to the MQTT client."""

    order: int
    priority: Priority
    topic: str
    payload: bytes
    label: str
    mid: int | None = None
    journal_id: int | None = None


class Outbox:
    """See the module rules. Not thread-safe: one thread (the runtime loop) owns it."""

    def __init__(
        self, capacity: int, *, window: int = 10, journal: Journal | None = None
    ) -> None:
        if capacity < 1 or window < 1:
            raise ValueError("capacity and window must be >= 1")
        self.journal = journal
        self.capacity = capacity
        self.window = window
        self._items: OrderedDict[int, OutboxItem] = OrderedDict()
        self._by_mid: dict[int, int] = {}
        self._order = itertools.count()
        self.pushed = 0
        self.acked = 0
        self.dropped: dict[Priority, int] = dict.fromkeys(Priority, 0)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def handed(self) -> int:
        """Messages in the MQTT client's hands, not yet acknowledged."""
        return len(self._by_mid)

    @property
    def dropped_total(self) -> int:
        """Messages dropped because the queue was full, all priorities."""
        return sum(self.dropped.values())

    def push(self, priority: Priority, topic: str, payload: bytes, label: str) -> OutboxItem | None:
        """Queue a message; returns the message dropped to make room, if any (maybe this one)."""
        item = OutboxItem(next(self._order), priority, topic, payload, label)
        if self.journal is not None:
            item.journal_id = self.journal.add(priority, topic, payload, label)
        return self._queue(item)

    def restore(self) -> int:
        """Queue the journal's messages from an earlier run (rule 4); how many."""
        if self.journal is None:
            return 0
        entries = self.journal.pending()
        for e in entries:
            item = OutboxItem(next(self._order), e.priority, e.topic, e.payload, e.label)
            item.journal_id = e.id
            self._queue(item)
        if entries:
            _log.info("alert journal: %d message(s) from before the restart queued first",
                      len(entries))
        return len(entries)

    def _forget(self, item: OutboxItem) -> None:
        if self.journal is not None and item.journal_id is not None:
            self.journal.remove(item.journal_id)

    def _queue(self, item: OutboxItem) -> OutboxItem | None:
        self.pushed += 1
        victim: OutboxItem | None = None
        if len(self._items) >= self.capacity:
            waiting = [i for i in self._items.values() if i.mid is None]
            victim = min([*waiting, item], key=lambda i: (i.priority, i.order))
            self.dropped[victim.priority] += 1
            _log.warning(
                "alert queue full (%d): dropped %s %s (%d dropped so far)",
                self.capacity, victim.priority.label, victim.label, self.dropped_total,
            )
            self._forget(victim)
            if victim is item:
                return victim
            del self._items[victim.order]
        self._items[item.order] = item
        return victim

    def next_to_hand(self) -> OutboxItem | None:
        """The oldest waiting message, if the in-flight window has room."""
        if len(self._by_mid) >= self.window:
            return None
        for item in self._items.values():
            if item.mid is None:
                return item
        return None

    def mark_handed(self, item: OutboxItem, mid: int) -> None:
        """Record that the client publishes ``item`` under message id ``mid``."""
        item.mid = mid
        self._by_mid[mid] = item.order

    def ack(self, mid: int) -> OutboxItem | None:
        """PUBACK for ``mid`` arrived: forget the message. None if ``mid`` is not ours."""
        order = self._by_mid.pop(mid, None)
        if order is None:
            return None
        self.acked += 1
        item = self._items.pop(order, None)
        if item is not None:
            self._forget(item)
        return item

    def waiting_labels(self) -> list[str]:
        """Labels of all held messages in order (for logs and tests)."""
        return [i.label for i in self._items.values()]
