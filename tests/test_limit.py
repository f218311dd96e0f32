"""async_wrap(limit=N or a CapacityLimiter): one capacity limit, shared by every function, loop and thread given it."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Awaitable, Callable, Iterator

import anyio
import anyio.lowlevel
import pytest

from _sync import Gauge, wait_thread_event
from asyncbridge import CapacityLimiter, CapacityLimiterStatistics, ThreadExecutor, async_wrap, limiter_of

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


# -- CapacityLimiter: shared, visible, adjustable; a token granted to a dead loop comes back -------


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
    assert limiter_of(read) is shared
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

    limiter = limiter_of(f)
    assert isinstance(limiter, CapacityLimiter)
    assert limiter.total_tokens == 3
    assert f.limiter is limiter  # type: ignore[attr-defined]  # the untyped spelling, same object
    assert limiter_of(g) is None


def test_limiter_of_finds_the_limiter_of_methods_generators_and_rewrapped_functions() -> None:
    shared = CapacityLimiter(2)

    class Service:
        @async_wrap(limit=shared)
        def method(self) -> None: ...

        @classmethod
        @async_wrap(limit=shared)
        def build(cls) -> None: ...

        @staticmethod
        @async_wrap(limit=shared)
        def helper() -> None: ...

        @async_wrap(limit=shared)
        @staticmethod
        def outer_helper() -> None: ...

    @async_wrap(limit=shared)
    def numbers() -> Iterator[int]:
        yield 1

    def logged(fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        @functools.wraps(fn)
        async def wrapper() -> None:
            await fn()

        return wrapper

    service = Service()
    for fn in (
        Service.method,
        service.method,
        Service.build,
        service.build,
        Service.helper,
        service.helper,
        Service.outer_helper,
        Service.__dict__["helper"],
        numbers,
        logged(Service.helper),
    ):
        assert limiter_of(fn) is shared, fn


def test_limiter_of_a_function_async_wrap_did_not_make_says_what_to_do() -> None:
    def plain() -> None: ...

    expected = r"limiter_of\(\) expects a function made by async_wrap\(\).*@async_wrap\(limit="
    for fn in (plain, print, async_wrap):
        with pytest.raises(TypeError, match=expected):
            limiter_of(fn)
    looping = functools.partial(plain)
    looping.__wrapped__ = looping  # type: ignore[attr-defined]  # a chain that loops ends, with the error
    with pytest.raises(TypeError, match="limiter_of"):
        limiter_of(looping)


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

    Its token goes back to the limiter, so later callers still run.
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
