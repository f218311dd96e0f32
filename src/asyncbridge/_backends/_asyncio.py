"""The asyncio (and uvloop) side of the hand-off: park a task, wake it from any thread."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any, NoReturn

import anyio

from .._hub import DONE, Call, CallExecutor

if TYPE_CHECKING:
    from .._limit import Grant, Limiter

__all__ = ["AsyncioInbox", "wake_waiter"]


def _raise_cancelled() -> NoReturn:
    raise asyncio.CancelledError


def wake_waiter(item: Call | Grant) -> None:
    """On the loop's thread: resume the task awaiting ``item``, which is finished."""
    fut: asyncio.Future[None] = item.waiter
    if not fut.done():
        fut.set_result(None)
    elif item.abandoned:
        item.lost()
    # else: the waiter was cancelled and is deciding what to do; it reads
    # ``item.state`` itself.


class AsyncioInbox:
    """Finished calls for one asyncio loop; one wake-up drains however many there are.

    ``push`` runs in worker threads. It schedules a drain only when none is
    pending. Without a lock two workers may both schedule one; the second drain
    finds the deque empty, which is harmless. What cannot happen is a call left
    behind: the drain clears ``_scheduled`` *before* it empties the deque, so a
    worker that saw the flag set appended its call before the drain began.
    """

    __slots__ = ("_call_soon_threadsafe", "_create_future", "_items", "_scheduled", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._items: deque[Any] = deque()
        self._scheduled = False
        self._call_soon_threadsafe = loop.call_soon_threadsafe
        self._create_future = loop.create_future

    def push(self, item: Call | Grant) -> None:
        self._items.append(item)
        if not self._scheduled:
            self._scheduled = True
            try:
                self._call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: nobody is left to wake
                self._drain_lost()
        elif self.loop.is_closed():  # a drain was scheduled on a loop that then closed
            self._drain_lost()

    def _drain_lost(self) -> None:
        self._scheduled = False
        items = self._items
        while items:
            items.popleft().lost()

    def _drain(self) -> None:
        self._scheduled = False
        items = self._items
        popleft = items.popleft
        while items:
            wake_waiter(popleft())

    def start(self, call: Call, executor: CallExecutor, abandon_on_cancel: bool) -> asyncio.Future[None]:
        """Submit ``call`` and return the future to await; on cancellation, await ``cancelled``.

        Split from ``run`` so that a wrapper awaits the future itself: one
        coroutine frame less per call on the hot path.
        """
        fut: asyncio.Future[None] = self._create_future()
        call.waiter = fut
        call.inbox = self
        try:
            executor._submit_call(call)
        except BaseException:
            call.drop()  # gives back a limit slot it may hold
            raise
        return fut

    async def cancelled(
        self, call: Call, executor: CallExecutor, abandon_on_cancel: bool, exc: BaseException
    ) -> NoReturn:
        """Handle the awaiting task's cancellation (``exc``), then re-raise it."""
        if call.state != DONE and executor._drop_call(call):
            raise exc  # it never ran (or its worker was killed): nothing to wait for
        call.raise_cancel = _raise_cancelled
        nested = call.nested
        if nested is not None:
            nested.cancel()  # the coroutine the worker is waiting on goes too
        if abandon_on_cancel or call.state == DONE:
            call.abandoned = True
            if call.state == DONE:
                call.lost()
            raise exc
        # abandon_on_cancel=False: wait for the worker, then cancel. Shielded:
        # anyio re-delivers a scope's cancellation every loop iteration, which
        # would spin this loop at full CPU; a native Task.cancel() still lands
        # in the except below.
        with anyio.CancelScope(shield=True):
            while call.state != DONE:
                fut = self._create_future()
                call.waiter = fut
                try:
                    await fut
                except asyncio.CancelledError:
                    continue
        call.lost()  # the caller is cancelled: a result is dropped, an error logged
        raise exc

    async def run(self, call: Call, executor: CallExecutor, abandon_on_cancel: bool) -> Any:
        try:
            await self.start(call, executor, abandon_on_cancel)
        except asyncio.CancelledError as exc:
            await self.cancelled(call, executor, abandon_on_cancel, exc)
        return call.outcome()

    async def acquire(self, limiter: Limiter, grant: Grant) -> None:
        fut = self._create_future()
        grant.waiter = fut
        grant.inbox = self
        limiter.enqueue(grant)
        try:
            await fut
        except asyncio.CancelledError:
            limiter.cancel(grant)
            raise
