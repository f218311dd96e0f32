"""pinned_thread: run every thread call of a scope on one thread, for sync code bound to its thread.

Django keeps one database connection per thread and a transaction lives on
that connection; ``sqlite3`` objects refuse other threads; thread-local
sessions, GUI and COM objects behave the same. Two ``async_wrap`` calls
usually run on two different threads of the pool, so a transaction opened by
the first is not the one the second commits. Inside ``async with
pinned_thread():`` they share one thread.

How: entering the scope submits a *server* call to the executor, which takes
one of its threads (one of its ``max_workers`` slots) for the scope, and sets
the context's call route (``_call.call_route``) to a :class:`PinnedRoute`. A
call made in that context (by the task, or by tasks it starts inside the
scope, which copy its context) is claimable by the executor as usual, but is
queued for the server instead of the pool, and the server runs the calls one
after another. ``sync_wrap`` back into the loop from the pinned thread keeps
the coroutine's calls on that thread (``_portal._Wait`` takes them for itself
while it waits). Leaving the scope closes the route (later calls go to the
pool) and lets the server finish the calls already queued, then return its
thread. Nothing is pinned outside a scope: there is no process-wide thread.
"""

from __future__ import annotations

import queue
import threading
from types import TracebackType
from typing import Any

from ._call import Call, call_route
from ._threads import ThreadExecutor, get_default_executor

__all__ = ["PinnedRoute", "pinned_thread"]

_STOP = object()


class PinnedRoute:
    """The route of a pinned_thread scope: calls on ``executor`` made in the scope go to its one thread."""

    pins_thread = True  # read by _portal._Wait: a sync_wrap wait on this thread keeps the calls

    def __init__(self, executor: ThreadExecutor) -> None:
        self.executor = executor
        self.thread_ident: int | None = None  # the pinned thread, once its server runs
        self.thread_name: str | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._open = True
        self._failed: BaseException | None = None

    def deliver(self, call: Call, /) -> bool:
        """Take ``call`` for the pinned thread, unless the scope is over or the call comes from that thread itself.

        A call that the pinned thread makes and waits for in sync code (say,
        ``executor.submit(g).result()``) cannot run on that same thread: it
        goes to the pool, rather than deadlock.
        """
        if threading.get_ident() == self.thread_ident:
            return False
        with self._lock:
            if self._failed is not None:
                failed = self._failed
            elif self._open:
                self._queue.put(call)
                return True
            else:
                return False
        self.executor.reject_routed_call(call, failed)
        return True

    def is_open(self) -> bool:
        return self._open

    def close(self) -> None:
        """The scope is over: later calls go to the pool; the server runs what is queued, then stops."""
        with self._lock:
            self._open = False
            self._queue.put(_STOP)

    def serve(self) -> None:
        """In the pinned thread, for the whole scope: run the scope's calls one after another."""
        current = threading.current_thread()
        self.thread_ident, self.thread_name = current.ident, current.name
        get = self._queue.get
        run = self.executor.run_nested_call
        while True:
            item = get()
            if item is _STOP:
                return
            run(item)

    def fail(self, exc: BaseException) -> None:
        """The server never ran (the executor shut down, or no thread could start): fail the scope's calls."""
        with self._lock:
            self._failed = exc
            self._open = False
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                self.executor.reject_routed_call(item, exc)


class _ServerCall(Call):
    """The call that holds the pinned thread for a scope; it has no awaiting task."""

    __slots__ = ("route",)

    def __init__(self, route: PinnedRoute) -> None:
        super().__init__(route.serve, (), {}, None, route.executor)
        self.route = route

    def finish(self) -> None:
        exc = self.exc
        super().finish()  # no inbox: an exception is logged
        if exc is not None:
            self.route.fail(exc)

    def fail(self, exc: BaseException) -> None:
        self.route.fail(exc)
        self.drop()


class pinned_thread:
    """Run every asyncbridge thread call of this scope on one thread of the executor, held for the scope.

    Inside the scope, the calls that this task makes through ``async_wrap``,
    ``to_thread`` and ``ThreadExecutor.run``/``submit`` on ``executor`` (the
    default executor if None), and those of tasks it starts inside the scope,
    run on one thread of that executor, one at a time, in the order they are
    made. Scopes in different tasks get different threads and run in parallel.
    The scope takes one of the executor's ``max_workers`` slots until it ends,
    so the executor's bound still holds. Calls on other executors are not
    affected; ``sync_wrap`` back into the loop from the pinned thread keeps the
    coroutine's calls on that thread. A scope nested in another on the same
    executor keeps the outer scope's thread. Generator steps of an
    ``async_wrap``'d generator are not pinned.

    Raises:
        TypeError: ``executor`` is not a :class:`ThreadExecutor`.
        ExecutorShutdownError: the executor is shut down.

    Example:
        A sqlite3 connection may only be used on the thread that opened it:

        ```python
        import sqlite3
        from asyncbridge import pinned_thread, to_thread

        async with pinned_thread() as scope:
            db = await to_thread(sqlite3.connect, ":memory:")
            await to_thread(db.execute, "create table t (x)")  # same thread, every call
            await to_thread(db.execute, "insert into t values (1)")
            assert await to_thread(lambda: db.execute("select x from t").fetchall()) == [(1,)]
            await to_thread(db.close)
            print(scope.thread_name)  # asyncbridge-default-...
        ```
    """

    def __init__(self, executor: ThreadExecutor | None = None) -> None:
        if executor is not None and not isinstance(executor, ThreadExecutor):
            raise TypeError(
                f"pinned_thread() needs an asyncbridge ThreadExecutor (or None for the default one), got "
                f"{type(executor).__name__} {executor!r}"
            )
        self._executor = executor
        self._route: PinnedRoute | None = None
        self._token: Any = None

    @property
    def thread_name(self) -> str | None:
        """The name of the pinned thread once it runs (None before, and for a scope that reuses an outer one)."""
        return None if self._route is None else self._route.thread_name

    async def __aenter__(self) -> pinned_thread:
        if self._token is not None:
            raise RuntimeError("this pinned_thread scope is already active; create a new one to nest scopes")
        executor = get_default_executor() if self._executor is None else self._executor
        outer = call_route.get()
        if isinstance(outer, PinnedRoute) and outer.executor is executor and outer.is_open():
            self._token = call_route.set(outer)  # the outer scope's thread serves this one too
            return self
        route = PinnedRoute(executor)
        self._route = None
        executor.submit_call(_ServerCall(route))
        self._route = route
        self._token = call_route.set(route)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        token, self._token = self._token, None
        call_route.reset(token)
        if self._route is not None:
            self._route.close()  # kept, for thread_name
