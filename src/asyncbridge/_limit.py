"""A capacity limit shared by every event loop and thread: ``async_wrap(limit=N)``.

anyio's ``CapacityLimiter`` belongs to one event loop; a decorated function is
module-level state that several loops in several threads may call at once, so
its limit has to be a plain thread-safe counter with waiters that are woken
through their own loop's inbox.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from ._backends import current_inbox

__all__ = ["Grant", "Limiter"]


class Grant:
    """A task waiting for a slot; ``granted`` once ``release`` hands it one.

    A :class:`~asyncbridge._call.QueuedWaiter`: the backend parks the task,
    ``enqueue`` joins the limiter's queue, and the limiter pushes the grant
    into the task's inbox once it has a slot.
    """

    __slots__ = ("abandoned", "granted", "inbox", "limiter", "waiter")

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter
        self.waiter: Any = None
        self.inbox: Any = None
        self.granted = False
        self.abandoned = False

    def enqueue(self) -> None:
        self.limiter.enqueue(self)

    def withdraw(self) -> None:
        self.limiter.cancel(self)

    def lost(self) -> None:
        """The waiter's loop is gone: give back a slot it was granted but will never use.

        A waiter that gave up (``abandoned``) has already returned its slot.
        """
        if self.granted and not self.abandoned:
            self.abandoned = True
            self.limiter.release()


class Limiter:
    """At most ``total`` holders at once, across threads and event loops; FIFO."""

    __slots__ = ("_available", "_lock", "_waiters", "total")

    def __init__(self, total: int) -> None:
        self.total = total
        self._available = total
        self._lock = threading.Lock()
        self._waiters: deque[Grant] = deque()

    @property
    def borrowed(self) -> int:
        return self.total - self._available

    async def acquire(self) -> None:
        """Take a slot, waiting (cancellably) for one if none is free."""
        with self._lock:
            if self._available and not self._waiters:
                self._available -= 1
                return
        await current_inbox().acquire(Grant(self))

    def enqueue(self, grant: Grant) -> None:
        with self._lock:
            if self._available and not self._waiters:
                self._available -= 1
                grant.granted = True
            else:
                self._waiters.append(grant)
                return
        assert grant.inbox is not None
        grant.inbox.push(grant)

    def cancel(self, grant: Grant) -> None:
        """The waiter of ``grant`` gave up: withdraw it, or return the slot it got."""
        with self._lock:
            grant.abandoned = True
            if not grant.granted:
                self._waiters.remove(grant)
                return
        self.release()

    def release(self) -> None:
        """Give a slot back: to the longest waiter if there is one. Any thread."""
        with self._lock:
            if not self._waiters:
                self._available += 1
                return
            grant = self._waiters.popleft()
            grant.granted = True
        assert grant.inbox is not None
        grant.inbox.push(grant)
