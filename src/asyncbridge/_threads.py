"""ThreadExecutor: a bounded, lazily grown thread pool built for awaiting.

Design, from the measurements in ``bench/``:

- A submitter hands a call straight to an idle worker (each idle worker waits
  on a lock of its own, so exactly one wakes: no thundering herd), starts a new
  worker if the pool is below ``max_workers``, or queues the call. Idle
  workers form a stack, so the most recently used (cache-warm) one is picked
  first and the others can reach their idle timeout and exit.
- A finishing worker takes the next queued call itself before going idle,
  so a busy pool never sleeps between calls.
- No ``concurrent.futures.Future`` per awaited call: the result travels in the
  :class:`~asyncbridge._hub.Call` and the loop is woken through its inbox.
- The bound is on threads, and a thread is counted until its function really
  returns, so abandoning a cancelled call never lets more than ``max_workers``
  functions run at once (trio's rule).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from typing_extensions import ParamSpec, Self

from ._exceptions import ExecutorShutdownError
from ._hub import DONE, DROPPED, PENDING, RUNNING, Call, current_inbox, nested_wait, set_current_executor
from ._statistics import ExecutorStatistics

__all__ = [
    "DEFAULT_MAX_THREADS",
    "ThreadExecutor",
    "get_default_executor",
    "set_default_executor",
]

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_MAX_THREADS = 40  # same as anyio, trio and Starlette; not tuned
DEFAULT_IDLE_TIMEOUT = 10.0  # seconds; trio and anyio use 10 too
MAX_THREADS_ENV = "ASYNCBRIDGE_MAX_THREADS"


def _check_max_workers(max_workers: object, what: str = "max_workers") -> int:
    if isinstance(max_workers, bool) or not isinstance(max_workers, int):
        raise TypeError(f"{what} must be an int, got {type(max_workers).__name__} {max_workers!r}")
    if max_workers < 1:
        raise ValueError(f"{what} must be at least 1, got {max_workers}")
    return max_workers


class _Worker:
    __slots__ = ("call", "wake")

    def __init__(self) -> None:
        self.call: Call | None = None
        self.wake = threading.Lock()
        self.wake.acquire()


class _FutureCall(Call):
    """A call made through the ``concurrent.futures`` API: its outcome goes to a Future."""

    __slots__ = ("future",)

    def __init__(
        self,
        future: cf.Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ctx: contextvars.Context,
    ) -> None:
        super().__init__(fn, args, kwargs, ctx)
        self.future = future

    def execute(self) -> bool | None:
        if not self.future.set_running_or_notify_cancel():
            self.drop()
            return None
        return super().execute()

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

    def fail(self, exc: BaseException) -> None:
        self.future.cancel()
        self.drop()


class ThreadExecutor(cf.Executor):
    """A bounded thread pool for awaiting blocking functions from asyncio, uvloop or trio.

    It is a :class:`concurrent.futures.Executor` (``submit``, ``map``,
    ``shutdown``, ``with``), so it drops into code written for
    ``ThreadPoolExecutor``, and it adds ``await executor.run(fn, *args)``,
    which is what :func:`asyncbridge.async_wrap` uses. Equivalent plain code::

        loop.run_in_executor(ThreadPoolExecutor(max_workers), functools.partial(fn, *args))

    but faster, with context variables copied in, and usable from several
    event loops (and trio) at once.

    Threads start on demand, never more than ``max_workers`` at once, and exit
    after ``idle_timeout`` seconds without work, so an idle program holds no
    extra threads. A thread whose caller was cancelled keeps its slot until its
    function really returns.

    Args:
        max_workers: the most threads that run submitted functions at once.
        name: prefix of the worker threads' names, as seen in debuggers and logs.
        idle_timeout: seconds an idle worker waits for work before it exits.

    Raises:
        TypeError: ``max_workers`` is not an int, or ``idle_timeout`` not a number.
        ValueError: ``max_workers`` is below 1, or ``idle_timeout`` not positive.
    """

    def __init__(
        self,
        max_workers: int = DEFAULT_MAX_THREADS,
        *,
        name: str = "asyncbridge",
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        self._max_workers = _check_max_workers(max_workers)
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        if isinstance(idle_timeout, bool) or not isinstance(idle_timeout, (int, float)):
            raise TypeError(f"idle_timeout must be a number of seconds, got {idle_timeout!r}")
        if not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be a positive number of seconds, got {idle_timeout}")
        self._name = name
        self._idle_timeout = float(idle_timeout)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._pending: deque[Call] = deque()
        self._threads = 0
        self._thread_ids: set[int] = set()
        self._started = 0
        self._running = 0
        self._queued = 0
        self._completed = 0
        self._failed = 0
        self._wait_total = 0.0
        self._wait_max = 0.0
        self._shutdown = False
        self._all_exited = threading.Event()
        self._all_exited.set()

    def __repr__(self) -> str:
        state = "shut down" if self._shutdown else f"{self._threads} threads"
        return f"<ThreadExecutor {self._name!r} max_workers={self._max_workers}, {state}>"

    @property
    def max_workers(self) -> int:
        """The most threads that run submitted functions at once."""
        return self._max_workers

    # -- the hand-off, used by the loop side (see _hub.CallExecutor) ----------

    def _submit_call(self, call: Call) -> None:
        ctx = call.ctx
        if ctx is not None:
            nested = ctx.get(nested_wait)
            if nested is not None and nested.executor is self and nested.deliver(call):
                return  # our worker is waiting for this caller: it runs the call, in its slot
        with self._lock:
            if self._shutdown:
                raise ExecutorShutdownError(f"{self!r} is shut down; create a new executor to run more calls")
            if self._idle:
                worker = self._idle.pop()
                call.state = RUNNING
                self._running += 1
                worker.call = call
                worker.wake.release()
                return
            if self._threads >= self._max_workers:
                call.enqueued_at = time.monotonic()
                self._pending.append(call)
                self._queued += 1
                return
            call.state = RUNNING
            self._running += 1
            self._threads += 1
            self._started += 1
            self._all_exited.clear()
            number = self._started
        # Start the thread outside the lock: Thread.start() waits for the new
        # thread to come up, and workers need the lock meanwhile.
        try:
            threading.Thread(
                target=self._work, args=(_Worker(), call), name=f"{self._name}-{number}", daemon=True
            ).start()
        except BaseException:
            with self._lock:
                self._running -= 1
                self._threads -= 1
                if not self._threads:
                    self._all_exited.set()
            raise

    def _drop_call(self, call: Call) -> bool:
        with self._lock:
            if call.state != PENDING:
                return False
            call.state = DROPPED  # stays in the deque (or a nested wait's queue); skipped there
            if call.handle is None:
                self._queued -= 1
        call.drop()
        return True

    def _work(self, worker: _Worker, call: Call | None) -> None:
        lock = self._lock
        pending = self._pending
        ident = threading.get_ident()
        set_current_executor(self)
        with lock:
            self._thread_ids.add(ident)
        try:
            while call is not None:
                failed = call.execute()
                finished = call
                with lock:
                    self._running -= 1
                    if failed is not None:
                        self._completed += 1
                        self._failed += failed
                    call = None
                    stop = False
                    while pending:
                        queued = pending.popleft()
                        if queued.state != PENDING:
                            continue
                        queued.state = RUNNING
                        self._queued -= 1
                        self._running += 1
                        waited = time.monotonic() - queued.enqueued_at
                        self._wait_total += waited
                        if waited > self._wait_max:
                            self._wait_max = waited
                        call = queued
                        break
                    else:
                        if self._shutdown:
                            stop = True
                        else:
                            self._idle.append(worker)
                finished.finish()  # report after the bookkeeping, so callers see it done
                if stop:
                    return
                if call is not None:
                    continue
                if not worker.wake.acquire(timeout=self._idle_timeout):
                    with lock:
                        try:
                            self._idle.remove(worker)
                        except ValueError:
                            pass  # a submitter (or shutdown) claimed us just now
                        else:
                            return
                    worker.wake.acquire()
                call = worker.call
                worker.call = None
        finally:
            with lock:
                self._threads -= 1
                self._thread_ids.discard(ident)
                if not self._threads:
                    self._all_exited.set()

    # -- public API -----------------------------------------------------------

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` in a worker thread and return its result.

        The caller's context variables are visible inside ``fn``. If the
        awaiting task is cancelled, the await ends at once; ``fn`` runs on (a
        thread cannot be killed) and its thread stays counted until it returns.
        Use :func:`asyncbridge.async_wrap` for per-function limits, timeouts,
        or ``abandon_on_cancel=False``.

        Raises:
            ExecutorShutdownError: the executor is shut down.
            BaseException: whatever ``fn`` raised, unchanged.
        """
        call = Call(fn, args, kwargs, contextvars.copy_context())
        result: T = await current_inbox().run(call, self, True)
        return result

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> cf.Future[T]:
        """Schedule ``fn(*args, **kwargs)`` and return a :class:`concurrent.futures.Future`.

        As ``ThreadPoolExecutor.submit``, except that ``fn`` runs in a copy of
        the submitter's context, so context variables set by the caller are
        visible.

        Raises:
            ExecutorShutdownError: the executor is shut down (a RuntimeError).
        """
        future: cf.Future[T] = cf.Future()
        self._submit_call(_FutureCall(future, fn, args, kwargs, contextvars.copy_context()))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting calls; with ``wait``, block until every worker has exited.

        Calls already queued still run, unless ``cancel_futures`` is true: then
        they are dropped (their Futures cancelled, their awaiting callers get
        :class:`ExecutorShutdownError`). Running calls always finish. Safe to
        call more than once. From inside one of this executor's own workers it
        does not wait for that worker.

        Blocking the event loop thread on worker threads is what ``aclose``
        (and ``async with``) avoid; use them in async code.
        """
        with self._lock:
            self._shutdown = True
            idle, self._idle = self._idle, []
            dropped: list[Call] = []
            if cancel_futures:
                while self._pending:
                    call = self._pending.popleft()
                    if call.state == PENDING:
                        call.state = DROPPED
                        dropped.append(call)
                self._queued = 0
        for worker in idle:
            worker.call = None
            worker.wake.release()
        for call in dropped:
            call.fail(ExecutorShutdownError(f"{self!r} was shut down before this call started"))
        if wait and threading.get_ident() not in self._thread_ids:
            self._all_exited.wait()

    async def aclose(self) -> None:
        """Shut down like ``shutdown(wait=True)``, without blocking the event loop.

        Cancelling the wait leaves the executor shut down; its workers finish
        their calls and exit on their own.
        """
        self.shutdown(wait=False)
        if self._all_exited.is_set() or threading.get_ident() in self._thread_ids:
            return
        await current_inbox().run(Call(self._all_exited.wait, (), {}, None), _ONE_OFF_THREADS, True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _run_nested(self, call: Call) -> None:
        """Run, in the calling worker thread, a call delivered by a nested sync_wrap wait."""
        with self._lock:
            if call.state != PENDING:
                return  # its caller was cancelled meanwhile
            call.state = RUNNING
        failed = call.execute()
        with self._lock:
            if failed is not None:
                self._completed += 1
                self._failed += failed
        call.finish()

    def statistics(self) -> ExecutorStatistics:
        """Return a snapshot of the pool's state: workers, running, queued, totals, waits."""
        with self._lock:
            return ExecutorStatistics(
                max_workers=self._max_workers,
                workers=self._threads,
                running=self._running,
                queued=self._queued,
                completed=self._completed,
                failed=self._failed,
                total_wait_time=self._wait_total,
                max_wait_time=self._wait_max,
            )


class _OneOffThreads:
    """Runs each call on a fresh daemon thread: for waits that must not take a pool slot."""

    def _submit_call(self, call: Call) -> None:
        threading.Thread(target=call.run, name="asyncbridge-waiter", daemon=True).start()

    def _drop_call(self, call: Call) -> bool:
        return False


_ONE_OFF_THREADS = _OneOffThreads()

_default_lock = threading.Lock()
_default: ThreadExecutor | None = None


def get_default_executor() -> ThreadExecutor:
    """Return the thread executor used when none is given, creating it on first use.

    Its size is ``DEFAULT_MAX_THREADS`` (40), or the value of the
    ``ASYNCBRIDGE_MAX_THREADS`` environment variable when set. It is shared by
    every event loop and thread of the process, so its bound holds across them.

    Raises:
        ValueError: ``ASYNCBRIDGE_MAX_THREADS`` is set to something other than a
            whole number of at least 1.
    """
    global _default
    executor = _default
    if executor is not None:
        return executor
    with _default_lock:
        if _default is None:
            raw = os.environ.get(MAX_THREADS_ENV)
            size = DEFAULT_MAX_THREADS
            if raw is not None:
                try:
                    size = int(raw)
                except ValueError:
                    raise ValueError(
                        f"{MAX_THREADS_ENV} must be a whole number of threads (at least 1), got {raw!r}"
                    ) from None
                _check_max_workers(size, MAX_THREADS_ENV)
            _default = ThreadExecutor(size, name="asyncbridge-default")
        return _default


def set_default_executor(executor: ThreadExecutor) -> ThreadExecutor | None:
    """Make ``executor`` the thread executor used when none is given; return the old one.

    Call it at startup, for example ``set_default_executor(ThreadExecutor(100))``
    to allow 100 threads instead of 40. Calls already running keep their
    executor; the old one is returned, not shut down, so you can shut it down.

    Raises:
        TypeError: ``executor`` is not a :class:`ThreadExecutor`.
    """
    global _default
    if not isinstance(executor, ThreadExecutor):
        raise TypeError(
            "set_default_executor() expects a ThreadExecutor, got "
            f"{type(executor).__name__}; pass an executor to async_wrap(executor=...) instead "
            "to use another kind"
        )
    with _default_lock:
        old, _default = _default, executor
    return old
