"""The units of work that cross between an event loop and a thread, and the thread's side of them.

A :class:`Call` is one sync function call on its way from an awaiting task to
a worker: it carries the function, its arguments and context, the executor
that runs it (:class:`CallExecutor`), what to do if the caller is cancelled,
and, once run, its outcome. The event loop side (``_backends``) parks the
awaiting task and is woken through the loop's inbox when the worker finishes
the call. :class:`Waiter` is what such an inbox wakes: a Call, or a place in a
limiter's queue. :class:`Job` is the other direction: a coroutine that a
thread hands to a loop (``sync_wrap``).

The per-thread state lives here too: the call a worker thread is running
(:func:`current_call`, and :func:`check_cancelled` on it) and the executor it
works for. Nothing here knows which event loop library is running.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, NoReturn, Protocol

__all__ = [
    "DONE",
    "DROPPED",
    "PENDING",
    "RUNNING",
    "Call",
    "CallExecutor",
    "FutureCall",
    "Job",
    "Nested",
    "NestingExecutor",
    "QueuedWaiter",
    "Route",
    "Waiter",
    "call_route",
    "check_cancelled",
    "current_call",
    "current_executor",
    "logger",
    "set_current_executor",
]

logger = logging.getLogger("asyncbridge")

# Call states. PENDING -> RUNNING -> DONE, or PENDING -> DROPPED when the caller
# went away before a worker took the call. The PENDING transitions happen under
# the executor's lock; DONE is written by the one thread that ran the call.
PENDING = 0
RUNNING = 1
DONE = 2
DROPPED = 3


class Waiter(Protocol):
    """What an event loop's inbox wakes: a task parked until another thread finishes this.

    ``waiter`` is the backend's handle on the parked task (an asyncio Future,
    a trio Task), ``inbox`` the loop's inbox; both are set by the backend.
    ``lost()`` runs instead of a wake-up when nobody is left to wake (the
    loop closed, or the task gave up).
    """

    waiter: Any
    inbox: Any
    abandoned: bool

    def lost(self) -> None: ...


class QueuedWaiter(Waiter, Protocol):
    """A task's place in a queue that another thread serves (a limiter's waiters)."""

    def enqueue(self) -> None:
        """Join the queue; the inbox is pushed this waiter once it is served."""
        ...

    def withdraw(self) -> None:
        """The task gave up: leave the queue, or give back what it was granted."""
        ...


class CallExecutor(Protocol):
    """The protocol an asyncbridge executor implements; how a :class:`Call` reaches it.

    ``submit_call`` starts the call (or queues it) and raises
    :class:`ExecutorShutdownError` if it cannot. The executor must eventually
    call exactly one of ``call.run()`` (in a worker thread), ``call.finish()``
    after setting ``call.result``/``call.exc``, ``call.fail(exc)`` or, only
    from ``drop_call``, ``call.drop()``.

    ``drop_call`` runs on the event loop thread when the awaiting task is
    cancelled. It returns True if the call will never report back (it had not
    started and is now dropped, or its worker process was killed) and False
    if it is running and will finish on its own.

    ``ThreadExecutor``, ``ProcessExecutor`` and the adapters in ``_executor.py``
    implement it; ``_executor.ExecutorBase`` is the base class of the public ones.
    """

    def submit_call(self, call: Call, /) -> None: ...
    def drop_call(self, call: Call, /) -> bool: ...


class NestingExecutor(CallExecutor, Protocol):
    """An executor whose worker threads may block in ``sync_wrap`` and serve nested calls meanwhile."""

    def run_nested_call(self, call: Call, /) -> None:
        """Run, in the calling worker thread, a call delivered to its nested wait."""
        ...


class Route(Protocol):
    """Where the calls made in a context go before an executor's shared queue (see :data:`call_route`).

    ``deliver`` offers ``call`` (already claimable by the executor) and returns
    True if the route took it for itself: then only the route runs it. False
    means the executor queues it as usual, for whichever thread is first.
    """

    @property
    def executor(self) -> object:
        """The executor whose calls this route takes."""
        ...

    @property
    def pins_thread(self) -> bool:
        """True for a pinned_thread scope: a sync_wrap wait on its thread keeps the calls made meanwhile."""
        ...

    def deliver(self, call: Call, /) -> bool: ...


class Nested(Route, Protocol):
    """A coroutine that a worker started through sync_wrap and is blocked on (a :class:`Route` too)."""

    def cancel(self) -> None: ...


class Job(Protocol):
    """A coroutine that a thread hands to an event loop and waits for (one sync_wrap call).

    The loop's backend runs ``body()`` in a task in ``ctx``; ``set_canceller``
    gives the job the way to cancel that task (on the loop's thread), or None
    once the body is over. ``cancel_requested`` is set when the waiting thread
    asked for cancellation before the task existed. ``finish_unstarted``
    completes a job whose task never started, with ``exc``.
    """

    fn: Callable[..., Awaitable[Any]]
    ctx: contextvars.Context
    cancel_requested: bool

    async def body(self, checkpoint: Callable[[], Awaitable[None]] | None = None, /) -> None: ...
    def set_canceller(self, cancel: Callable[[], object] | None, /) -> None: ...
    def finish_unstarted(self, exc: BaseException, /) -> None: ...


# Where calls made in this context go first, on the route's executor:
# - in a coroutine that a worker thread runs through sync_wrap, the waiting
#   worker: a call the coroutine makes on that worker's executor is offered to
#   it as well as queued, so nesting can never exhaust a bounded pool; inside a
#   pinned_thread scope, it is the waiting (pinned) worker's alone (_portal.py);
# - inside ``async with pinned_thread()``, the scope's thread (_pinned.py).
# One variable for both, so a call costs one context lookup whatever the route.
call_route: contextvars.ContextVar[Route | None] = contextvars.ContextVar("asyncbridge_call_route", default=None)


class Call:
    """One call of ``fn(*args, **kwargs)`` in ``ctx``, and what became of it.

    ``executor`` runs it; ``abandon_on_cancel`` says what a cancelled caller
    does while it runs (end the await at once, or wait for it). ``waiter`` and
    ``inbox`` are set by the loop side before the call is submitted;
    ``on_done`` (if any) runs exactly once, in whichever thread finishes or
    drops the call: the per-function limit uses it to give its slot back only
    when the worker is really free.
    """

    __slots__ = (
        "abandon_on_cancel",
        "abandoned",
        "args",
        "ctx",
        "enqueued_at",
        "exc",
        "executor",
        "fn",
        "handle",
        "inbox",
        "kwargs",
        "nested",
        "on_done",
        "raise_cancel",
        "result",
        "state",
        "waiter",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ctx: contextvars.Context | None,
        executor: CallExecutor,
        abandon_on_cancel: bool = True,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self.fn: Callable[..., Any] = fn
        self.args: tuple[Any, ...] = args
        self.kwargs: dict[str, Any] = kwargs
        self.ctx: contextvars.Context | None = ctx
        self.executor = executor
        self.abandon_on_cancel = abandon_on_cancel
        self.on_done: Callable[[], None] | None = on_done
        self.state = PENDING
        self.result: Any = None
        self.exc: BaseException | None = None
        self.waiter: Any = None
        self.inbox: Any = None  # the awaiting loop's inbox (see _backends)
        self.abandoned = False
        self.raise_cancel: Callable[[], NoReturn] | None = None
        self.enqueued_at = 0.0
        self.handle: Any = None  # the executor's own bookkeeping for this call
        self.nested: Nested | None = None  # a sync_wrap coroutine this call is waiting for

    def run(self) -> None:
        """Run the call in this (worker) thread and report its outcome."""
        self.execute()
        self.finish()

    def execute(self) -> bool | None:
        """Run the call in this thread and keep its outcome; True if it raised.

        The outcome is reported by ``finish()``, which executors call once their
        own bookkeeping is done, so a woken caller sees up-to-date statistics.
        """
        local = _local
        outer = local.call  # not None when a sync_wrap'd coroutine nests a call here
        local.call = self
        try:
            if self.ctx is None:
                self.result = self.fn(*self.args, **self.kwargs)
            else:
                self.result = self.ctx.run(self.fn, *self.args, **self.kwargs)
        except BaseException as exc:  # delivered to the awaiting caller, not swallowed
            self.exc = exc
        finally:
            local.call = outer
        return self.exc is not None

    def finish(self) -> None:
        """Mark the call done (its outcome is set) and wake whoever waits for it."""
        self.state = DONE
        self.fn = self.args = self.kwargs = self.ctx = None  # type: ignore[assignment]
        self._done()
        inbox = self.inbox
        if inbox is not None:
            inbox.push(self)
        elif self.exc is not None:
            self.lost()

    def finish_here(self) -> None:
        """``finish()`` on the awaiting loop's own thread: wake the task now, without the thread hop."""
        self.state = DONE
        self.fn = self.args = self.kwargs = self.ctx = None  # type: ignore[assignment]
        self._done()
        self.inbox.wake_here(self)

    def drop(self) -> None:
        """Forget a call that never ran (its caller went away or the executor shut down)."""
        self.state = DROPPED
        self.fn = self.args = self.kwargs = self.ctx = None  # type: ignore[assignment]
        self._done()

    def _done(self) -> None:
        on_done = self.on_done
        if on_done is not None:
            # A foreign executor may finish a call on its thread while the loop
            # drops it: the lock makes the slot come back once, not twice.
            with _done_lock:
                on_done, self.on_done = self.on_done, None
            if on_done is not None:
                on_done()

    def fail(self, exc: BaseException) -> None:
        """Finish a call that never ran with ``exc`` (e.g. its executor shut down)."""
        self.exc = exc
        self.finish()

    def outcome(self) -> Any:
        """Return the result, or raise the exception, of a finished call."""
        exc = self.exc
        if exc is not None:
            self.exc = None  # break the cycle exc -> traceback -> frame -> self
            try:
                raise exc
            finally:
                del exc
        result = self.result
        self.result = None
        return result

    def lost(self) -> None:
        """Log the outcome of a call whose caller stopped waiting, so no error is silent."""
        exc = self.exc
        self.exc = None
        self.result = None
        if exc is None or (self.raise_cancel is not None and _is_cancellation(exc)):
            return  # a result nobody wants, or the caller's own cancellation: expected
        logger.error(
            "an abandoned call raised after its caller was cancelled or timed out",
            exc_info=(type(exc), exc, exc.__traceback__),
        )


class FutureCall(Call):
    """A call made through the ``concurrent.futures`` API: its outcome goes to a Future."""

    __slots__ = ("future",)

    def __init__(
        self,
        future: Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ctx: contextvars.Context | None,
        executor: CallExecutor,
    ) -> None:
        super().__init__(fn, args, kwargs, ctx, executor)
        self.future = future

    def finish(self) -> None:
        if self.state == DROPPED:
            return
        self.state = DONE
        self.fn = self.args = self.kwargs = self.ctx = None  # type: ignore[assignment]
        exc, result = self.exc, self.result
        self.exc = self.result = None
        if exc is None:
            self.future.set_result(result)
        else:
            self.future.set_exception(exc)


def _is_cancellation(exc: BaseException) -> bool:
    import asyncio

    if isinstance(exc, asyncio.CancelledError):
        return True
    trio = sys.modules.get("trio")
    return trio is not None and isinstance(exc, trio.Cancelled)


_done_lock = threading.Lock()  # taken only by calls with an on_done (a limit), briefly


class _Local(threading.local):
    call: Call | None = None
    executor: object = None  # the asyncbridge executor this thread works for


_local = _Local()


def current_call() -> Call | None:
    """The call this worker thread is running for an event loop, if any."""
    return _local.call


def current_executor() -> object:
    """The asyncbridge executor whose worker this thread is, or None."""
    return _local.executor


def set_current_executor(executor: object) -> None:
    _local.executor = executor


def check_cancelled() -> None:
    """Raise the caller's cancellation if the task awaiting this call was cancelled.

    Call it now and then from a long-running function that runs in a worker
    thread through :func:`async_wrap`, :func:`to_thread` or an asyncbridge
    executor: once the awaiting task is cancelled or times out, it raises that
    backend's cancellation exception (:class:`asyncio.CancelledError`, or
    ``trio.Cancelled``), so the function stops early instead of finishing work
    nobody wants. It is the counterpart of ``anyio.from_thread.check_cancelled``.

    Outside such a worker call (plain sync code, the event loop thread) it does
    nothing, so the same function can be called directly too.

    Raises:
        asyncio.CancelledError | trio.Cancelled: the caller was cancelled.

    Example:
        ```python
        import time
        import anyio
        from asyncbridge import async_wrap, check_cancelled


        @async_wrap(abandon_on_cancel=False)  # a cancelled await waits for the function to return
        def crunch() -> None:
            while True:  # a long computation that checks now and then
                check_cancelled()
                time.sleep(0.01)


        with anyio.move_on_after(0.1):
            await crunch()  # the timeout cancels it: crunch stops at its next check
        ```
    """
    call = _local.call
    if call is not None:
        raise_cancel = call.raise_cancel
        if raise_cancel is not None:
            raise_cancel()
