"""The executor base: what every asyncbridge executor shares, and adapters for the others.

In the role of CPython's ``concurrent/futures/_base.py``:

- :class:`ExecutorBase`, the base class of ``ThreadExecutor`` and
  ``ProcessExecutor``: a :class:`concurrent.futures.Executor` that also
  implements :class:`~asyncbridge._call.CallExecutor` (``submit_call``,
  ``drop_call``), the protocol through which an awaited :class:`Call`
  reaches an executor, and ``async with``/``aclose``;
- :func:`adapt_executor`, which turns whatever a user passes as
  ``executor=`` into a ``CallExecutor``: asyncbridge executors as they are,
  any other ``concurrent.futures.Executor`` through :class:`ForeignExecutor`;
- the one-off threads (:data:`ONE_OFF_THREADS`) for waits that must not take
  a pool slot, and :func:`wait_off_loop` built on them.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from types import TracebackType
from typing import Any, cast

from typing_extensions import Self

from ._backends import current_inbox
from ._call import Call, CallExecutor
from ._exceptions import ExecutorShutdownError
from ._reference import function_reference
from ._thread_start import new_thread, start_thread

__all__ = [
    "ONE_OFF_THREADS",
    "ExecutorBase",
    "ForeignExecutor",
    "adapt_executor",
    "wait_off_loop",
]


class ExecutorBase(cf.Executor):
    """An asyncbridge executor: a ``concurrent.futures.Executor`` that awaited calls reach directly.

    Subclasses implement ``submit_call``/``drop_call`` (see
    :class:`~asyncbridge._call.CallExecutor`), ``submit``, ``shutdown`` and
    ``aclose``; this class adds ``async with``.
    """

    def submit_call(self, call: Call, /) -> None:
        """Start ``call`` or queue it (the :class:`CallExecutor` protocol)."""
        raise NotImplementedError

    def drop_call(self, call: Call, /) -> bool:
        """The awaiting task of ``call`` was cancelled: drop it if it has not started (see :class:`CallExecutor`)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Shut down like ``shutdown(wait=True)``, without blocking the event loop."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


# -- one-off threads ------------------------------------------------------------------


class OneOffThreads:
    """Runs each call on a fresh daemon thread: for waits that must not take a pool slot."""

    def submit_call(self, call: Call, /) -> None:
        start_thread(new_thread(call.run, "asyncbridge-waiter"), call.fail)

    def drop_call(self, call: Call, /) -> bool:
        return False


ONE_OFF_THREADS = OneOffThreads()


async def wait_off_loop(event: threading.Event) -> None:
    """Wait for ``event`` on a thread of its own, so neither the loop nor a pool slot blocks."""
    await current_inbox().run(Call(event.wait, (), {}, None, ONE_OFF_THREADS))


# -- foreign executors --------------------------------------------------------------------


def adapt_executor(executor: object) -> CallExecutor | None:
    """The :class:`CallExecutor` for a user's ``executor=`` argument (None stays None: the default).

    Raises:
        TypeError: ``executor`` is not an executor.
    """
    if executor is None:
        return None
    if isinstance(executor, type):
        name = executor.__name__
        raise TypeError(
            f"executor must be an executor instance, got the class {name}; create one, "
            f"e.g. executor={name}(max_workers=4), and reuse it for every call"
        )
    if isinstance(executor, ExecutorBase):
        return executor
    if type(executor) is cf.ThreadPoolExecutor:
        # Exactly the stdlib class: its threads run the Call itself (context, check_cancelled).
        # A subclass may pickle what it is given (3.14's InterpreterPoolExecutor does): it gets
        # only the user's function and arguments, through its public submit().
        return ForeignThreadPool(executor)
    if isinstance(executor, cf.Executor):
        return ForeignExecutor(executor)
    if hasattr(executor, "submit_call") and hasattr(executor, "drop_call"):
        return cast(CallExecutor, executor)  # implements the protocol without the base class
    raise TypeError(
        "executor must be None, an asyncbridge executor or a concurrent.futures.Executor, "
        f"got {type(executor).__name__} {executor!r}"
    )


class _Completion:
    """Reports a foreign executor's Future into a Call."""

    __slots__ = ("call", "dropping", "future", "report")

    def __init__(self, call: Call, future: cf.Future[Any], report: bool) -> None:
        self.call = call
        self.future = future
        self.report = report  # False when call.run() reports by itself
        self.dropping = False

    def __call__(self, future: cf.Future[Any]) -> None:
        call = self.call
        if future.cancelled():
            if not self.dropping:  # cancelled by the executor, e.g. shutdown(cancel_futures=True)
                call.fail(ExecutorShutdownError("the executor cancelled this call before it started"))
            return
        if self.report:
            exc = future.exception()
            if exc is None:
                call.result = future.result()
            else:
                call.exc = exc
            call.finish()


class ForeignExecutor:
    """Adapts any concurrent.futures.Executor (a process pool, say) to the :class:`CallExecutor` protocol."""

    __slots__ = ("executor",)
    _reports = True  # the Future's outcome is the call's; False when call.run() reports itself

    def __init__(self, executor: cf.Executor) -> None:
        self.executor = executor

    def _submit(self, call: Call) -> cf.Future[Any]:
        # A process pool pickles the function by name, and under @async_wrap the name finds the wrapper.
        return self.executor.submit(function_reference(call.fn), *call.args, **call.kwargs)

    def submit_call(self, call: Call, /) -> None:
        try:
            future = self._submit(call)
        except RuntimeError as exc:
            if "shutdown" not in str(exc) and "shut down" not in str(exc):
                raise
            raise ExecutorShutdownError(
                f"{self.executor!r} is shut down; create a new executor to run more calls"
            ) from exc
        completion = _Completion(call, future, self._reports)
        call.handle = completion
        future.add_done_callback(completion)

    def drop_call(self, call: Call, /) -> bool:
        completion: _Completion = call.handle
        completion.dropping = True
        if completion.future.cancel():
            call.drop()
            return True
        completion.dropping = False
        return False


class ForeignThreadPool(ForeignExecutor):
    """A ThreadPoolExecutor: run the Call itself in it, for context and check_cancelled."""

    __slots__ = ()
    _reports = False

    def _submit(self, call: Call) -> cf.Future[Any]:
        return self.executor.submit(call.run)
