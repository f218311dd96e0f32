"""The trio side of the hand-off: park a task, wake it from any thread."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

import trio

from .._hub import Call, CallExecutor

if TYPE_CHECKING:
    from .._limit import Grant, Limiter

__all__ = ["TrioInbox"]

_Abort = trio.lowlevel.Abort
_reschedule = trio.lowlevel.reschedule
_current_task = trio.lowlevel.current_task
_wait_task_rescheduled = trio.lowlevel.wait_task_rescheduled


async def _wait_then_cancel(call: Call, abort: Callable[[Callable[[], NoReturn]], trio.lowlevel.Abort]) -> None:
    """abandon_on_cancel=False: after waiting out the worker, deliver the cancellation.

    As on asyncio, a call whose caller was cancelled ends in the cancellation
    (so ``timeout=`` raises TimeoutError); its result is dropped, an error logged.
    """
    await _wait_task_rescheduled(abort)
    if call.raise_cancel is not None:
        call.lost()
        await trio.lowlevel.checkpoint()


class TrioInbox:
    """Finished calls for one trio run; one wake-up drains however many there are.

    The same coalescing as the asyncio inbox (see there for why no call is left
    behind), with ``TrioToken.run_sync_soon`` as the wake-up. Cancellation is
    decided in the abort callback, which runs on the trio thread like the
    drain, so the two never race.
    """

    __slots__ = ("_items", "_run_sync_soon", "_scheduled", "token")

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self.token = token
        self._items: deque[Any] = deque()
        self._scheduled = False
        self._run_sync_soon = token.run_sync_soon

    def push(self, item: Call | Grant) -> None:
        self._items.append(item)
        if not self._scheduled:
            self._scheduled = True
            try:
                self._run_sync_soon(self._drain)
            except trio.RunFinishedError:  # the run is over: nobody is left to wake
                self._scheduled = False
                items = self._items
                while items:
                    items.popleft().lost()

    def _drain(self) -> None:
        self._scheduled = False
        items = self._items
        popleft = items.popleft
        while items:
            item = popleft()
            if item.abandoned:
                item.lost()
            else:
                task = item.waiter
                item.waiter = None
                _reschedule(task)

    def start(self, call: Call, executor: CallExecutor, abandon_on_cancel: bool) -> Awaitable[object]:
        """Submit ``call`` and return what to await; trio's cancellation is settled in ``abort``."""
        call.waiter = _current_task()
        call.inbox = self
        try:
            executor._submit_call(call)
        except BaseException:
            call.drop()  # gives back a limit slot it may hold
            raise

        def abort(raise_cancel: Callable[[], NoReturn]) -> trio.lowlevel.Abort:
            if executor._drop_call(call):
                call.abandoned = True
                return _Abort.SUCCEEDED
            call.raise_cancel = raise_cancel
            nested = call.nested
            if nested is not None:
                nested.cancel()  # the coroutine the worker is waiting on goes too
            if abandon_on_cancel:
                call.abandoned = True
                return _Abort.SUCCEEDED
            return _Abort.FAILED  # the drain reschedules us once the worker is done

        if abandon_on_cancel:
            return _wait_task_rescheduled(abort)
        return _wait_then_cancel(call, abort)

    async def cancelled(
        self, call: Call, executor: CallExecutor, abandon_on_cancel: bool, exc: BaseException
    ) -> NoReturn:
        """Never reached under trio (its Cancelled is no asyncio.CancelledError); re-raises."""
        raise exc

    async def run(self, call: Call, executor: CallExecutor, abandon_on_cancel: bool) -> Any:
        await self.start(call, executor, abandon_on_cancel)
        return call.outcome()

    async def acquire(self, limiter: Limiter, grant: Grant) -> None:
        grant.waiter = _current_task()
        grant.inbox = self
        limiter.enqueue(grant)

        def abort(raise_cancel: Callable[[], NoReturn]) -> trio.lowlevel.Abort:
            limiter.cancel(grant)
            return _Abort.SUCCEEDED

        await _wait_task_rescheduled(abort)
