"""What a send still has to deliver: fresh rows in list order, and refused ones back for another try in their time.

A retry waits in here, not in a worker: the worker that was refused goes on with the next message over its
connection while the refused one waits out its delay. A retry whose time has come goes before fresh rows, so
that nobody is left until the end. The queue also knows when a send is over: nothing fresh will come, nothing
waits, and nothing is in flight that could come back.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

POLL = 0.2  # seconds between looks at the stop flag while waiting; a stop also wakes every waiter at once


class WorkQueue(Generic[T]):
    def __init__(self, capacity: int, now: Callable[[], float], stop: threading.Event) -> None:
        self._capacity = capacity  # fresh items held at most: the feeder reads the list no further ahead
        self._now = now
        self._stop = stop
        self._fresh: deque[T] = deque()
        self._later: list[tuple[float, int, T]] = []  # (due, order, item): a heap
        self._order = itertools.count()
        self._closed = False  # no fresh item will come
        self._in_flight = 0  # taken, not yet done nor back
        self._changed = threading.Condition()

    def put(self, item: T, timeout: float) -> bool:
        """Add a fresh item; False if there was no room within `timeout` seconds, or the send stopped."""
        with self._changed:
            room = self._changed.wait_for(lambda: len(self._fresh) < self._capacity or self._stop.is_set(), timeout)
            if not room or self._stop.is_set():
                return False
            self._fresh.append(item)
            self._changed.notify_all()
            return True

    def close(self) -> None:
        """No fresh item will come."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def take(self) -> tuple[T, float] | None:
        """The next item and the time it may go (now, or later for a retry not yet due when nothing else is left);
        None once all is done or the send stopped. Each item taken must be given `done` or `again`."""
        with self._changed:
            while not self._stop.is_set():
                taken = self._pop(early=self._closed and not self._fresh)
                if taken is not None:
                    return taken
                if self._closed and self._in_flight == 0:
                    return None
                self._changed.wait(POLL)
            return None

    def take_now(self) -> tuple[T, float] | None:
        """The next item if one may go now (a retry due, or a fresh one), without waiting; None if none may.

        For a worker that must not wait: one whose connection holds a message until the next one goes."""
        with self._changed:
            return None if self._stop.is_set() else self._pop(early=False)

    def _pop(self, *, early: bool) -> tuple[T, float] | None:
        """A retry that is due (or, `early`, the first retry however far off), else a fresh item; None if neither."""
        if self._later and (self._later[0][0] <= self._now() or early):
            due, _, item = heapq.heappop(self._later)
        elif self._fresh:
            due, item = self._now(), self._fresh.popleft()
            self._changed.notify_all()  # room for the feeder
        else:
            return None
        self._in_flight += 1
        return item, due

    def again(self, item: T, due: float) -> None:
        """A taken item goes back, to be taken again from `due` on."""
        with self._changed:
            heapq.heappush(self._later, (due, next(self._order), item))
            self._in_flight -= 1
            self._changed.notify_all()

    def done(self, item: T) -> None:
        """A taken item is finished with: sent, failed, or left pending for a later run."""
        with self._changed:
            self._in_flight -= 1
            self._changed.notify_all()

    def finished(self) -> bool:
        """Whether nothing is left to take, nor can come back."""
        with self._changed:
            return self._closed and not self._fresh and not self._later and self._in_flight == 0

    def wake(self) -> None:
        """Every waiter looks again now (the send stopped)."""
        with self._changed:
            self._changed.notify_all()
