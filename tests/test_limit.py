"""async_wrap(limit=N): one function's capacity limit, shared by every event loop and thread that calls it."""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from _sync import Gauge, wait_thread_event
from asyncbridge import async_wrap

pytestmark = pytest.mark.anyio


# -- the bound, within one loop and across loops --------------------------------------


async def test_limit_bounds_concurrent_calls_of_one_function() -> None:
    """limit=3 lets at most 3 calls of the function run at once, though the pool has 40 threads."""
    gauge = Gauge()
    release = threading.Event()
    three_in = threading.Event()

    @async_wrap(limit=3)
    def work() -> None:
        with gauge:
            if gauge.now >= 3:
                three_in.set()
            release.wait(10)

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(work)
        await wait_thread_event(three_in)
        await anyio.wait_all_tasks_blocked()
        assert gauge.now == 3  # the other seven wait for a slot, not for a thread
        release.set()
    assert gauge.peak == 3


async def test_limit_holds_across_event_loops_in_threads() -> None:
    """One function's limit holds when it is called from several event loops in several threads."""
    gauge = Gauge()

    @async_wrap(limit=2)
    def work() -> None:
        with gauge:
            time.sleep(0.01)

    async def many() -> None:
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(work)

    def in_new_loop(backend: str) -> None:
        anyio.run(many, backend=backend)

    threads = [threading.Thread(target=in_new_loop, args=(b,)) for b in ("asyncio", "asyncio", "trio")]
    for thread in threads:
        thread.start()
    await many()
    for thread in threads:
        await anyio.to_thread.run_sync(thread.join, 30)
    assert gauge.peak == 2


# -- waiters that give up -------------------------------------------------------------


async def test_cancelled_waiter_gives_its_limit_place_up() -> None:
    """A caller cancelled while waiting for a limit slot does not take or leak the slot."""
    hold = threading.Event()
    entered = threading.Event()
    ran: list[str] = []

    @async_wrap(limit=1)
    def work(tag: str) -> str:
        ran.append(tag)
        entered.set()
        hold.wait(10)
        return tag

    results: list[str] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: work("first"))
        await wait_thread_event(entered)
        async with anyio.create_task_group() as waiting:
            waiting.start_soon(work, "never")
            await anyio.wait_all_tasks_blocked()  # "never" waits for the slot "first" holds...
            waiting.cancel_scope.cancel()  # ...and gives up
        hold.set()
    with anyio.fail_after(10):  # a leaked slot would leave this call waiting forever
        results.append(await work("after"))
    assert results == ["after"]
    assert ran == ["first", "after"]
