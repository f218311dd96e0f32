"""The ways to await a sync function in a worker thread: asyncbridge, its peers, and references.

Each :class:`Way` turns a sync function ``fn`` into an awaitable no-argument
call, inside a running event loop, with every pool bounded at 40 threads (the
default of asyncbridge, anyio, trio and Starlette). asyncio's own default
executor is only ``min(32, cpu_count + 4)`` threads, so the ways that use it
(``asyncio.to_thread``, asgiref) get a ``ThreadPoolExecutor(40)`` installed as
the fresh loop's default executor.

The references are the "minimal hand-off" of issue 6: workers that take calls
from one ``SimpleQueue`` and hand results back with ``call_soon_threadsafe``
(or trio's ``run_sync_soon``), once per result or coalesced into one pending
wake-up. They do nothing else (no context copy, no cancellation, no bound
other than the worker count), so they show how close a real library can get.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from queue import SimpleQueue
from typing import Any

from _harness import Backend, unavailable_if_missing

THREADS = 40

Call = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Way:
    """One way of offloading a call; ``prepare(fn)`` yields the awaitable call."""

    name: str
    backends: tuple[Backend, ...]
    prepare: Callable[[Callable[[], Any]], Any]  # an asynccontextmanager factory yielding Call
    note: str = ""
    reference: bool = False
    ours: bool = False


ASYNCIO_LOOPS: tuple[Backend, ...] = ("asyncio", "uvloop")
ALL: tuple[Backend, ...] = ("asyncio", "uvloop", "trio")

_shared: dict[str, Any] = {}


def _shared_pool() -> ThreadPoolExecutor:
    # One per process, reused across rounds like asyncbridge's own pools:
    # warm threads are what a long-running service has.
    pool = _shared.get("raw")
    if pool is None:
        pool = _shared["raw"] = ThreadPoolExecutor(THREADS, thread_name_prefix="bench-raw")
    assert isinstance(pool, ThreadPoolExecutor)
    return pool


def _default_executor_40() -> None:
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(THREADS, thread_name_prefix="bench-default"))


# -- asyncbridge --------------------------------------------------------------


@asynccontextmanager
async def _ab_async_wrap(fn: Callable[[], Any]) -> AsyncIterator[Call]:
    try:
        from asyncbridge import async_wrap
    except ImportError as exc:
        raise unavailable_if_missing(exc) from exc
    yield async_wrap(fn)


@asynccontextmanager
async def _ab_to_thread(fn: Callable[[], Any]) -> AsyncIterator[Call]:
    try:
        from asyncbridge import to_thread
    except ImportError as exc:
        raise unavailable_if_missing(exc) from exc
    yield functools.partial(to_thread, fn)


@asynccontextmanager
async def _ab_executor(fn: Callable[[], Any]) -> AsyncIterator[Call]:
    try:
        from asyncbridge import ThreadExecutor
    except ImportError as exc:
        raise unavailable_if_missing(exc) from exc
    executor = _shared.get("ab")
    if executor is None:
        executor = _shared["ab"] = ThreadExecutor(THREADS, name="bench-ab")
    yield functools.partial(executor.run, fn)


# -- peers ----------------------------------------------------------------------


@asynccontextmanager
async def _run_in_executor(fn: Callable[[], Any]) -> AsyncIterator[Call]:
    loop = asyncio.get_running_loop()
    yield functools.partial(loop.run_in_executor, _shared_pool(), fn)


@asynccontextmanager
async def _asyncio_to_thread(fn: Callable[[], Any]) -> AsyncIterator[Call]:
    _default_executor_40()
    yield functools.partial(asyncio.to_thread, fn)


@asynccontextmanager
async def _anyio(fn: Callable[[], Any]) -> AsyncIterator[Call]:
    import anyio.to_thread

    yield functools.partial(anyio.to_thread.run_sync, fn)


@asynccontextmanager
async def _asgiref(fn: Callable[[], Any]) -> AsyncIterator[Call]:
    from asgiref.sync import sync_to_async

    _default_executor_40()
    yield sync_to_async(fn, thread_sensitive=False)


@asynccontextmanager
async def _asyncer(fn: Callable[[], Any]) -> AsyncIterator[Call]:
    from asyncer import asyncify

    yield asyncify(fn)


@asynccontextmanager
async def _starlette(fn: Callable[[], Any]) -> AsyncIterator[Call]:
    from starlette.concurrency import run_in_threadpool

    yield functools.partial(run_in_threadpool, fn)


@asynccontextmanager
async def _trio_to_thread(fn: Callable[[], Any]) -> AsyncIterator[Call]:
    import trio

    yield functools.partial(trio.to_thread.run_sync, fn)


# -- the minimal hand-off (references) -------------------------------------------


class _Handoff:
    """Workers on one SimpleQueue; each result wakes the loop (or one wake-up drains many)."""

    def __init__(self, workers: int, coalesce: bool, wake: Callable[[Callable[[], None]], None]) -> None:
        self.queue: SimpleQueue[tuple[Callable[[], Any], Any] | None] = SimpleQueue()
        self.coalesce = coalesce
        self.wake = wake
        self.done: deque[tuple[Any, Any]] = deque()
        self.scheduled = False
        self.threads = [threading.Thread(target=self.work, daemon=True) for _ in range(workers)]
        for t in self.threads:
            t.start()

    def work(self) -> None:
        get = self.queue.get
        done = self.done
        wake = self.wake
        while (item := get()) is not None:
            fn, waiter = item
            result = fn()
            if self.coalesce:
                done.append((waiter, result))
                if not self.scheduled:
                    self.scheduled = True
                    wake(self.drain)
            else:
                wake(functools.partial(self.deliver, waiter, result))

    def drain(self) -> None:
        self.scheduled = False
        done = self.done
        while done:
            waiter, result = done.popleft()
            self.deliver(waiter, result)

    def deliver(self, waiter: Any, result: Any) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        for _ in self.threads:
            self.queue.put(None)
        for t in self.threads:
            t.join()


class _AsyncioHandoff(_Handoff):
    def __init__(self, workers: int, coalesce: bool) -> None:
        self.loop = asyncio.get_running_loop()
        super().__init__(workers, coalesce, self.loop.call_soon_threadsafe)

    def deliver(self, waiter: Any, result: Any) -> None:
        if not waiter.done():
            waiter.set_result(result)

    async def call(self, fn: Callable[[], Any]) -> Any:
        fut = self.loop.create_future()
        self.queue.put((fn, fut))
        return await fut


class _TrioHandoff(_Handoff):
    def __init__(self, workers: int, coalesce: bool) -> None:
        import outcome
        import trio

        self._trio = trio
        self._value = outcome.Value
        super().__init__(workers, coalesce, trio.lowlevel.current_trio_token().run_sync_soon)

    def deliver(self, waiter: Any, result: Any) -> None:
        self._trio.lowlevel.reschedule(waiter, self._value(result))

    async def call(self, fn: Callable[[], Any]) -> Any:
        lowlevel = self._trio.lowlevel
        self.queue.put((fn, lowlevel.current_task()))
        return await lowlevel.wait_task_rescheduled(lambda _: lowlevel.Abort.FAILED)


def _handoff(workers: int, coalesce: bool) -> Callable[[Callable[[], Any]], Any]:
    @asynccontextmanager
    async def prepare(fn: Callable[[], Any]) -> AsyncIterator[Call]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            handoff: _AsyncioHandoff | _TrioHandoff = _TrioHandoff(workers, coalesce)
        else:
            handoff = _AsyncioHandoff(workers, coalesce)
        try:
            yield functools.partial(handoff.call, fn)
        finally:
            handoff.stop()  # joins idle workers: instant, and outside any timing

    return prepare


# -- the catalogue ---------------------------------------------------------------

AB_ASYNC_WRAP = "asyncbridge async_wrap"
AB_TO_THREAD = "asyncbridge to_thread"
AB_EXECUTOR = "asyncbridge ThreadExecutor(40).run"
RAW = "run_in_executor(ThreadPoolExecutor(40))"
ASYNCIO_TO_THREAD = "asyncio.to_thread"
ANYIO = "anyio.to_thread.run_sync"
TRIO_TO_THREAD = "trio.to_thread.run_sync"


def ways(*, handoff_workers: int = 1) -> list[Way]:
    """Every way, in report order: asyncbridge first, then peers, then references."""
    hw = handoff_workers
    plural = "s" if hw > 1 else ""
    return [
        Way(AB_ASYNC_WRAP, ALL, _ab_async_wrap, "default executor (40)", ours=True),
        Way(AB_TO_THREAD, ALL, _ab_to_thread, "default executor (40)", ours=True),
        Way(AB_EXECUTOR, ALL, _ab_executor, ours=True),
        Way(RAW, ASYNCIO_LOOPS, _run_in_executor),
        Way(ASYNCIO_TO_THREAD, ASYNCIO_LOOPS, _asyncio_to_thread, "default executor set to 40"),
        Way(TRIO_TO_THREAD, ("trio",), _trio_to_thread),
        Way(ANYIO, ALL, _anyio),
        # asgiref, asyncer and Starlette are layers over run_in_executor and anyio:
        # measured on asyncio only, to keep the whole run within minutes.
        Way("asgiref sync_to_async", ("asyncio",), _asgiref, "thread_sensitive=False"),
        Way("asyncer asyncify", ("asyncio",), _asyncer),
        Way("starlette run_in_threadpool", ("asyncio",), _starlette),
        Way(
            f"minimal hand-off ({hw} worker{plural})",
            ALL,
            _handoff(hw, False),
            "SimpleQueue + one wake-up per result",
            reference=True,
        ),
        Way(
            f"minimal hand-off, coalesced ({hw} worker{plural})",
            ALL,
            _handoff(hw, True),
            "one pending wake-up drains all results",
            reference=True,
        ),
    ]


def for_backend(backend: Backend, selection: list[Way]) -> list[Way]:
    return [w for w in selection if backend in w.backends]


async def gather_calls(backend: Backend, call: Call, n: int) -> None:
    """Start ``n`` concurrent tasks that each await one ``call()``, and wait for all."""
    if backend == "trio":
        import trio

        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(call)
        return

    async def one() -> None:
        await call()

    await asyncio.gather(*[one() for _ in range(n)])


def import_everything() -> None:
    """Import every library a way may use, so processes compared on memory start alike."""
    import anyio.to_thread  # noqa: F401
    import asgiref.sync  # noqa: F401
    import asyncer  # noqa: F401
    import starlette.concurrency  # noqa: F401
    import trio  # noqa: F401
    import uvloop  # noqa: F401

    with contextlib.suppress(ImportError):
        import asyncbridge  # noqa: F401
