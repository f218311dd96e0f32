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
  a pool slot, and :func:`wait_off_loop` built on them;
- ``map`` with Python 3.14's ``buffersize`` on every Python
  (:func:`check_buffersize`, :func:`submit_ahead`).
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import itertools
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator
from types import TracebackType
from typing import Any, TypeVar, cast

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
    "check_buffersize",
    "submit_ahead",
    "wait_off_loop",
]

T = TypeVar("T")
E = TypeVar("E", bound=cf.Executor)


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

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[T]:
        """Return an iterator of ``fn(*args)`` for each ``args`` of ``zip(*iterables)``, in order.

        As ``concurrent.futures.Executor.map`` of Python 3.14, on every
        Python: without ``buffersize`` every call is submitted at once; with
        it, ``buffersize`` calls are submitted at first and one more each time
        a result is taken, so an endless or huge iterable can be mapped with
        bounded memory. The iterator raises ``TimeoutError`` if a result is not
        there ``timeout`` seconds after this call, and an exception a call
        raised when its item is reached; closing it early cancels the calls
        that have not started. ``chunksize`` is accepted and ignored, as by
        ``ThreadPoolExecutor``.

        Raises:
            TypeError: ``buffersize`` is neither an int nor None.
            ValueError: ``buffersize`` is below 1.
        """
        check_buffersize(buffersize)

        def submit(executor: ExecutorBase, args: tuple[Any, ...]) -> cf.Future[T]:
            return executor.submit(fn, *args)

        return submit_ahead(self, submit, zip(*iterables, strict=False), timeout, buffersize)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def check_buffersize(buffersize: object) -> None:
    """Check ``map(buffersize=...)`` as Python 3.14 does (in its words), bools excluded."""
    if buffersize is None:
        return
    if isinstance(buffersize, bool) or not isinstance(buffersize, int):
        raise TypeError(f"buffersize must be an integer or None, got {type(buffersize).__name__} {buffersize!r}")
    if buffersize < 1:
        raise ValueError(f"buffersize must be None or > 0, got {buffersize}")


def submit_ahead(
    executor: E,
    submit: Callable[[E, Any], cf.Future[T]],
    items: Iterator[Any],
    timeout: float | None,
    buffersize: int | None,
) -> Generator[T, None, None]:
    """The results of ``submit(executor, item)`` for each item, in order: the engine of ``map``.

    What CPython 3.14's ``Executor.map`` does: the first ``buffersize`` items
    (all of them without it) are submitted here, before the iterator is
    returned, so a call that cannot be submitted raises at once; then each
    step submits one more item before it waits for the oldest result. The
    iterator holds the executor weakly, as the stdlib's does.
    """
    end_time = None if timeout is None else timeout + time.monotonic()
    futures: collections.deque[cf.Future[T]] = collections.deque(
        submit(executor, item) for item in (items if buffersize is None else itertools.islice(items, buffersize))
    )
    executor_ref = weakref.ref(executor)
    del executor

    def results() -> Generator[T, None, None]:
        try:
            while futures:
                if buffersize is not None and (owner := executor_ref()) is not None:
                    item = next(items, _END)
                    if item is not _END:
                        futures.append(submit(owner, item))
                    del owner
                yield _result_or_cancel(futures.popleft(), None if end_time is None else end_time - time.monotonic())
        finally:
            for future in futures:
                future.cancel()

    return results()


_END: Any = object()


def _result_or_cancel(future: cf.Future[T], timeout: float | None) -> T:
    """The result of ``future``, which is cancelled if it is not there in time (the iterator keeps no reference)."""
    try:
        return future.result(timeout)
    finally:
        future.cancel()


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
