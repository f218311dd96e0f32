"""The trio backend: park a task, wake it from any thread, and the host tasks that run sync_wrap coroutines.

Implements :class:`asyncbridge._backends.Inbox` for one trio run.
"""

from __future__ import annotations

import contextvars
import functools
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Literal, NoReturn

import outcome
import trio

from .._call import Call, Job, QueuedWaiter, Waiter

__all__ = ["TrioInbox"]

_Abort = trio.lowlevel.Abort
_reschedule = trio.lowlevel.reschedule
_current_task = trio.lowlevel.current_task
_wait_task_rescheduled = trio.lowlevel.wait_task_rescheduled
_spawn_system_task = trio.lowlevel.spawn_system_task
_Value = outcome.Value

_MAX_IDLE_HOSTS = 64  # idle host tasks kept per run; more than that exit when done
_IDLE_NAME = "asyncbridge.sync_wrap (idle)"


def run_context_of(token: trio.lowlevel.TrioToken) -> object:
    """trio's per-thread run state, if it is in ``trio._core._run`` (as in trio 0.35) and its run's token is ``token``.

    Reading ``.runner.trio_token`` from it finds the current run's token without
    calling current_trio_token(): see current_inbox. None otherwise, and the
    lookup keeps calling current_trio_token().
    """
    run_context = getattr(getattr(trio, "_core", None), "_run", None)
    run_context = getattr(run_context, "GLOBAL_RUN_CONTEXT", None)
    runner = getattr(run_context, "runner", None)
    if getattr(runner, "trio_token", None) is not token:
        return None
    return run_context


def task_name(fn: object) -> str:
    """The name ``spawn_system_task(fn)`` gives its task: the function's module and qualified name."""
    if isinstance(fn, functools.partial):
        fn = fn.func
    try:
        return f"{fn.__module__}.{fn.__qualname__}"  # type: ignore[attr-defined]
    except AttributeError:
        return repr(fn)


class _Host:
    """A system task that runs sync_wrap coroutines one after another.

    Spawning a task and entering a cancel scope for every call cost more loop
    time than the coroutine of a trivial call: a host is a system task that,
    once its job is done, waits to be rescheduled with the next one, which then
    runs in the job's context under the task's name. Its one cancel scope, for
    its whole life, is what a job's cancellation cancels; a host whose scope
    was cancelled exits after that job instead of taking another.
    """

    __slots__ = ("abort", "idle_context", "inbox", "task")

    def __init__(self, inbox: TrioInbox, task: trio.lowlevel.Task) -> None:
        self.inbox = inbox
        self.task = task
        self.abort = self._abort  # one bound method for every idle wait
        # What the task runs in while idle: nothing of a finished job. Its own:
        # a Context can be entered by one thread at a time, and runs in other
        # threads have hosts too.
        self.idle_context = contextvars.Context()

    def _abort(self, raise_cancel: Callable[[], NoReturn]) -> trio.lowlevel.Abort:
        # Only while idle: the run is ending (the system nursery is cancelled).
        idle = self.inbox.idle_hosts
        if self in idle:
            idle.remove(self)
        return _Abort.SUCCEEDED


async def _host(inbox: TrioInbox, job: Job) -> None:
    task = _current_task()
    host = _Host(inbox, task)
    idle = inbox.idle_hosts
    with trio.CancelScope() as scope:
        while True:
            await _run_job(job, scope)
            if scope.cancel_called or len(idle) >= _MAX_IDLE_HOSTS:
                return
            task.context = host.idle_context  # let go of the job's context
            task.name = _IDLE_NAME
            idle.append(host)
            job = await _wait_task_rescheduled(host.abort)


async def _run_job(job: Job, scope: trio.CancelScope) -> None:
    """Run one job in its host task, whose cancel scope is ``scope``.

    The job's canceller cancels ``scope`` only while its body runs: the host
    goes on to other jobs afterwards, and a late cancel must not reach them.
    """
    job.set_canceller(scope.cancel)
    if job.cancel_requested:
        scope.cancel()
    await job.body(trio.lowlevel.checkpoint_if_cancelled)  # never raises
    job.set_canceller(None)


class _WaitOnCancel:
    """The abort callback of one call's await (abandon_on_cancel=False); runs on the trio thread.

    One small object per await rather than a closure over the call (a function,
    its cells and their tuple): the await path's only allocation of its own.
    """

    __slots__ = ("call",)
    abandon = False

    def __init__(self, call: Call) -> None:
        self.call = call

    def __call__(self, raise_cancel: Callable[[], NoReturn]) -> trio.lowlevel.Abort:
        call = self.call
        if call.executor.drop_call(call):
            call.abandoned = True
            return _Abort.SUCCEEDED
        call.raise_cancel = raise_cancel
        nested = call.nested
        if nested is not None:
            nested.cancel()  # the coroutine the worker is waiting on goes too
        if self.abandon:
            call.abandoned = True
            return _Abort.SUCCEEDED
        return _Abort.FAILED  # the drain reschedules us once the worker is done


class _AbandonOnCancel(_WaitOnCancel):
    """The abort callback for abandon_on_cancel=True: the await ends at once."""

    __slots__ = ()
    abandon = True


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

    __slots__ = ("_items", "_run_sync_soon", "_scheduled", "idle_hosts", "token")
    reads_fds = False  # see Inbox.add_reader
    backend: Literal["trio"] = "trio"

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self.token = token
        self._items: deque[Any] = deque()
        self._scheduled = False
        self._run_sync_soon = token.run_sync_soon
        self.idle_hosts: list[_Host] = []  # host tasks waiting for a sync_wrap job

    def push(self, item: Waiter) -> None:
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

    # -- the run as a place: where code runs -------------------------------------------

    def call_soon_threadsafe(self, fn: Callable[..., object], /, *args: Any) -> None:
        try:
            self._run_sync_soon(fn, *args)
        except trio.RunFinishedError:
            raise RuntimeError("the trio run has finished") from None

    def is_closed(self) -> bool:
        try:
            self._run_sync_soon(_nothing)
        except trio.RunFinishedError:
            return True
        return False

    def is_current(self) -> bool:
        try:
            return trio.lowlevel.current_trio_token() is self.token
        except RuntimeError:
            return False

    def wake_here(self, item: Waiter) -> None:
        task = item.waiter
        item.waiter = None
        _reschedule(task)

    def add_reader(self, fd: int, callback: Callable[..., object], /, *args: Any) -> bool:
        return False  # trio has no callback-style reader; callers fall back to their own thread

    def remove_reader(self, fd: int) -> None:
        pass

    # -- running a sync_wrap coroutine for a waiting thread -------------------------------

    def start_job(self, job: Job, *, ours: bool = False) -> None:
        """From a worker thread: run ``job`` soon, in a host task named after its function."""
        try:
            self._run_sync_soon(self._start_job, job, task_name(job.fn))
        except trio.RunFinishedError:
            raise RuntimeError("sync_wrap: the trio run that started this worker has finished") from None

    def _start_job(self, job: Job, name: str) -> None:
        """Run ``job`` in a system task named ``name``: an idle host if there is one; on the trio thread."""
        idle = self.idle_hosts
        if idle:
            task = idle.pop().task
            task.context = job.ctx  # applies from the task's next step on
            task.name = name
            _reschedule(task, _Value(job))
        else:
            _spawn_system_task(_host, self, job, name=name, context=job.ctx)

    # -- parking a task until a worker is done ------------------------------------------

    def start(self, call: Call) -> Awaitable[object]:
        """Submit ``call`` and return what to await; trio's cancellation is settled in ``abort``."""
        call.waiter = _current_task()
        call.inbox = self
        try:
            call.executor.submit_call(call)
        except BaseException:
            call.drop()  # gives back a limit slot it may hold
            raise

        if call.abandon_on_cancel:
            return _wait_task_rescheduled(_AbandonOnCancel(call))
        return _wait_then_cancel(call, _WaitOnCancel(call))

    async def cancelled(self, call: Call, exc: BaseException) -> NoReturn:
        """Never reached under trio (its Cancelled is no asyncio.CancelledError); re-raises."""
        raise exc

    async def run(self, call: Call) -> Any:
        await self.start(call)
        return call.outcome()

    async def acquire(self, ticket: QueuedWaiter) -> None:
        ticket.waiter = _current_task()
        ticket.inbox = self
        ticket.enqueue()

        def abort(raise_cancel: Callable[[], NoReturn]) -> trio.lowlevel.Abort:
            ticket.withdraw()
            return _Abort.SUCCEEDED

        await _wait_task_rescheduled(abort)


def _nothing() -> None:
    pass
