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
  :class:`~asyncbridge._call.Call` and the loop is woken through its inbox.
- The bound is on threads, and a thread is counted until its function really
  returns, so abandoning a cancelled call never lets more than ``max_workers``
  functions run at once (trio's rule).
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import contextvars
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from typing_extensions import ParamSpec

from ._backends import current_inbox
from ._call import DROPPED, RUNNING, Call, FutureCall, call_route, logger, set_current_executor
from ._checks import check_count, check_seconds_or_never
from ._exceptions import ExecutorShutdownError
from ._executor import ExecutorBase, wait_off_loop
from ._statistics import ExecutorStatistics
from ._thread_start import new_thread, start_thread

__all__ = [
    "DEFAULT_MAX_THREADS",
    "ThreadExecutor",
    "get_default_executor",
    "set_default_executor",
]

P = ParamSpec("P")
T = TypeVar("T")

_monotonic = time.monotonic

DEFAULT_MAX_THREADS = 40  # same as anyio, trio and Starlette; not tuned
"""The size of the default thread executor, unless ``ASYNCBRIDGE_MAX_THREADS`` says otherwise.

Example:
    ```python
    from asyncbridge import DEFAULT_MAX_THREADS, ThreadExecutor

    with ThreadExecutor(max_workers=2 * DEFAULT_MAX_THREADS) as executor:
        assert executor.max_workers == 80
    ```
"""
DEFAULT_IDLE_TIMEOUT = 10.0  # seconds; trio and anyio use 10 too
MAX_THREADS_ENV = "ASYNCBRIDGE_MAX_THREADS"


class _Worker:
    """One worker thread's parking spot and its own counters (written only by that thread)."""

    __slots__ = ("busy", "completed", "failed", "wait_max", "wait_total", "wake")

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()
        self.busy = False
        self.completed = 0
        self.failed = 0
        self.wait_total = 0.0
        self.wait_max = 0.0


class _FutureCall(FutureCall):
    """A call made through ``submit()``: cancellable until a worker takes it."""

    __slots__ = ()

    def execute(self) -> bool | None:
        if not self.future.set_running_or_notify_cancel():
            self.drop()
            return None
        return super().execute()

    def fail(self, exc: BaseException) -> None:
        if isinstance(exc, ExecutorShutdownError):
            self.future.cancel()  # shutdown(cancel_futures=True), as the stdlib does
        elif not self.future.done():
            self.future.set_exception(exc)
        self.drop()


class ThreadExecutor(ExecutorBase, cf.ThreadPoolExecutor):
    """A bounded thread pool for awaiting blocking functions from asyncio, uvloop or trio.

    It is a :class:`concurrent.futures.ThreadPoolExecutor` (``submit``,
    ``map``, ``shutdown``, ``with``), so it drops into code written for one,
    including ``loop.set_default_executor(ThreadExecutor(...))``, which makes
    ``asyncio.to_thread`` and ``run_in_executor(None, ...)`` use it; it adds
    ``await executor.run(fn, *args)``, which is what
    :func:`asyncbridge.async_wrap` uses. The equivalent plain code is
    ``loop.run_in_executor(ThreadPoolExecutor(max_workers), functools.partial(fn, *args))``,
    but this is faster, with context variables copied in, and usable from several
    event loops (and trio) at once.

    Threads start on demand, never more than ``max_workers`` at once, and exit
    after ``idle_timeout`` seconds without work, so an idle program holds no
    extra threads. A thread whose caller was cancelled keeps its slot until its
    function really returns.

    Args:
        max_workers: the most threads that run submitted functions at once.
        name: prefix of the worker threads' names, as seen in debuggers and logs.
        idle_timeout: seconds an idle worker waits for work before it exits;
            None (or ``math.inf``) keeps started threads for the executor's
            life, for code that needs its thread to stay (thread-local state).

    Raises:
        TypeError: ``max_workers`` is not an int, or ``idle_timeout`` neither a number nor None.
        ValueError: ``max_workers`` is below 1, or ``idle_timeout`` zero, negative or NaN.

    Example:
        Await blocking calls from any event loop; ``async with`` shuts the pool down:

        ```python
        from asyncbridge import ThreadExecutor

        async with ThreadExecutor(max_workers=4, name="db") as executor:
            assert await executor.run(sum, [1, 2, 3]) == 6
            future = executor.submit(pow, 2, 10)  # a concurrent.futures.Future
            assert await executor.run(future.result) == 1024
            assert executor.statistics().max_workers == 4
        ```

        From sync code, it is a ``ThreadPoolExecutor``:

        ```python
        from asyncbridge import ThreadExecutor

        executor = ThreadExecutor(max_workers=2)
        assert list(executor.map(len, ["a", "bb"])) == [1, 2]
        executor.shutdown()
        ```
    """

    def __init__(
        self,
        max_workers: int = DEFAULT_MAX_THREADS,
        *,
        name: str = "asyncbridge",
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        self._max_workers = check_count(max_workers, "max_workers")
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {type(name).__name__}")
        self._name = name
        self._idle_timeout = check_seconds_or_never(idle_timeout, "idle_timeout", "threads are never retired")
        self._idle_wait = -1.0 if self._idle_timeout is None else self._idle_timeout  # Lock.acquire's "forever"
        # Calls wait in _pending. A call is claimed, by the worker that runs it or
        # by the caller that gives up on it, by removing it from _claims: set.remove
        # is atomic, so exactly one side wins without a lock on the hot path.
        self._pending: deque[Call] = deque()
        self._claims: set[Call] = set()
        # _lock guards the rest: parked workers, thread counts, shutdown.
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []  # parked workers, most recently parked last
        self._workers: set[_Worker] = set()
        self._thread_ids: set[int] = set()
        self._thread_count = 0
        self._started = 0
        # Workers woken (or started) that have not yet looked for work. While one
        # is on its way, submitters wake nobody else: it wakes the next one itself
        # if work remains, so a burst of calls wakes workers one at a time.
        self._waking = 0
        self._retired = _Worker()  # the counters of workers that have exited
        self._shutdown = False
        self._all_exited = threading.Event()
        self._all_exited.set()
        self._submitted: set[cf.Future[Any]] = set()  # submit()ted and not done: exit waits for them
        _live[self] = _ExitWatch(self._submitted, self._all_exited)

    def __repr__(self) -> str:
        state = "shut down" if self._shutdown else f"{self._thread_count} threads"
        return f"<ThreadExecutor {self._name!r} max_workers={self._max_workers}, {state}>"

    @property
    def max_workers(self) -> int:
        """The most threads that run submitted functions at once."""
        return self._max_workers

    # -- the hand-off, used by the loop side (see _call.CallExecutor) ----------

    def submit_call(self, call: Call, /) -> None:
        if self._shutdown:
            raise ExecutorShutdownError(f"{self!r} is shut down; create a new executor to run more calls")
        call.enqueued_at = _monotonic()
        self._claims.add(call)
        ctx = call.ctx
        if ctx is not None:
            route = ctx.get(call_route)
            # One of our workers is blocked in sync_wrap waiting for this caller
            # (offered the call too: whoever claims it first runs it, so it never
            # waits for a free thread that may not come), or the caller is in a
            # pinned_thread scope (its thread takes the call for itself).
            if route is not None and route.executor is self and route.deliver(call):
                return
        self._pending.append(call)
        if not self._waking:
            try:
                self._wake_one()
            except BaseException:
                if self._unclaim(call):
                    raise
        if self._shutdown and self._unclaim(call):  # shut down meanwhile; it may never run
            raise ExecutorShutdownError(f"{self!r} is shut down; create a new executor to run more calls")

    def _unclaim(self, call: Call) -> bool:
        try:
            self._claims.remove(call)
        except KeyError:
            return False  # a worker has it
        call.state = DROPPED
        return True

    def drop_call(self, call: Call, /) -> bool:
        if not self._unclaim(call):
            return False
        call.drop()  # it stays in the deque (or a nested wait's queue), skipped there
        return True

    def _claim(self) -> Call | None:
        """Take the next queued call nobody has claimed, or None."""
        pending = self._pending
        claims = self._claims
        while True:
            try:
                call = pending.popleft()
            except IndexError:
                return None
            try:
                claims.remove(call)
            except KeyError:
                continue  # its caller dropped it
            call.state = RUNNING
            return call

    def _wake_one(self) -> None:
        """Wake a parked worker, or start a thread, unless one is already on its way."""
        with self._lock:
            if self._waking or self._shutdown:
                return
            if self._idle:
                self._waking += 1
                self._idle.pop().wake.release()
                return
            if self._thread_count >= self._max_workers:
                return  # every worker is busy; each looks for work before parking
            self._thread_count += 1
            self._waking += 1
            self._started += 1
            self._all_exited.clear()
            number = self._started
        # Start the thread outside the lock: Thread.start() waits for the new
        # thread to come up, and workers need the lock meanwhile. On an event
        # loop's thread, the thread is started by the starter thread instead.
        thread = new_thread(self._work, f"{self._name}-{number}")
        try:
            start_thread(thread, self._start_failed)
        except BaseException as exc:
            self._start_failed(exc)
            raise

    def _start_failed(self, exc: BaseException) -> None:
        """A worker thread counted in by ``_wake_one`` could not start: count it out, fail what it strands."""
        stranded: list[Call] = []
        with self._lock:
            self._thread_count -= 1
            self._waking -= 1
            if self._idle:  # others held back while we tried: wake one for them
                self._waking += 1
                self._idle.pop().wake.release()
            elif not self._thread_count:  # nobody at all will run what is queued
                self._all_exited.set()
                while self._pending:
                    queued = self._pending.popleft()
                    if self._unclaim(queued):
                        stranded.append(queued)
        for queued in stranded:
            queued.fail(RuntimeError(f"{self!r} could not start a worker thread: {exc!r}"))

    def _retire(self, worker: _Worker) -> None:
        """Count a worker out; under the lock, in the same section that decides it exits."""
        self._thread_count -= 1
        self._workers.discard(worker)
        retired = self._retired
        retired.completed += worker.completed
        retired.failed += worker.failed
        retired.wait_total += worker.wait_total
        retired.wait_max = max(retired.wait_max, worker.wait_max)
        if not self._thread_count:
            self._all_exited.set()

    def _work(self) -> None:
        worker = _Worker()
        lock = self._lock
        pending = self._pending
        idle = self._idle
        ident = threading.get_ident()
        set_current_executor(self)
        retired = False
        with lock:
            self._thread_ids.add(ident)
            self._workers.add(worker)
        try:
            while True:
                # Awake, and counted in _waking by whoever woke or started us.
                with lock:
                    self._waking -= 1
                call = self._claim()
                if call is not None and pending and not self._waking:
                    try:
                        self._wake_one()  # more work queued: pass the wake-up on
                    except RuntimeError:
                        logger.warning("could not start another worker thread", exc_info=True)
                parked = False
                while call is not None:
                    worker.busy = True
                    waited = _monotonic() - call.enqueued_at
                    worker.wait_total += waited
                    if waited > worker.wait_max:
                        worker.wait_max = waited
                    failed = call.execute()
                    if failed is not None:
                        worker.completed += 1
                        worker.failed += failed
                    worker.busy = False
                    following = self._claim()
                    if following is None:
                        # Park before reporting: once the result is out, the loop
                        # thread wants the GIL, so do our bookkeeping first.
                        with lock:
                            if not self._shutdown:
                                idle.append(worker)
                                parked = True
                    call.finish()  # after the counters, so the caller sees its call counted
                    call = following
                if not parked:
                    with lock:
                        if self._shutdown:
                            # A submit that read the flag before it was set may
                            # have queued a call: run it before leaving.
                            if pending:
                                self._waking += 1
                                continue
                            self._retire(worker)
                            retired = True
                            return
                        idle.append(worker)
                if pending and not self._waking:
                    # A submitter may have queued a call after our last look, and
                    # found nobody parked to wake: take it ourselves.
                    with lock:
                        if worker in idle:
                            idle.remove(worker)
                            self._waking += 1
                            continue
                if worker.wake.acquire(timeout=self._idle_wait):
                    continue
                with lock:
                    if worker in idle:
                        idle.remove(worker)
                        if not pending:
                            # Exit in the same section that counts us out, so a
                            # submitter either finds us parked or starts a thread.
                            self._retire(worker)
                            retired = True
                            return
                        self._waking += 1
                        continue
                worker.wake.acquire()  # woken just as the timeout expired
        finally:
            with lock:
                self._thread_ids.discard(ident)
                if not retired:
                    self._retire(worker)

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
        call = Call(fn, args, kwargs, contextvars.copy_context(), self)
        result: T = await current_inbox().run(call)
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
        self.submit_call(_FutureCall(future, fn, args, kwargs, contextvars.copy_context(), self))
        if not future.done():
            # Kept until done, so that the interpreter's exit waits for it (see _finish_at_exit).
            submitted = self._submitted
            submitted.add(future)
            future.add_done_callback(submitted.discard)
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
            self._waking += len(idle)
        dropped: list[Call] = []
        if cancel_futures:
            while True:
                try:
                    call = self._pending.popleft()
                except IndexError:
                    break
                if self._unclaim(call):
                    dropped.append(call)
        for worker in idle:
            worker.wake.release()  # to see the shutdown, finish the queue and exit
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
        await wait_off_loop(self._all_exited)

    def run_nested_call(self, call: Call, /) -> None:
        """Run, in the calling worker thread, a call delivered by a nested sync_wrap wait."""
        if not self._unclaim(call):
            return  # its caller was cancelled meanwhile
        call.state = RUNNING
        failed = call.execute()
        if failed is not None:
            with self._lock:
                self._retired.completed += 1
                self._retired.failed += failed
        call.finish()

    def reject_routed_call(self, call: Call, exc: BaseException, /) -> None:
        """Fail a call that a route took but will never run (its pinned thread could not start)."""
        if self._unclaim(call):
            call.fail(exc)

    def statistics(self) -> ExecutorStatistics:
        """Return a snapshot of the pool's state: workers, running, queued, totals, waits."""
        with self._lock:
            workers = [*self._workers, self._retired]
            return ExecutorStatistics(
                max_workers=self._max_workers,
                workers=self._thread_count,
                running=sum(w.busy for w in workers),
                queued=len(self._claims),
                completed=sum(w.completed for w in workers),
                failed=sum(w.failed for w in workers),
                total_wait_time=sum(w.wait_total for w in workers),
                max_wait_time=max(w.wait_max for w in workers),
            )


# -- interpreter exit --------------------------------------------------------------------

EXIT_GRACE = 5.0
"""Seconds the interpreter's exit waits, at most, for calls started by awaiting tasks (abandoned ones included).

Work accepted by ``submit()`` and ``map()`` is waited for without a bound, as
``concurrent.futures`` promises; a call whose awaiting caller has gone (it was
cancelled or timed out, and the call runs on) must not hold the exit up for
ever, so once the submitted work is done the executors are shut down and their
threads get this long to finish. Whatever still runs then is stopped with the
interpreter, like any daemon thread.
"""


class _ExitWatch:
    """What the interpreter's exit waits for in one executor: its submit()ted futures, then its threads."""

    __slots__ = ("all_exited", "submitted")

    def __init__(self, submitted: set[cf.Future[Any]], all_exited: threading.Event) -> None:
        self.submitted = submitted
        self.all_exited = all_exited


_live: weakref.WeakKeyDictionary[ThreadExecutor, _ExitWatch] = weakref.WeakKeyDictionary()


def _finish_at_exit() -> None:
    """At interpreter exit: finish the submit()ted work of every executor, then give the rest EXIT_GRACE."""
    while True:
        pending = [future for watch in list(_live.values()) for future in list(watch.submitted)]
        if not pending:
            break
        cf.wait(pending)
    deadline = time.monotonic() + EXIT_GRACE
    executors = list(_live.items())
    for executor, _ in executors:
        executor.shutdown(wait=False, cancel_futures=True)
    for _, watch in executors:
        if not watch.all_exited.wait(max(0.0, deadline - time.monotonic())):
            break


# threading runs these before it waits for non-daemon threads, as concurrent.futures does, so the
# worker threads that the waiting needs can still be started; atexit would run too late for that.
_register_atexit: Callable[[Callable[[], None]], object] = getattr(threading, "_register_atexit", atexit.register)
_register_atexit(_finish_at_exit)

_default_lock = threading.Lock()
_default: ThreadExecutor | None = None


def _forget_default_after_fork() -> None:
    # A forked child has none of the parent's threads: the parent's default
    # executor would count dead workers as parked. The child makes its own.
    global _default
    _default = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_default_after_fork)


def get_default_executor() -> ThreadExecutor:
    """Return the thread executor used when none is given, creating it on first use.

    Its size is ``DEFAULT_MAX_THREADS`` (40), or the value of the
    ``ASYNCBRIDGE_MAX_THREADS`` environment variable when set. It is shared by
    every event loop and thread of the process, so its bound holds across them.

    Raises:
        ValueError: ``ASYNCBRIDGE_MAX_THREADS`` is set to something other than a
            whole number of at least 1.

    Example:
        ```python
        from asyncbridge import get_default_executor, to_thread

        await to_thread(print, "hello")  # runs on the default executor
        print(get_default_executor().statistics())  # ExecutorStatistics(max_workers=40, ...)
        ```
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
                check_count(size, MAX_THREADS_ENV)
            _default = ThreadExecutor(size, name="asyncbridge-default")
        return _default


def set_default_executor(executor: ThreadExecutor) -> ThreadExecutor | None:
    """Make ``executor`` the thread executor used when none is given; return the old one.

    Call it at startup, for example ``set_default_executor(ThreadExecutor(100))``
    to allow 100 threads instead of 40. Calls already running keep their
    executor; the old one is returned, not shut down, so you can shut it down.

    Raises:
        TypeError: ``executor`` is not a :class:`ThreadExecutor`.

    Example:
        ```python
        from asyncbridge import ThreadExecutor, get_default_executor, set_default_executor

        set_default_executor(ThreadExecutor(100))  # at startup, before any call
        assert get_default_executor().max_workers == 100
        ```
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
