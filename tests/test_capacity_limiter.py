"""CapacityLimiter: shared by functions and loops, visible, adjustable; a token handed to a dead loop comes back."""

from __future__ import annotations

import asyncio
import threading

import anyio
import anyio.lowlevel
import pytest

from _sync import wait_thread_event
from asyncbridge import CapacityLimiter, CapacityLimiterStatistics, ThreadExecutor, async_wrap

pytestmark = pytest.mark.anyio


async def test_one_limiter_bounds_every_function_given_it_and_reports_the_waiters() -> None:
    shared = CapacityLimiter(2)
    gate = threading.Event()
    both_running = threading.Event()
    running: list[str] = []

    def hold(name: str) -> str:
        running.append(name)
        if len(running) == 2:
            both_running.set()
        gate.wait(10)
        return name

    read = async_wrap(limit=shared)(hold)
    write = async_wrap(limit=shared)(hold)
    assert read.limiter is shared  # type: ignore[attr-defined]
    async with ThreadExecutor(8, name="limited") as executor, anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(async_wrap(executor=executor, limit=shared)(hold), f"x{i}")
            tg.start_soon(read, f"r{i}")
            tg.start_soon(write, f"w{i}")
        await wait_thread_event(both_running)
        with anyio.fail_after(10):
            while shared.statistics().tasks_waiting < 7:
                await anyio.lowlevel.checkpoint()  # let the other tasks reach the limiter (no thread involved)
        assert shared.statistics() == CapacityLimiterStatistics(total_tokens=2, borrowed_tokens=2, tasks_waiting=7)
        assert len(running) == 2
        gate.set()
    assert len(running) == 9
    assert shared.statistics() == CapacityLimiterStatistics(total_tokens=2, borrowed_tokens=0, tasks_waiting=0)


async def test_raising_total_tokens_lets_waiters_proceed_at_once() -> None:
    limiter = CapacityLimiter(1)
    await limiter.acquire()
    entered = anyio.Event()

    async def wait_for_token() -> None:
        async with limiter:
            entered.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_for_token)
        with anyio.fail_after(10):
            while limiter.statistics().tasks_waiting < 1:
                await anyio.lowlevel.checkpoint()
        limiter.total_tokens = 2
        with anyio.fail_after(10):
            await entered.wait()
    limiter.release()
    assert limiter.statistics() == CapacityLimiterStatistics(total_tokens=2, borrowed_tokens=0, tasks_waiting=0)


def test_a_function_with_an_int_limit_exposes_its_own_limiter() -> None:
    @async_wrap(limit=3)
    def f() -> None: ...

    @async_wrap
    def g() -> None: ...

    assert isinstance(f.limiter, CapacityLimiter)  # type: ignore[attr-defined]
    assert f.limiter.total_tokens == 3  # type: ignore[attr-defined]
    assert g.limiter is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(("value", "error"), [(0, ValueError), (1.5, TypeError), (True, TypeError)])
def test_bad_totals_are_refused(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="total_tokens must be"):
        CapacityLimiter(value)  # type: ignore[arg-type]
    limiter = CapacityLimiter(1)
    with pytest.raises(error, match="total_tokens must be"):
        limiter.total_tokens = value  # type: ignore[assignment]


def test_releasing_a_token_nobody_borrowed_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no token borrowed"):
        CapacityLimiter(1).release()


def test_a_token_handed_to_a_loop_that_is_then_closed_comes_back() -> None:
    """A waiter granted a token while its loop is stopped, then closed with the task pending, never runs.

    Its token used to be lost for good, and every later caller waited for ever.
    """
    limiter = CapacityLimiter(1)
    release_holder = threading.Event()

    @async_wrap(limit=limiter)
    def hold() -> None:
        release_holder.wait(10)

    holder_loop = asyncio.new_event_loop()
    holder_started = threading.Event()

    async def holder() -> None:
        holder_started.set()
        await hold()

    holder_thread = threading.Thread(target=holder_loop.run_until_complete, args=(holder(),))
    holder_thread.start()
    assert holder_started.wait(10)

    doomed = asyncio.new_event_loop()
    waiting = doomed.create_task(hold())  # waits for the token, on a loop we stop next

    async def until_queued() -> None:
        while limiter.statistics().tasks_waiting < 1:
            await asyncio.sleep(0)

    doomed.run_until_complete(asyncio.wait_for(until_queued(), 10))  # the loop stops with the task pending
    release_holder.set()  # the token goes to the waiter on the stopped loop
    holder_thread.join(10)
    holder_loop.close()
    assert limiter.statistics().borrowed_tokens == 1  # handed over, not yet used
    assert not waiting.done()
    doomed.close()  # with the task still pending: it never runs

    async def later_caller() -> str:
        release_holder.set()
        await hold()
        return "ran"

    assert asyncio.run(asyncio.wait_for(later_caller(), 10)) == "ran"
    assert limiter.statistics().borrowed_tokens == 0
