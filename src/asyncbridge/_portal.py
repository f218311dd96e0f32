"""sync_wrap: call async code from sync code, on the right event loop.

Where the coroutine runs depends on the calling thread:

- a worker thread that asyncbridge started for an event loop (``async_wrap``,
  ``to_thread``, ``ThreadExecutor.run``): on that same loop, asyncio or trio,
  so objects bound to it (locks, queues, connections) work;
- a thread with no event loop: on a background loop (asyncio, or trio with
  ``backend="trio"``) that lives in a daemon thread, started on first use and
  reused by every such call (one loop, not one per call), and closed at
  interpreter exit (``_background.py``);
- an event loop's own thread: nowhere. Blocking that thread to wait for a
  coroutine that needs it would deadlock, so it raises at once.

While the worker waits, it also serves: a call that the coroutine makes on
the worker's own executor is delivered to the waiting worker and run there, in
the slot the worker already holds (what asgiref's thread-sensitive mode does,
scoped to this one wait). So ``ThreadExecutor(max_workers=1)`` running ``f``,
which calls a sync_wrap'd ``g``, which awaits an ``async_wrap``'d ``h`` on the
same executor, completes instead of waiting forever for a second thread.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.util
import inspect
import queue
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol, TypeVar, overload

from typing_extensions import ParamSpec

from ._backends import Inbox, in_event_loop_thread
from ._background import background_inbox
from ._call import Call, NestingExecutor, Route, call_route, current_call, current_executor

__all__ = ["sync_wrap"]

P = ParamSpec("P")
T = TypeVar("T")

_FINISHED = object()

_POLL = 1.0  # seconds between checks that the loop we wait on is still alive


class _SyncWrapDecorator(Protocol):
    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, T]: ...


@overload
def sync_wrap(fn: Callable[P, Awaitable[T]], /) -> Callable[P, T]: ...


@overload
def sync_wrap(*, backend: Literal["asyncio", "trio"] = "asyncio") -> _SyncWrapDecorator: ...


def sync_wrap(
    fn: Callable[..., Awaitable[Any]] | None = None, /, *, backend: Literal["asyncio", "trio"] = "asyncio"
) -> Any:
    """Turn an async function into a sync one that runs it on an event loop and waits.

    Usable bare (``@sync_wrap``) or called (``@sync_wrap()``,
    ``@sync_wrap(backend="trio")``). The equivalent plain code is
    ``anyio.from_thread.run(fetch, url)`` in a
    worker thread, or ``asyncio.run(fetch(url))`` elsewhere, minus their
    traps. Called from a worker thread that asyncbridge started for an event
    loop, the coroutine runs on that loop; called from a thread with no loop,
    on a shared background loop of ``backend``: asyncio by default, or
    ``"trio"`` for trio-native coroutines (as anyio's blocking portal offers).
    The caller's context variables are visible in the coroutine. The
    signature, name and docstring are kept.

    If the async caller that started the worker was cancelled, the call
    raises that cancellation instead of starting new async work; if it is
    cancelled while the coroutine runs, the coroutine is cancelled too.

    Args:
        fn: the async function, in the bare form.
        backend: the event loop library of the background loop used from
            threads without a loop ("asyncio" or "trio"). A worker thread that
            asyncbridge started for a loop always uses that loop.

    Raises:
        TypeError: at decoration, ``fn`` is not an async function.
        ValueError: ``backend`` is neither "asyncio" nor "trio".
        ImportError: ``backend="trio"`` without trio installed.
        RuntimeError: called on an event loop's own thread, where waiting would
            deadlock: ``await`` the async function there instead.
        BaseException: whatever the coroutine raised, unchanged.

    Example:
        Sync code in a worker thread calls back into the event loop that awaits it:

        ```python
        import anyio
        from asyncbridge import async_wrap, sync_wrap


        @sync_wrap
        async def fetch(key: str) -> str:
            await anyio.sleep(0.01)  # async I/O, an HTTP client say
            return key.upper()


        @async_wrap
        def legacy_handler(keys: list[str]) -> list[str]:  # sync code, in a worker thread
            return [fetch(key) for key in keys]  # each fetch runs on the awaiting loop


        assert await legacy_handler(["a", "b"]) == ["A", "B"]
        ```

        From a plain script, with no event loop, on a background loop:

        ```python
        import anyio
        from asyncbridge import sync_wrap


        @sync_wrap
        async def fetch(key: str) -> str:
            await anyio.sleep(0.01)
            return key.upper()


        assert fetch("a") == "A"
        ```
    """

    if backend not in ("asyncio", "trio"):
        raise ValueError(f"sync_wrap(backend=...) must be 'asyncio' or 'trio', got {backend!r}")
    if backend == "trio" and importlib.util.find_spec("trio") is None:
        raise ImportError("sync_wrap(backend='trio') needs trio: pip install asyncbridge[trio]")

    def decorate(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        if not inspect.iscoroutinefunction(fn):
            what = "not callable" if not callable(fn) else "a sync function"
            name = getattr(fn, "__qualname__", None) or repr(fn)
            raise TypeError(
                f"sync_wrap() expects an async function; {name!r} is {what}. "
                "Call a sync function directly, or use async_wrap to make it awaitable"
            )

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return _call(fn, args, kwargs, backend)

        return wrapper

    if fn is None:
        return decorate
    return decorate(fn)


def _call(
    fn: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    backend: Literal["asyncio", "trio"],
) -> Any:
    if in_event_loop_thread():
        name = getattr(fn, "__qualname__", repr(fn))
        raise RuntimeError(
            f"sync_wrap: {name}() was called on an event loop's own thread, where waiting for it would "
            f"deadlock the loop; use 'await {name}(...)' there instead (the async original is "
            "available as __wrapped__), or call the sync version from a worker thread (async_wrap, to_thread)"
        )
    ctx = contextvars.copy_context()
    outer = current_call()
    executor = current_executor()
    if outer is not None and outer.inbox is not None:
        wait = _Wait(fn, args, kwargs, ctx, executor)
        inbox: Inbox = outer.inbox
        # Publish the wait before looking for a cancellation: the loop thread
        # writes raise_cancel before it reads nested, so one of us sees the other.
        outer.nested = wait
        try:
            if outer.raise_cancel is not None:
                outer.raise_cancel()  # the caller that started this worker has gone
            return wait.run_on(inbox)
        finally:
            outer.nested = None
    # No loop of our own: a plain thread, or a worker running a submit()ed call.
    return _Wait(fn, args, kwargs, ctx, executor).run_on(background_inbox(backend), ours=True)


class _Wait:
    """One sync_wrap call in progress: the coroutine on its loop, the worker waiting for it.

    A :class:`~asyncbridge._call.Job` for the loop's backend, which runs
    ``body`` in a task; and a :class:`~asyncbridge._call.Nested` wait for the
    worker's executor, which may deliver calls to it.
    """

    pins_thread = False  # a Route that does not pin: calls go back to the pool after the wait

    def __init__(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        ctx: contextvars.Context,
        executor: object,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.executor = executor
        self.ctx = ctx
        # Where calls went before this wait: a pinned_thread scope's thread, whose calls
        # this waiting thread now takes for itself; calls made after the wait go back there.
        parent = ctx.get(call_route)
        self.parent: Route | None = parent if parent is not None and parent.pins_thread else None
        self.exclusive = self.parent is not None
        # Always set: a context copied from an earlier nested call may name a wait that is over.
        ctx.run(call_route.set, self if executor is not None else None)
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._open = True
        self.result: Any = None
        self.exc: BaseException | None = None
        self.cancel_requested = False
        self._cancel: Callable[[], object] | None = None

    # -- loop side ------------------------------------------------------------

    async def body(self, checkpoint: Callable[[], Awaitable[None]] | None = None, /) -> None:
        try:
            if checkpoint is not None:
                await checkpoint()  # trio: a cancel that came before the start wins
            self.result = await self.fn(*self.args, **self.kwargs)
        except BaseException as exc:  # handed to the waiting thread, which re-raises it
            self.exc = exc
        finally:
            self.queue.put(_FINISHED)

    def set_canceller(self, cancel: Callable[[], object] | None, /) -> None:
        self._cancel = cancel

    def finish_unstarted(self, exc: BaseException, /) -> None:
        self.exc = exc
        self.queue.put(_FINISHED)

    def deliver(self, call: Call) -> bool:
        """Offer this worker a call the coroutine made on its executor (any thread).

        Usually the call is also in the executor's queue, and whoever claims it
        first runs it. Inside a pinned_thread scope this (pinned) worker takes
        it for itself. Once the wait is over (a task the coroutine spawned may
        outlive it), offers go where they went before the wait.
        """
        with self._lock:
            if self._open:
                self.queue.put(call)
                return self.exclusive
        return self.parent is not None and self.parent.deliver(call)

    def cancel(self) -> None:
        """Cancel the coroutine; runs on its loop's thread."""
        self.cancel_requested = True
        if self._cancel is not None:
            self._cancel()

    # -- waiting side -----------------------------------------------------------

    def run_on(self, inbox: Inbox, *, ours: bool = False) -> Any:
        """Run the coroutine on ``inbox``'s loop and wait for it here; ``ours``: our background loop."""
        inbox.start_job(self, ours=ours)
        return self._serve(inbox.is_closed, lambda: inbox.call_soon_threadsafe(self.cancel), None if ours else _POLL)

    def _serve(
        self, loop_gone: Callable[[], bool], cancel_threadsafe: Callable[[], object], poll: float | None = _POLL
    ) -> Any:
        """Wait for the coroutine, running the calls it sends to this worker meanwhile."""
        executor: NestingExecutor = self.executor  # type: ignore[assignment]  # set whenever calls are delivered
        try:
            while True:
                try:
                    # Untimed when the loop is our own background loop, which
                    # cancels what runs on it (finishing every wait) before it
                    # stops: a timed get costs a few microseconds per call.
                    item = self.queue.get() if poll is None else self.queue.get(timeout=poll)
                except queue.Empty:
                    if loop_gone():
                        raise RuntimeError(
                            "sync_wrap: the event loop running the coroutine stopped before it finished"
                        ) from None
                    continue
                if item is _FINISHED:
                    break
                executor.run_nested_call(item)
        except BaseException:  # KeyboardInterrupt in the waiting thread: stop the coroutine too
            with contextlib.suppress(Exception):  # the loop may already be gone
                cancel_threadsafe()
            raise
        finally:
            self._close()
        exc = self.exc
        if exc is not None:
            self.exc = None
            try:
                raise exc
            finally:
                del exc
        result, self.result = self.result, None
        return result

    def _close(self) -> None:
        self.ctx = contextvars.Context()  # break the cycle ctx -> call_route -> self
        if self.executor is None:
            return  # nothing is ever delivered to a wait outside a worker
        with self._lock:
            self._open = False
        # Calls delivered but not served here are also in the executor's own
        # queue, where another worker takes them: just forget them. Unless this
        # wait took them for itself (a pinned thread's): then they are ours to run.
        executor: NestingExecutor = self.executor  # type: ignore[assignment]
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if self.exclusive and item is not _FINISHED:
                executor.run_nested_call(item)
