"""A call on its way to a worker: what its thread knows of the caller, and what becomes of a call left behind."""

from __future__ import annotations

import logging
import threading
import time

import anyio
import pytest

from _sync import wait_thread_event, watch_log
from asyncbridge import ThreadExecutor, async_wrap, check_cancelled

pytestmark = pytest.mark.anyio


# -- check_cancelled: the worker asks whether its caller still waits -------------------------


async def test_check_cancelled_stops_the_function_after_cancel() -> None:
    """check_cancelled() raises inside the thread once the awaiting task is cancelled."""
    started = threading.Event()
    stopped = threading.Event()
    iterations: list[int] = []

    @async_wrap(abandon_on_cancel=False)
    def long_loop() -> None:
        started.set()
        try:
            for i in range(10_000):
                iterations.append(i)
                check_cancelled()
                time.sleep(0.001)
        finally:
            stopped.set()

    with anyio.move_on_after(5) as outer:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(long_loop)
                await wait_thread_event(started)
                scope.cancel()
    assert not outer.cancelled_caught
    assert stopped.is_set()
    assert len(iterations) < 10_000


def test_check_cancelled_is_a_no_op_outside_workers() -> None:
    """check_cancelled() does nothing when called from plain sync code."""
    check_cancelled()


# -- a call whose caller went away ---------------------------------------------------------------


async def test_cancelled_queued_call_never_runs() -> None:
    """A call still queued when its caller is cancelled is dropped: the function never runs."""
    release = threading.Event()
    started = threading.Event()
    ran: list[str] = []
    with ThreadExecutor(1) as executor:

        @async_wrap(executor=executor)
        def work(tag: str) -> None:
            ran.append(tag)
            started.set()
            release.wait(10)

        async with anyio.create_task_group() as tg:
            tg.start_soon(work, "first")
            await wait_thread_event(started)
            with anyio.CancelScope() as scope:
                scope.cancel()
                await work("queued")
            assert executor.statistics().queued == 0
            release.set()
        assert await work("third") is None
    assert ran == ["first", "third"]


async def test_exception_after_abandonment_is_logged() -> None:
    """An exception raised by a function whose caller was cancelled is logged, not lost."""
    release = threading.Event()
    started = threading.Event()
    done = threading.Event()

    @async_wrap
    def late_failure() -> None:
        started.set()
        release.wait(10)
        done.set()
        raise LookupError("raised after the caller left")

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(late_failure)
            await wait_thread_event(started)
            scope.cancel()
    with watch_log("asyncbridge", logging.ERROR) as log:
        release.set()
        await wait_thread_event(done)
        await wait_thread_event(log.arrived)  # the log is written when the loop drains the worker's report
    assert any(record.exc_info and isinstance(record.exc_info[1], LookupError) for record in log.records), log.records
