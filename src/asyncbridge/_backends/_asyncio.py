"""The asyncio (and uvloop) backend: park a task, wake it from any thread, run sync_wrap coroutines.

Implements :class:`asyncbridge._backends.Inbox` for one asyncio event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import deque
from collections.abc import Callable
from typing import Any, Literal, NoReturn

import anyio

from .._call import DONE, Call, Job, QueuedWaiter, Waiter

__all__ = ["AsyncioInbox", "running_asyncio_loop", "wake_waiter"]

# The running asyncio loop of this thread, or None: asyncio's own C function,
# without the RuntimeError (and its cost) of asyncio.get_running_loop().
running_asyncio_loop: Callable[[], asyncio.AbstractEventLoop | None] = asyncio.events._get_running_loop  # pyright: ignore[reportPrivateUsage]

_EAGER_START = sys.version_info >= (3, 12)


def _raise_cancelled() -> NoReturn:
    raise asyncio.CancelledError


def _wake() -> None:
    """Nothing: a callback whose only job is to wake the loop (see AsyncioInbox._start_job_from_caller)."""


def wake_waiter(item: Waiter) -> None:
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
    reads_fds = True  # see Inbox.add_reader
    backend: Literal["asyncio"] = "asyncio"

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._items: deque[Any] = deque()
        self._scheduled = False
        self._call_soon_threadsafe = loop.call_soon_threadsafe
        self._create_future = loop.create_future

    def push(self, item: Waiter) -> None:
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

    # -- the loop as a place: where code runs -------------------------------------------

    def call_soon_threadsafe(self, fn: Callable[..., object], /, *args: Any) -> None:
        self._call_soon_threadsafe(fn, *args)

    def is_closed(self) -> bool:
        return self.loop.is_closed()

    def is_current(self) -> bool:
        return running_asyncio_loop() is self.loop

    def wake_here(self, item: Waiter) -> None:
        wake_waiter(item)

    def add_reader(self, fd: int, callback: Callable[..., object], /, *args: Any) -> bool:
        try:
            self.loop.add_reader(fd, callback, *args)
        except (NotImplementedError, RuntimeError):  # a loop without add_reader, or closed
            return False
        return True

    def remove_reader(self, fd: int) -> None:
        with contextlib.suppress(Exception):  # a closed loop
            self.loop.remove_reader(fd)

    # -- parking a task until a worker is done ------------------------------------------

    def start(self, call: Call) -> asyncio.Future[None]:
        """Submit ``call`` and return the future to await; on cancellation, await ``cancelled``.

        Split from ``run`` so that a wrapper awaits the future itself: one
        coroutine frame less per call on the hot path.
        """
        fut: asyncio.Future[None] = self._create_future()
        call.waiter = fut
        call.inbox = self
        try:
            call.executor.submit_call(call)
        except BaseException:
            call.drop()  # gives back a limit slot it may hold
            raise
        return fut

    async def cancelled(self, call: Call, exc: BaseException) -> NoReturn:
        """Handle the awaiting task's cancellation (``exc``), then re-raise it."""
        if call.state != DONE and call.executor.drop_call(call):
            raise exc  # it never ran (or its worker was killed): nothing to wait for
        call.raise_cancel = _raise_cancelled
        nested = call.nested
        if nested is not None:
            nested.cancel()  # the coroutine the worker is waiting on goes too
        if call.abandon_on_cancel or call.state == DONE:
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

    async def run(self, call: Call) -> Any:
        try:
            await self.start(call)
        except asyncio.CancelledError as exc:
            await self.cancelled(call, exc)
        return call.outcome()

    async def acquire(self, ticket: QueuedWaiter) -> None:
        fut = self._create_future()
        ticket.waiter = fut
        ticket.inbox = self
        ticket.enqueue()
        try:
            await fut
        except asyncio.CancelledError:
            ticket.withdraw()
            raise

    # -- running a sync_wrap coroutine for a waiting thread -------------------------------

    def start_job(self, job: Job, *, ours: bool = False) -> None:
        loop = self.loop
        try:
            if ours and not _EAGER_START and isinstance(loop, asyncio.BaseEventLoop) and not loop.get_debug():
                self._start_job_from_caller(job, loop)
            else:
                self._call_soon_threadsafe(self._start_job, job)
        except RuntimeError:
            raise RuntimeError("sync_wrap: the event loop that started this worker is closed") from None

    def _start_job(self, job: Job) -> None:
        """On the loop: run the job's body in a new task."""
        if job.cancel_requested:  # cancelled before it started: start nothing
            job.finish_unstarted(asyncio.CancelledError())
            return
        task: asyncio.Task[None]
        if sys.version_info >= (3, 12):
            # Run the first step now rather than on the next loop iteration: a
            # coroutine that does not suspend is done without another round trip.
            task = asyncio.Task(job.body(), loop=self.loop, context=job.ctx, eager_start=True)
        else:
            # create_task copies the current context: inside ctx.run that is ctx.
            task = job.ctx.run(self.loop.create_task, job.body())
        job.set_canceller(task.cancel)
        if job.cancel_requested:
            task.cancel()

    def _start_job_from_caller(self, job: Job, loop: asyncio.BaseEventLoop) -> None:
        """Python < 3.12, our own background loop: create the Task here, then wake the loop.

        Going through ``call_soon_threadsafe(create_task)`` costs a whole loop
        iteration before the coroutine's first step (a quarter of a trivial
        call's time). Creating the Task only appends its first step to the
        loop's ready deque with ``call_soon``: the same append that
        ``call_soon_threadsafe`` does, and safe under the GIL, minus the
        wake-up, which the no-op callback then provides, so both run in the
        loop's next iteration. Only for the stdlib loop that we created
        ourselves, with debug mode off: debug mode checks that ``call_soon``
        comes from the loop's thread; 3.12+ starts the task eagerly instead.
        """
        # The Task copies the current context, which inside ctx.run is ctx.
        task: asyncio.Task[None] = job.ctx.run(asyncio.Task, job.body(), loop=loop)
        job.set_canceller(task.cancel)
        loop.call_soon_threadsafe(_wake)
