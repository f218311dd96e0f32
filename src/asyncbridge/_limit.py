"""CapacityLimiter: a limit on concurrent calls shared by every event loop and thread (``async_wrap(limit=...)``).

anyio's ``CapacityLimiter`` belongs to one event loop; a decorated function is
module-level state that several loops in several threads may call at once, so
its limit has to be a thread-safe counter whose waiters are woken through
their own loop's inbox (a :class:`Grant` is a waiter's place in the queue).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ._backends import current_inbox
from ._checks import check_count

__all__ = ["CapacityLimiter", "CapacityLimiterStatistics", "Grant"]


@dataclass(frozen=True)
class CapacityLimiterStatistics:
    """A snapshot of a :class:`CapacityLimiter`, from ``limiter.statistics()``.

    Attributes:
        total_tokens: how many holders it allows at once.
        borrowed_tokens: how many hold a token now (running calls, for ``limit=``).
        tasks_waiting: tasks waiting for a token, on every event loop.

    Example:
        ```python
        from asyncbridge import CapacityLimiter

        limiter = CapacityLimiter(4)
        async with limiter:
            stats = limiter.statistics()
        assert (stats.total_tokens, stats.borrowed_tokens, stats.tasks_waiting) == (4, 1, 0)
        ```
    """

    total_tokens: int
    borrowed_tokens: int
    tasks_waiting: int


class Grant:
    """A task waiting for a token; ``granted`` once ``release`` hands it one.

    A :class:`~asyncbridge._call.QueuedWaiter`: the backend parks the task,
    ``enqueue`` joins the limiter's queue, and the limiter pushes the grant
    into the task's inbox once it has a token.
    """

    __slots__ = ("abandoned", "granted", "inbox", "limiter", "waiter")

    def __init__(self, limiter: CapacityLimiter) -> None:
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
        """The waiter's loop is gone: give back a token it was granted but will never use.

        A waiter that gave up (``abandoned``) has already returned its token.
        """
        self.limiter.reclaim(self)


class CapacityLimiter:
    """At most ``total_tokens`` holders at once, across every event loop and thread; first come, first served.

    What ``async_wrap(limit=N)`` uses, made public so that several functions
    can share one limit and a saturated limit can be seen.

    Unlike ``anyio.CapacityLimiter``, one instance serves tasks on any number
    of event loops (asyncio, uvloop and trio) in any threads at once, and a
    token is not tied to the task that borrowed it. ``async with limiter:``
    holds a token for a block.

    Args:
        total_tokens: how many holders at once; at least 1. Settable later.

    Raises:
        TypeError: ``total_tokens`` is not an int.
        ValueError: ``total_tokens`` is below 1.

    Example:
        ```python
        import anyio
        from asyncbridge import CapacityLimiter, async_wrap

        database = CapacityLimiter(2)  # at most 2 calls at once, shared by both functions


        @async_wrap(limit=database)
        def read_order(order_id: int) -> dict[str, int]:
            return {"id": order_id}


        @async_wrap(limit=database)
        def write_order(order: dict[str, int]) -> None: ...


        async with anyio.create_task_group() as tasks:
            for order_id in range(10):
                tasks.start_soon(read_order, order_id)
                tasks.start_soon(write_order, {"id": order_id})
        print(database.statistics())  # CapacityLimiterStatistics(total_tokens=2, borrowed_tokens=0, ...)

        async with database:  # hold a token for a block
            assert database.available_tokens == 1
        await database.acquire()  # or by hand; release() works from any thread
        database.release()
        ```
    """

    __slots__ = ("__weakref__", "_available", "_handed", "_lock", "_total", "_waiters")

    def __init__(self, total_tokens: int) -> None:
        self._total = check_count(total_tokens, "total_tokens")
        self._available = self._total
        self._lock = threading.Lock()
        self._waiters: deque[Grant] = deque()
        self._handed: set[Grant] = set()  # granted, and their tasks not yet resumed

    def __repr__(self) -> str:
        return f"<CapacityLimiter {self.borrowed_tokens}/{self._total} borrowed, {len(self._waiters)} waiting>"

    @property
    def total_tokens(self) -> int:
        """How many holders at once. Raising it lets waiting tasks proceed at once; lowering it
        lets current holders finish and makes new ones wait until fewer than the new total hold a token."""
        return self._total

    @total_tokens.setter
    def total_tokens(self, value: int) -> None:
        value = check_count(value, "total_tokens")
        with self._lock:
            self._available += value - self._total
            self._total = value
            woken = self._grant_waiters_locked()
        for grant in woken:
            grant.inbox.push(grant)

    @property
    def borrowed_tokens(self) -> int:
        """How many hold a token now."""
        return self._total - self._available

    @property
    def available_tokens(self) -> int:
        """How many more could take a token now without waiting."""
        return max(self._available, 0)

    def statistics(self) -> CapacityLimiterStatistics:
        """Return a snapshot: total tokens, borrowed tokens and tasks waiting."""
        self._reclaim_from_closed_loops()
        with self._lock:
            return CapacityLimiterStatistics(
                total_tokens=self._total,
                borrowed_tokens=self._total - self._available,
                tasks_waiting=len(self._waiters),
            )

    async def acquire(self) -> None:
        """Take a token, waiting (cancellably) for one if none is free.

        Raises:
            RuntimeError: no event loop runs in this thread.
        """
        with self._lock:
            if self._available > 0 and not self._waiters:
                self._available -= 1
                return
        inbox = current_inbox()  # raises outside an event loop, before anything is queued
        self._reclaim_from_closed_loops()
        grant = Grant(self)
        await inbox.acquire(grant)
        with self._lock:
            self._handed.discard(grant)

    def release(self) -> None:
        """Give a token back: to the longest waiter if there is one. From any thread.

        Raises:
            RuntimeError: no token is borrowed.
        """
        with self._lock:
            if self._available >= self._total:
                raise RuntimeError("CapacityLimiter.release() called with no token borrowed")
            self._available += 1
            woken = self._grant_waiters_locked()
        for grant in woken:
            grant.inbox.push(grant)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    # -- the waiters' side (Grant, and the backends through it) ---------------------------

    def _grant_waiters_locked(self) -> list[Grant]:
        """Hand free tokens to the longest waiters; the caller pushes each into its inbox, unlocked."""
        woken: list[Grant] = []
        waiters = self._waiters
        while self._available > 0 and waiters:
            grant = waiters.popleft()
            grant.granted = True
            self._available -= 1
            self._handed.add(grant)
            woken.append(grant)
        return woken

    def enqueue(self, grant: Grant) -> None:
        with self._lock:
            if self._available > 0 and not self._waiters:
                self._available -= 1
                grant.granted = True
                self._handed.add(grant)
            else:
                self._waiters.append(grant)
                return
        grant.inbox.push(grant)

    def cancel(self, grant: Grant) -> None:
        """The waiter of ``grant`` gave up: withdraw it, or return the token it got."""
        with self._lock:
            grant.abandoned = True
            self._handed.discard(grant)
            if not grant.granted:
                self._waiters.remove(grant)
                return
        self.release()

    def reclaim(self, grant: Grant) -> None:
        """Take back the token of a granted waiter whose task will never run (its loop is gone)."""
        with self._lock:
            if not grant.granted or grant.abandoned:
                return
            grant.abandoned = True
            self._handed.discard(grant)
        self.release()

    def _reclaim_from_closed_loops(self) -> None:
        """Tokens handed to tasks on loops closed since (stopped, then closed with the task pending) come back."""
        if not self._handed:
            return
        with self._lock:
            gone = [grant for grant in self._handed if grant.inbox.is_closed()]
        for grant in gone:
            grant.lost()
