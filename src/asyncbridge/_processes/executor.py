"""The public face of the process pool: ProcessExecutor, to_process and its default executor.

Also what outlives any one executor: stopping every pool's workers at
interpreter exit, and forgetting the parent's workers in a child made by
``os.fork()``. The machinery is in :mod:`.pool` (the state, under its lock)
and :mod:`.manager` (the thread that runs the workers).
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import functools
import itertools
import multiprocessing.context
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator
from importlib import import_module
from typing import Any, TypeVar

from typing_extensions import ParamSpec

from .._backends import current_inbox
from .._call import Call
from .._checks import check_count, check_seconds, check_seconds_or_never
from .._exceptions import ExecutorShutdownError
from .._executor import ExecutorBase, check_buffersize, submit_ahead, wait_off_loop
from .._reference import function_reference
from .._statistics import ExecutorStatistics
from .framing import framed
from .launch import usable_cpus
from .manager import manage, reset_after_fork
from .pickling import MapChunk, chunk_error, chunk_pieces, describe_function, dumps
from .pool import STOP_GRACE, Pool
from .records import SubmittedCall

__all__ = ["ProcessExecutor", "get_default_process_executor", "set_default_process_executor", "to_process"]

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_IDLE_TIMEOUT = 300.0  # seconds; the same as anyio's to_process. Not tuned
DEFAULT_START_TIMEOUT = 20.0  # seconds; the same as anyio's to_process. Not tuned

_pools: weakref.WeakSet[Pool] = weakref.WeakSet()

# multiprocessing's own exit hook waits for every child it started that is not
# a daemon, mp_context workers included; ours must run first and stop them.
# atexit runs hooks last registered first, so make sure its hook is in before ours.
import_module("multiprocessing.util")


EXIT_GRACE = 5.0
"""Seconds the interpreter's exit waits, at most, for calls other than ``submit()``ted ones.

As in :mod:`asyncbridge._threads`: work accepted by ``submit()`` and ``map()``
is waited for, as ``concurrent.futures`` promises (a worker that cannot start
ends its calls within ``start_timeout``); then the pools are shut down with
their queued calls cancelled, and what still runs (a call whose awaiting task
is gone with its loop) gets this long before its worker is killed.
"""


def _shutdown_at_exit() -> None:
    """At interpreter exit: finish the submit()ted calls of every pool, then stop every worker within EXIT_GRACE."""
    pools = list(_pools)
    for pool in pools:
        pool.begin_shutdown(cancel_futures=False)
    while True:
        pending = [future for pool in pools for future in pool.unfinished_futures()]
        if not pending:
            break
        cf.wait(pending)
    for pool in pools:
        _fail_dropped(pool.begin_shutdown(cancel_futures=True), "the interpreter is exiting")
    deadline = time.monotonic() + EXIT_GRACE
    for pool in pools:
        if pool.manager_ident == threading.get_ident():
            continue
        if not pool.all_exited.wait(max(0.0, deadline - time.monotonic())):
            pool.kill_workers()  # the manager reaps them at once; a call they ran fails
            pool.all_exited.wait(STOP_GRACE)


def _fail_dropped(calls: list[Call], why: str) -> None:
    """End the queued calls a shutdown dropped: cancel their Futures, fail the awaited ones."""
    for call in calls:
        if isinstance(call, SubmittedCall) and call.future.cancel():
            call.drop()
        else:  # an awaited call, or a Future already running (re-queued after its worker died)
            call.fail(ExecutorShutdownError(f"{why} before this call started"))


atexit.register(_shutdown_at_exit)


def _reset_pools_after_fork() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    for pool in list(_pools):
        reset_after_fork(pool)


# -- the public API ------------------------------------------------------------


class ProcessExecutor(ExecutorBase):
    """A bounded pool of worker processes for CPU-bound work, awaited from asyncio, uvloop or trio.

    It is a :class:`concurrent.futures.Executor` (``submit``, ``map``,
    ``shutdown``, ``with``), a drop-in for ``ProcessPoolExecutor``, and adds
    ``await executor.run(fn, *args)``, which :func:`asyncbridge.async_wrap` uses
    with ``async_wrap(executor=ProcessExecutor())``. The equivalent plain code is
    ``await loop.run_in_executor(ProcessPoolExecutor(max_workers), functools.partial(fn, *args))``,
    except that here:

    - a worker that dies mid-call (killed, ``os._exit``, a segfault) fails only
      that call, with :class:`WorkerCrashedError` naming its pid and exit code
      or signal, and is replaced; the pool never breaks;
    - cancelling the await (or a timeout) kills the worker running the call and
      ends the await at once; a call still queued is dropped;
    - the call is pickled in the caller's thread first, so an unpicklable
      function, argument or result raises a ``TypeError`` or
      ``pickle.PicklingError`` at once, naming it;
    - what workers print or log goes to the parent's stdout and stderr, and the
      calls travel on pipes of their own;
    - workers that cannot start stop being respawned: calls fail fast with
      :class:`WorkerStartError` saying why, until a start succeeds; a start
      that hangs (an initializer that never returns) is killed after
      ``start_timeout``, so nothing waits for it for ever;
    - ``map(..., chunksize=n)`` sends ``n`` calls per worker job, as the
      stdlib pool does.

    Workers start on first use (fresh interpreters, which is safe in threaded
    programs; see ``mp_context``), run calls one at a time, are reused most
    recently used first, and exit after ``idle_timeout`` seconds idle.

    Args:
        max_workers: the most worker processes at once; None for the number
            of CPUs this process may use.
        max_tasks_per_child: replace a worker after it ran this many calls
            (a cure for leaky code); None to keep workers.
        initializer: called with ``*initargs`` in each worker before its first
            call; if it raises, the worker does not start.
        initargs: arguments for ``initializer``.
        mp_context: a :mod:`multiprocessing` context to start workers with
            (such as ``multiprocessing.get_context("forkserver")``); None for
            asyncbridge's own launcher, a fresh interpreter by fork+exec that
            imports the main module only when a call needs it.
        idle_timeout: seconds an idle worker waits for a call before it exits;
            None (or ``math.inf``) to keep idle workers until shutdown.
        start_timeout: seconds a worker may take to start, ``initializer``
            included; one that is not ready by then is killed, and counts as
            a failed start. A finite number: a start that hangs (an
            initializer waiting on a server that never answers) must not
            hold its calls, the pool's shutdown or the interpreter's exit for
            ever; raise it for an initializer that is slow on purpose.

    Raises:
        TypeError: an argument has the wrong type.
        TypeError | pickle.PicklingError: ``initializer`` or ``initargs`` cannot
            be pickled.
        ValueError: ``max_workers`` or ``max_tasks_per_child`` below 1,
            ``idle_timeout`` zero, negative or NaN, or ``start_timeout`` not
            a positive, finite number.
        NotImplementedError: on Windows, not supported yet.

    Example:
        Await CPU-bound calls from any event loop; ``async with`` shuts the pool down:

        ```python
        import math
        from asyncbridge import ProcessExecutor

        async with ProcessExecutor(max_workers=2) as executor:
            await executor.warm_up()  # start both workers before the first call
            assert await executor.run(math.factorial, 20) == 2432902008176640000
            print(executor.statistics())  # ExecutorStatistics(max_workers=2, workers=2, ...)
        ```

        From sync code, it is a ``ProcessPoolExecutor``:

        ```python
        import math
        from asyncbridge import ProcessExecutor

        executor = ProcessExecutor(max_workers=2)
        assert executor.submit(math.factorial, 5).result() == 120
        assert list(executor.map(math.isqrt, [4, 9, 16], chunksize=2)) == [2, 3, 4]
        executor.shutdown()
        ```
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        max_tasks_per_child: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        mp_context: multiprocessing.context.BaseContext | None = None,
        idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
        start_timeout: float = DEFAULT_START_TIMEOUT,
    ) -> None:
        if sys.platform == "win32":  # pragma: no cover
            raise NotImplementedError("ProcessExecutor does not support Windows yet")
        workers = usable_cpus() if max_workers is None else check_count(max_workers, "max_workers")
        if max_tasks_per_child is not None:
            check_count(max_tasks_per_child, "max_tasks_per_child")
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable or None, got {type(initializer).__name__}")
        if not isinstance(initargs, tuple):
            raise TypeError(f"initargs must be a tuple, got {type(initargs).__name__}")
        if mp_context is not None and not isinstance(mp_context, multiprocessing.context.BaseContext):
            raise TypeError(
                "mp_context must be a multiprocessing context (multiprocessing.get_context(...)) or None, "
                f"got {type(mp_context).__name__}"
            )
        idle = check_seconds_or_never(idle_timeout, "idle_timeout", "workers are never retired")
        start = check_seconds(start_timeout, "start_timeout")
        init: bytes | None = None
        init_name = ""
        if initializer is not None:
            init_name = describe_function(initializer)
            init = dumps(
                (initializer, initargs),
                lambda: [
                    (f"the initializer {init_name}", initializer),
                    *((f"initargs[{i}]", arg) for i, arg in enumerate(initargs)),
                ],
                initializer,
            )
        self._pool = Pool(workers, max_tasks_per_child, init, init_name, mp_context, idle, start, manage)
        _pools.add(self._pool)
        # Dropped without shutdown(): stop the workers once their calls are done.
        self._finalizer = weakref.finalize(self, self._pool.begin_shutdown, False)

    def __repr__(self) -> str:
        pool = self._pool
        state = "shut down" if pool.shutdown else f"{len(pool.workers)} workers"
        return f"<ProcessExecutor max_workers={pool.max_workers}, {state}>"

    @property
    def max_workers(self) -> int:
        """The most worker processes at once."""
        return self._pool.max_workers

    # -- the hand-off, used by the loop side (see _call.CallExecutor) ----------

    def submit_call(self, call: Call, /) -> None:
        self._pool.submit(call, self)

    def drop_call(self, call: Call, /) -> bool:
        return self._pool.drop(call)

    # -- public API -----------------------------------------------------------

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` in a worker process and return its result.

        If the awaiting task is cancelled (or times out), the worker running
        the call is killed and the await ends at once with the backend's
        cancellation; a call still waiting for a worker is dropped.

        Raises:
            ExecutorShutdownError: the executor is shut down.
            TypeError | pickle.PicklingError: ``fn``, an argument or the result
                cannot be pickled.
            WorkerCrashedError: the worker died during the call.
            WorkerStartError: worker processes keep failing to start.
            BaseException: whatever ``fn`` raised, with the same type and
                message, the worker's traceback as its ``__cause__``.
        """
        call = Call(fn, args, kwargs, None, self)
        result: T = await current_inbox().run(call)
        return result

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> cf.Future[T]:
        """Schedule ``fn(*args, **kwargs)`` in a worker process; return a Future for its outcome.

        As ``ProcessPoolExecutor.submit``, but a call that cannot be pickled
        raises here at once, and a crashed worker fails only its own call.
        ``Future.cancel()`` keeps the concurrent.futures contract: it cancels
        a call that has not started; use ``await executor.run(...)`` to have
        cancellation kill a running call.

        Raises:
            ExecutorShutdownError: the executor is shut down (a RuntimeError).
            TypeError | pickle.PicklingError: ``fn`` or an argument cannot be pickled.
            WorkerStartError: worker processes keep failing to start.
        """
        future: cf.Future[T] = cf.Future()
        self._pool.submit(SubmittedCall(future, fn, args, kwargs, self), self)
        return future

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[T]:
        """Return an iterator of ``fn(*args)`` for each ``args`` of ``zip(*iterables)``, in order.

        As ``ProcessPoolExecutor.map`` of Python 3.14, on every Python: every
        call is submitted at once, or with ``buffersize`` only that many worker
        jobs at first and one more each time a result is taken, so an endless
        or huge iterable can be mapped with bounded memory. The iterator raises
        ``TimeoutError`` if a result is not there ``timeout`` seconds after
        this call, and an exception a call raised when its item is reached.
        With ``chunksize`` above 1 the items travel ``chunksize`` to a worker
        job (``buffersize`` then counts jobs, as in the stdlib), which saves a
        round trip per item for small calls; if a call in a chunk raises, the
        results before it still come first, and the calls after it in that
        chunk do not run.

        Raises:
            ValueError: ``chunksize`` or ``buffersize`` below 1.
            TypeError: ``chunksize`` not an int, ``buffersize`` neither an int nor None.
            ExecutorShutdownError: the executor is shut down.
            TypeError | pickle.PicklingError: ``fn`` or an item cannot be pickled.
        """
        if isinstance(chunksize, bool) or not isinstance(chunksize, int):
            raise TypeError(f"chunksize must be an int, got {type(chunksize).__name__} {chunksize!r}")
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")  # the stdlib's words
        if chunksize == 1:
            return super().map(fn, *iterables, timeout=timeout, buffersize=buffersize)
        check_buffersize(buffersize)
        reference = function_reference(fn)
        runner = MapChunk(reference)
        no_kwargs: dict[str, Any] = {}

        def submit_chunk(executor: ProcessExecutor, chunk: tuple[Any, ...]) -> cf.Future[tuple[list[T], bytes | None]]:
            frame = framed(dumps((runner, (chunk,), no_kwargs), functools.partial(chunk_pieces, fn, chunk), reference))
            future: cf.Future[tuple[list[T], bytes | None]] = cf.Future()
            executor._pool.submit(SubmittedCall(future, runner, (chunk,), no_kwargs, executor), executor, frame)
            return future

        items = zip(*iterables, strict=False)
        chunks = iter(lambda: tuple(itertools.islice(items, chunksize)), ())
        return _chain_chunks(fn, submit_ahead(self, submit_chunk, chunks, timeout, buffersize))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting calls; with ``wait``, block until every worker process has exited.

        Running calls finish; queued calls still run, unless ``cancel_futures``
        is true: then their Futures are cancelled and their awaiting callers get
        :class:`ExecutorShutdownError`. Then the workers exit. Safe to call more
        than once. In async code use ``aclose()`` (or ``async with``), which
        waits without blocking the event loop.
        """
        pool = self._pool
        self._finalizer.detach()
        _fail_dropped(pool.begin_shutdown(cancel_futures), f"{self!r} was shut down")
        if wait and threading.get_ident() != pool.manager_ident:
            pool.all_exited.wait()

    async def aclose(self) -> None:
        """Shut down like ``shutdown(wait=True)``, without blocking the event loop.

        Cancelling the wait leaves the executor shut down; its workers finish
        their calls and exit on their own.
        """
        self.shutdown(wait=False)
        pool = self._pool
        if pool.all_exited.is_set():
            return
        await wait_off_loop(pool.all_exited)

    async def warm_up(self, workers: int | None = None) -> None:
        """Start worker processes ahead of traffic; return once they answer.

        Starts workers until ``workers`` (all ``max_workers`` by default) are
        running, and returns once each has started and run the initializer,
        so the first calls do not pay for a start (tens of milliseconds for a
        light module, much more for one that imports a web framework). Call it
        in your app's lifespan. Warm workers still exit after ``idle_timeout``
        without calls; pass ``idle_timeout=None`` to keep them.

        Raises:
            TypeError | ValueError: ``workers`` is not an int from 1 to ``max_workers``.
            ExecutorShutdownError: the executor is shut down (also if it is shut down meanwhile).
            WorkerStartError: workers keep failing to start (their initializer raises or hangs).
        """
        pool = self._pool
        wanted = pool.max_workers if workers is None else check_count(workers, "workers")
        if wanted > pool.max_workers:
            raise ValueError(f"workers must be at most max_workers ({pool.max_workers}), got {wanted}")
        ready = pool.warm_up(wanted, self)
        if not ready.is_set():
            await wait_off_loop(ready)
        with pool.lock:
            if pool.alive - pool.starting >= wanted:
                return
            if pool.shutdown:
                raise ExecutorShutdownError(f"{self!r} was shut down while it warmed up")
            raise pool.start_error_locked()

    def statistics(self) -> ExecutorStatistics:
        """Return a snapshot of the pool's state: workers, running, queued, totals, waits."""
        return self._pool.statistics()


def _chain_chunks(fn: Callable[..., T], chunks: Generator[tuple[list[T], bytes | None], None, None]) -> Iterator[T]:
    """The results of map()'s chunks in order, an exception at its item (stdlib: _chain_from_iterable_of_lists)."""
    try:
        for results, error in chunks:
            yield from results
            if error is not None:
                raise chunk_error(fn, error)
    finally:
        chunks.close()  # cancels the chunks not started


_default_lock = threading.Lock()
_default: ProcessExecutor | None = None
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pools_after_fork)


MAX_PROCESSES_ENV = "ASYNCBRIDGE_MAX_PROCESSES"


def get_default_process_executor() -> ProcessExecutor:
    """Return the process executor that :func:`to_process` uses, creating it on first use.

    It has one worker per usable CPU, or the number in the
    ``ASYNCBRIDGE_MAX_PROCESSES`` environment variable when set; it is shut
    down at interpreter exit.

    Raises:
        ValueError: ``ASYNCBRIDGE_MAX_PROCESSES`` is set to something other than a
            whole number of at least 1.

    Example:
        In your app's startup, so that the first :func:`to_process` call does not wait for a start:

        ```python
        from asyncbridge import get_default_process_executor

        await get_default_process_executor().warm_up(1)
        ```
    """
    global _default
    executor = _default
    if executor is None:
        with _default_lock:
            if _default is None:
                raw = os.environ.get(MAX_PROCESSES_ENV)
                size: int | None = None
                if raw is not None:
                    try:
                        size = int(raw)
                    except ValueError:
                        raise ValueError(
                            f"{MAX_PROCESSES_ENV} must be a whole number of processes (at least 1), got {raw!r}"
                        ) from None
                    check_count(size, MAX_PROCESSES_ENV)
                _default = ProcessExecutor(size)
            executor = _default
    return executor


def set_default_process_executor(executor: ProcessExecutor) -> ProcessExecutor | None:
    """Make ``executor`` the one :func:`to_process` uses; return the old one (not shut down).

    For example ``set_default_process_executor(ProcessExecutor(4, initializer=setup))``
    at startup, then ``await get_default_process_executor().warm_up()`` in the
    app's lifespan.

    Raises:
        TypeError: ``executor`` is not a :class:`ProcessExecutor`.

    Example:
        ```python
        from asyncbridge import ProcessExecutor, set_default_process_executor, to_process

        set_default_process_executor(ProcessExecutor(max_workers=2))  # at startup
        assert await to_process(abs, -3) == 3  # runs in one of its workers
        ```
    """
    global _default
    if not isinstance(executor, ProcessExecutor):
        raise TypeError(
            f"set_default_process_executor() expects a ProcessExecutor, got {type(executor).__name__}; "
            "pass another executor to async_wrap(executor=...) instead"
        )
    with _default_lock:
        old, _default = _default, executor
    return old


async def to_process(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``fn(*args, **kwargs)`` in a worker process and return its result.

    The one-off form of :class:`ProcessExecutor`, like ``anyio.to_process.run_sync``
    but with keyword arguments. It uses the default process executor (:func:`get_default_process_executor`):
    one worker per usable CPU unless set otherwise, created on first use and
    shut down at interpreter exit. Cancelling the await kills the
    worker running the call.

    Raises:
        TypeError | pickle.PicklingError: ``fn``, an argument or the result
            cannot be pickled.
        WorkerCrashedError: the worker died during the call.
        WorkerStartError: worker processes keep failing to start.
        BaseException: whatever ``fn`` raised, with the worker's traceback as
            its ``__cause__``.

    Example:
        ```python
        import math
        from asyncbridge import to_process

        assert await to_process(math.factorial, 20) == 2432902008176640000
        assert await to_process(int, "ff", base=16) == 255  # keyword arguments too
        ```
    """
    executor = get_default_process_executor()
    call = Call(fn, args, kwargs, None, executor)
    result: T = await current_inbox().run(call)
    return result
