"""How work crosses between an event loop and worker threads, and back.

A :class:`Call` is one function call on its way to a worker. The loop side
finds the :class:`Inbox` of the running event loop (one per asyncio loop or
trio run, cached per thread), parks the awaiting task, and hands the call to an
executor. The worker runs it and pushes it into that inbox; the inbox wakes
the loop once for however many calls finished meanwhile (coalesced wake-ups:
one ``call_soon_threadsafe`` pending at a time), and the loop reschedules each
waiting task.

This module is backend-neutral; the two loop-specific pieces live in
``_backends/_asyncio.py`` and ``_backends/_trio.py``. Nothing here imports trio:
it is loaded only when a trio run asks for its inbox.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
from asyncio import events as _asyncio_events
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

if TYPE_CHECKING:
    from ._backends._asyncio import AsyncioInbox
    from ._backends._trio import TrioInbox
    from ._limit import Grant

__all__ = [
    "Call",
    "CallExecutor",
    "FutureCall",
    "Inbox",
    "Nested",
    "check_cancelled",
    "current_call",
    "current_executor",
    "current_inbox",
    "nested_wait",
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


class Inbox(Protocol):
    """Where finished calls go to wake the event loop that waits for them."""

    def push(self, item: Call | Grant, /) -> None: ...


class Nested(Protocol):
    """A coroutine that a worker started through sync_wrap and is blocked on."""

    executor: object

    def deliver(self, call: Call, /) -> None: ...
    def cancel(self) -> None: ...


# Set, in the context of a coroutine that a worker thread runs through
# sync_wrap, to what that worker is waiting on: a call that the coroutine makes
# on the worker's own executor is offered to the waiting worker as well as
# queued, so nesting can never exhaust a bounded pool (see _portal.py).
nested_wait: contextvars.ContextVar[Nested | None] = contextvars.ContextVar("asyncbridge_nested_wait", default=None)


class CallExecutor(Protocol):
    """What an executor offers the hand-off (ThreadExecutor, ProcessExecutor, adapters).

    ``_submit_call`` starts the call (or queues it) and raises
    :class:`ExecutorShutdownError` if it cannot. The executor must eventually
    call exactly one of ``call.run()`` (in a worker thread), ``call.finish()``
    after setting ``call.result``/``call.exc``, ``call.fail(exc)`` or, only
    from ``_drop_call``, ``call.drop()``.

    ``_drop_call`` runs on the event loop thread when the awaiting task is
    cancelled. It returns True if the call will never report back (it had not
    started and is now dropped, or its worker process was killed) and False
    if it is running and will finish on its own.
    """

    def _submit_call(self, call: Call, /) -> None: ...
    def _drop_call(self, call: Call, /) -> bool: ...


class Call:
    """One call of ``fn(*args, **kwargs)`` in ``ctx``, and what became of it.

    ``waiter`` and ``inbox`` are set by the loop side before the call is
    submitted; ``on_done`` (if any) runs exactly once, in whichever thread
    finishes or drops the call: the per-function limit uses it to give its slot
    back only when the worker is really free.
    """

    __slots__ = (
        "abandoned",
        "args",
        "ctx",
        "enqueued_at",
        "exc",
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
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self.fn: Callable[..., Any] = fn
        self.args: tuple[Any, ...] = args
        self.kwargs: dict[str, Any] = kwargs
        self.ctx: contextvars.Context | None = ctx
        self.on_done: Callable[[], None] | None = on_done
        self.state = PENDING
        self.result: Any = None
        self.exc: BaseException | None = None
        self.waiter: Any = None
        self.inbox: Inbox | None = None
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
    ) -> None:
        super().__init__(fn, args, kwargs, ctx)
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
    loop: object = None
    inbox: Any = None


_local = _Local()

_get_running_loop = _asyncio_events._get_running_loop

# trio's per-thread run state, whose ``runner.trio_token`` is what
# trio.lowlevel.current_trio_token() returns; set at the first trio lookup, and
# left None if this trio version does not have it where expected.
_trio_run_context: Any = None


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
    """
    call = _local.call
    if call is not None:
        raise_cancel = call.raise_cancel
        if raise_cancel is not None:
            raise_cancel()


def current_inbox() -> AsyncioInbox | TrioInbox:
    """Return the inbox of the event loop running in this thread.

    Raises:
        RuntimeError: no asyncio loop or trio run is active in this thread.
    """
    global _trio_run_context
    loop = _get_running_loop()
    local = _local
    if loop is not None:
        if local.loop is loop:
            inbox: AsyncioInbox = local.inbox
            return inbox
        from ._backends._asyncio import AsyncioInbox

        local.loop = loop
        local.inbox = new = AsyncioInbox(loop)
        return new
    run_context = _trio_run_context
    if run_context is not None:
        # What current_trio_token() reads, without its three calls: the token of
        # this thread's run (created by the first lookup in the run, below).
        try:
            token = run_context.runner.trio_token
        except AttributeError:  # not in a trio run
            pass
        else:
            if token is not None and local.loop is token:
                trio_inbox: TrioInbox = local.inbox
                return trio_inbox
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            token = trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
        else:
            if local.loop is token:
                trio_inbox = local.inbox
                return trio_inbox
            from ._backends._trio import TrioInbox, run_context_of

            _trio_run_context = run_context_of(token)
            local.loop = token
            local.inbox = new_trio = TrioInbox(token)
            return new_trio
    raise RuntimeError(
        "asyncbridge: no running event loop in this thread; await this from a coroutine "
        "running under asyncio (or uvloop) or trio"
    )
