"""Executors behind the hand-off: foreign concurrent.futures executors passed as executor=, and async closing."""

from __future__ import annotations

import concurrent.futures as cf
import pickle
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import asyncbridge
from _sync import Gauge, wait_thread_event
from asyncbridge import ThreadExecutor, async_wrap

pytestmark = pytest.mark.anyio


# -- foreign executors: any concurrent.futures.Executor ---------------------------------


async def test_thread_pool_executor_of_2_uses_at_most_2_threads() -> None:
    """17 concurrent sleeps through @async_wrap(executor=ThreadPoolExecutor(2)) use at most 2 threads."""
    gauge = Gauge()
    with cf.ThreadPoolExecutor(max_workers=2) as pool:

        @async_wrap(executor=pool)
        def sleep_and_report() -> int:
            with gauge:
                time.sleep(0.1)
            return threading.get_ident()

        idents: list[int] = []

        async def one() -> None:
            idents.append(await sleep_and_report())

        async with anyio.create_task_group() as tg:
            for _ in range(17):
                tg.start_soon(one)
    assert len(idents) == 17
    assert len(set(idents)) <= 2
    assert gauge.peak == 2


def _square(x: int) -> int:
    return x * x


@pytest.mark.blocking_detector(enabled=False)  # the stdlib pool starts its processes on the caller's thread
async def test_works_with_a_process_pool_executor() -> None:
    """Any concurrent.futures.Executor works, a ProcessPoolExecutor included."""
    import multiprocessing

    with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        square = async_wrap(executor=pool)(_square)
        assert await square(7) == 49


async def test_foreign_executor_shut_down_is_a_clear_error() -> None:
    """A call on a shut-down ThreadPoolExecutor raises ExecutorShutdownError, a RuntimeError."""
    pool = cf.ThreadPoolExecutor(1)
    pool.shutdown()
    with pytest.raises(asyncbridge.ExecutorShutdownError, match="shut down"):
        await async_wrap(executor=pool)(int)()


async def test_foreign_executor_cancel_futures_fails_queued_caller() -> None:
    """A queued call cancelled by ThreadPoolExecutor.shutdown(cancel_futures=True) fails instead of hanging."""
    pool = cf.ThreadPoolExecutor(1)
    release = threading.Event()
    started = threading.Event()

    def block() -> None:
        started.set()
        release.wait(10)

    blocked = async_wrap(executor=pool)(block)
    errors: list[BaseException] = []

    async def queued() -> None:
        try:
            await blocked()
        except asyncbridge.ExecutorShutdownError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(blocked)
        await wait_thread_event(started)
        async with anyio.create_task_group() as inner:
            inner.start_soon(queued)
            await anyio.wait_all_tasks_blocked()
            pool.shutdown(wait=False, cancel_futures=True)
        release.set()
    assert len(errors) == 1
    assert "cancelled this call before it started" in str(errors[0])


# -- foreign executors get the function and its arguments, unless they are plain thread pools --


class PicklingThreadPool(cf.ThreadPoolExecutor):
    """Like 3.14's InterpreterPoolExecutor: a ThreadPoolExecutor subclass that pickles each call it is given."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        sent = pickle.loads(pickle.dumps((fn, args, kwargs)))
        return super().submit(sent[0], *sent[1], **sent[2])


def double(x: int) -> tuple[int, str]:
    return x * 2, threading.current_thread().name


async def test_a_thread_pool_subclass_that_pickles_gets_the_function_not_a_call_object() -> None:
    with PicklingThreadPool(1, thread_name_prefix="pickling") as pool:
        result, thread = await async_wrap(executor=pool)(double)(21)
    assert result == 42
    assert thread.startswith("pickling")


async def test_a_plain_thread_pool_runs_the_call_itself_so_check_cancelled_and_context_work() -> None:
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    with cf.ThreadPoolExecutor(1) as pool:
        assert await async_wrap(executor=pool)(var.get)() == "caller"


# -- async closing: async with and aclose() ----------------------------------------------


async def test_async_with_waits_for_workers_without_blocking_the_loop() -> None:
    """Leaving async with shuts down and waits for running calls while the loop keeps running."""
    release = threading.Event()
    started = threading.Event()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            if ticks == 3:
                release.set()
            await anyio.sleep(0.01)

    def slow() -> None:
        started.set()
        release.wait(10)

    async with anyio.create_task_group() as tg:
        executor = ThreadExecutor(1, name="aclose-pool")
        tg.start_soon(executor.run, slow)
        await wait_thread_event(started)
        tg.start_soon(ticker)
        async with executor:
            pass
        assert release.is_set()
        assert ticks >= 3
        assert executor.statistics().workers == 0
        tg.cancel_scope.cancel()
