"""sync_wrap: async code called from sync code, on the right loop, without deadlocks."""

from __future__ import annotations

import contextvars
import inspect
import subprocess
import sys
import textwrap
import threading

import anyio
import pytest

from _internals import call_route, running_asyncio_loop
from _sync import wait_thread_event
from asyncbridge import ThreadExecutor, async_wrap, sync_wrap
from asyncbridge._background import background_loop_if_started

user: contextvars.ContextVar[str] = contextvars.ContextVar("user", default="nobody")


def current_loop_identity() -> object:
    """The running asyncio loop, or the trio run's token."""
    loop = running_asyncio_loop()
    if loop is not None:
        return loop
    import trio

    return trio.lowlevel.current_trio_token()


# -- the round trip -------------------------------------------------------------------


@pytest.mark.anyio
async def test_round_trip_uses_objects_bound_to_the_callers_loop() -> None:
    """Coroutine -> async_wrap thread -> sync_wrap back on the same loop, with its Lock and stream, 1,000 times."""
    lock = anyio.Lock()
    send, receive = anyio.create_memory_object_stream[int](1)
    home = current_loop_identity()

    @sync_wrap
    async def take() -> tuple[int, object]:
        async with lock:
            return await receive.receive(), current_loop_identity()

    @async_wrap
    def in_thread() -> tuple[int, object]:
        return take()

    async with send, receive:
        for i in range(1000):
            await send.send(i)
            value, loop = await in_thread()
            assert value == i
            assert loop is home


def test_plain_sync_code_reuses_one_background_loop() -> None:
    """1,000 calls from plain sync code run on one background loop, reused, in a thread of its own."""

    @sync_wrap
    async def where() -> tuple[int, int]:
        import asyncio

        await asyncio.sleep(0)
        return id(asyncio.get_running_loop()), threading.get_ident()

    seen = {where() for _ in range(1000)}
    loops = {loop for loop, _ in seen}
    threads = {thread for _, thread in seen}
    assert len(loops) == 1
    assert len(threads) == 1
    assert threading.get_ident() not in threads
    assert id(background_loop_if_started()) in loops


def test_plain_sync_code_runs_even_the_first_step_in_a_task_on_the_loop_thread() -> None:
    """Before its first await, the coroutine already runs in a Task, on the background loop's thread."""
    import asyncio

    @sync_wrap
    async def first_step() -> tuple[bool, int, int]:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        return task is not None and not task.done(), threading.get_ident(), id(loop)

    in_task, thread, loop = first_step()
    assert in_task
    assert thread != threading.get_ident()
    assert loop == id(background_loop_if_started())


def test_plain_sync_code_works_when_the_background_loop_is_in_debug_mode() -> None:
    """asyncio debug mode checks which thread schedules callbacks; sync_wrap must still work under it."""
    import asyncio

    @sync_wrap
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    assert double(1) == 2  # the background loop exists from here on
    loop = background_loop_if_started()
    assert loop is not None
    loop.call_soon_threadsafe(loop.set_debug, True)
    try:
        assert [double(i) for i in range(20)] == [2 * i for i in range(20)]
        assert loop.get_debug()
    finally:
        loop.call_soon_threadsafe(loop.set_debug, False)
        double(0)  # the reset has run once a call after it completes


def test_plain_threads_share_the_background_loop() -> None:
    """Calls from several threads without a loop (a sync web server's threads) use the same background loop."""

    @sync_wrap
    async def loop_id() -> int:
        import asyncio

        return id(asyncio.get_running_loop())

    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(loop_id())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 4
    assert len(set(results)) == 1


# -- errors -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_calling_on_the_loop_thread_raises_instead_of_deadlocking() -> None:
    """A sync_wrap'd function called on the event loop's own thread raises RuntimeError saying to await it."""

    @sync_wrap
    async def fetch() -> int:
        return 1

    with pytest.raises(RuntimeError, match=r"event loop's own thread.*deadlock.*await .*fetch"):
        fetch()


def test_rejects_sync_function_and_non_callable() -> None:
    """sync_wrap on a sync function or a non-callable is a TypeError at decoration time."""

    def plain() -> int:
        return 1

    with pytest.raises(TypeError, match=r"expects an async function; '.*plain' is a sync function"):
        sync_wrap(plain)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="is not callable"):
        sync_wrap()(5)  # type: ignore[arg-type]


def test_keeps_signature_and_metadata() -> None:
    """The sync function keeps the signature, name, docstring and __wrapped__ of the async one."""

    async def original(x: int, *, y: str = "a") -> str:
        """Doc."""
        return y * x

    wrapped = sync_wrap(original)
    assert wrapped.__name__ == "original"
    assert wrapped.__doc__ == "Doc."
    assert wrapped.__wrapped__ is original  # type: ignore[attr-defined]
    assert inspect.signature(wrapped) == inspect.signature(original)
    assert not inspect.iscoroutinefunction(wrapped)
    assert wrapped(2, y="b") == "bb"


def test_exception_reraises_unchanged() -> None:
    """An exception raised in the coroutine is re-raised in the sync caller: the same object."""
    raised: list[BaseException] = []

    @sync_wrap
    async def fail() -> None:
        error = LookupError("in the coroutine")
        raised.append(error)
        raise error

    with pytest.raises(LookupError) as info:
        fail()
    assert info.value is raised[0]


@pytest.mark.anyio
async def test_exception_reraises_unchanged_in_a_worker() -> None:
    """An exception from the coroutine reaches the worker's sync code and then the async caller, unchanged."""
    raised: list[BaseException] = []

    @sync_wrap
    async def fail() -> None:
        error = KeyError("k")
        raised.append(error)
        raise error

    with pytest.raises(KeyError) as info:
        await async_wrap(fail)()
    assert info.value is raised[0]


# -- context variables ------------------------------------------------------------------------


def test_context_variables_reach_the_coroutine_from_plain_code() -> None:
    """A context variable set by the sync caller is visible in the coroutine on the background loop."""

    @sync_wrap
    async def who() -> str:
        return user.get()

    token = user.set("alice")
    try:
        assert who() == "alice"
    finally:
        user.reset(token)


@pytest.mark.anyio
async def test_context_variables_reach_the_coroutine_from_a_worker() -> None:
    """Variables set by the async caller and by the sync code in the worker are both visible in the coroutine."""
    request: contextvars.ContextVar[str] = contextvars.ContextVar("request")

    @sync_wrap
    async def both() -> tuple[str, str]:
        return request.get(), user.get()

    @async_wrap
    def in_thread() -> tuple[str, str]:
        user.set("bob")
        return both()

    request.set("req-1")
    assert await in_thread() == ("req-1", "bob")


# -- cancellation -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_cancelled_caller_stops_new_async_work_from_the_worker() -> None:
    """After the async caller is cancelled, a sync_wrap call from its worker raises instead of starting."""
    started = threading.Event()
    release = threading.Event()
    done = threading.Event()
    outcome: list[str] = []

    @sync_wrap
    async def more_work() -> None:
        outcome.append("coroutine ran")

    @async_wrap
    def legacy() -> None:
        started.set()
        release.wait(10)
        try:
            more_work()
        except BaseException as exc:
            outcome.append(type(exc).__name__)
            raise
        finally:
            done.set()

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(legacy)
            await wait_thread_event(started)
            scope.cancel()
    release.set()
    await wait_thread_event(done)
    assert outcome == [anyio.get_cancelled_exc_class().__name__]


@pytest.mark.anyio
async def test_cancelling_the_caller_cancels_the_coroutine_the_worker_waits_for() -> None:
    """Cancelling the async caller while its worker waits in sync_wrap cancels that coroutine too."""
    entered = anyio.Event()
    cleaned = threading.Event()

    @sync_wrap
    async def forever() -> None:
        entered.set()
        try:
            await anyio.sleep_forever()
        finally:
            cleaned.set()

    @async_wrap
    def legacy() -> None:
        forever()

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(legacy)
            await entered.wait()
            scope.cancel()
    await wait_thread_event(cleaned)


# -- nesting on a bounded pool ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_nested_bridging_completes_on_a_one_thread_pool() -> None:
    """f on ThreadExecutor(1) -> sync_wrap g -> async_wrap h on the same pool completes, on the waiting thread."""
    async with ThreadExecutor(1) as executor:

        @async_wrap(executor=executor)
        def h(x: int) -> tuple[int, int]:
            return x + 1, threading.get_ident()

        @sync_wrap
        async def g(x: int) -> tuple[int, int]:
            return await h(x)

        @async_wrap(executor=executor)
        def f(x: int) -> tuple[int, int, int]:
            value, inner_thread = g(x)
            return value * 10, inner_thread, threading.get_ident()

        with anyio.fail_after(10):  # a deadlock fails the test instead of hanging it
            value, inner_thread, outer_thread = await f(1)
        assert value == 20
        assert inner_thread == outer_thread
        assert executor.statistics().workers == 1


@pytest.mark.anyio
async def test_nested_calls_gathered_in_the_coroutine_all_complete() -> None:
    """Several calls gathered inside the nested coroutine all run, one by one, in the waiting worker's slot."""
    async with ThreadExecutor(1) as executor:

        @async_wrap(executor=executor)
        def h(x: int) -> int:
            return x * x

        @sync_wrap
        async def g(n: int) -> list[int]:
            results: list[int] = [0] * n

            async def one(i: int) -> None:
                results[i] = await h(i)

            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(one, i)
            return results

        with anyio.fail_after(10):
            assert await async_wrap(executor=executor)(g)(6) == [0, 1, 4, 9, 16, 25]


@pytest.mark.anyio
async def test_task_outliving_the_nested_wait_still_gets_a_thread() -> None:
    """A task spawned inside the nested coroutine that calls the pool after the wait is over does not hang."""
    go = anyio.Event()
    done = anyio.Event()
    results: list[int] = []
    async with ThreadExecutor(1) as executor:

        @async_wrap(executor=executor)
        def h(x: int) -> int:
            return x + 100

        async def later() -> None:
            await go.wait()
            results.append(await h(1))
            done.set()

        async with anyio.create_task_group() as tg:

            @sync_wrap
            async def spawn() -> None:
                tg.start_soon(later)

            await async_wrap(executor=executor)(spawn)()
            go.set()
            with anyio.fail_after(10):
                await done.wait()
    assert results == [101]


@pytest.mark.anyio
async def test_nested_submit_result_completes_when_workers_are_free() -> None:
    """In a nested coroutine, a call that blocks on submit().result() on the same pool completes."""
    async with ThreadExecutor(4) as executor:

        @async_wrap(executor=executor)
        def h() -> str:
            return executor.submit(str.upper, "sub").result(10)

        @sync_wrap
        async def g() -> str:
            return await h()

        with anyio.fail_after(10):
            assert await async_wrap(executor=executor)(g)() == "SUB"


@pytest.mark.anyio
async def test_nested_calls_that_wait_on_each_other_complete() -> None:
    """Two nested calls where one waits for the other both complete when the pool has room."""
    async with ThreadExecutor(3) as executor:
        ready = threading.Event()

        @async_wrap(executor=executor)
        def consumer() -> str:
            return "saw it" if ready.wait(10) else "never"

        @async_wrap(executor=executor)
        def producer() -> None:
            ready.set()

        @sync_wrap
        async def g() -> str:
            results: list[str] = []

            async def consume() -> None:
                results.append(await consumer())

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                tg.start_soon(producer)
            return results[0]

        with anyio.fail_after(10):
            assert await async_wrap(executor=executor)(g)() == "saw it"


def test_nested_bridging_from_a_submitted_call_completes() -> None:
    """ThreadExecutor(1).submit(f), f -> sync_wrap g -> async_wrap h on the same pool, completes."""
    executor = ThreadExecutor(1)

    @async_wrap(executor=executor)
    def h(x: int) -> int:
        return x + 1

    @sync_wrap
    async def g(x: int) -> int:
        return await h(x)

    assert executor.submit(g, 1).result(10) == 2
    executor.shutdown()


# -- interpreter exit ------------------------------------------------------------------------------


def test_background_loop_is_shut_down_cleanly_at_exit() -> None:
    """At interpreter exit the background loop cancels what still runs on it and closes, without hanging."""
    script = textwrap.dedent(
        """
        import asyncio, threading
        from asyncbridge import sync_wrap

        started = threading.Event()

        @sync_wrap
        async def forever():
            started.set()
            try:
                await asyncio.sleep(3600)
            finally:
                print("coroutine cleaned up", flush=True)

        threading.Thread(target=forever, daemon=True).start()
        started.wait(10)
        print("main exits", flush=True)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["main exits", "coroutine cleaned up"]


# -- trio: the host tasks that run sync_wrap coroutines ------------------------------------------


def test_trio_reused_host_task_gives_each_call_its_own_context_and_name() -> None:
    """On trio, sequential calls from one worker each see their own context, and the task bears the function's name."""
    trio = pytest.importorskip("trio")
    from asyncbridge import to_thread

    seen: list[tuple[str, str]] = []
    tasks: list[object] = []

    @sync_wrap
    async def record() -> None:
        tasks.append(trio.lowlevel.current_task())
        seen.append((user.get(), trio.lowlevel.current_task().name))
        user.set("set by the coroutine")  # must not leak into the next call

    def worker() -> None:
        for name in ("first", "second", "third"):
            user.set(name)
            record()

    async def main() -> None:
        with trio.fail_after(10):
            await to_thread(worker)

    trio.run(main)
    name = f"{__name__}.{record.__wrapped__.__qualname__}"  # type: ignore[attr-defined]
    assert seen == [("first", name), ("second", name), ("third", name)]
    assert tasks[0] is tasks[1] is tasks[2], "sequential calls reuse one task instead of spawning one each"


def test_trio_cancelling_a_call_on_a_reused_host_cancels_it_and_later_calls_still_work() -> None:
    """On trio, the caller's cancellation reaches a coroutine on a reused host; the next caller's calls run normally."""
    trio = pytest.importorskip("trio")
    from asyncbridge import to_thread

    entered = threading.Event()
    cleaned = threading.Event()
    outcome: list[str] = []

    @sync_wrap
    async def quick(x: int) -> int:
        return x * 2

    @sync_wrap
    async def forever() -> None:
        entered.set()
        try:
            await trio.sleep_forever()
        finally:
            cleaned.set()

    def legacy() -> None:
        outcome.append(f"warm-up {quick(1)}")
        try:
            forever()
        except trio.Cancelled:
            outcome.append("cancelled")
            raise

    async def main() -> None:
        with trio.fail_after(10):
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(to_thread, legacy)
                    await wait_thread_event(entered)
                    scope.cancel()
            await wait_thread_event(cleaned)
            assert await to_thread(lambda: [quick(i) for i in range(3)]) == [0, 2, 4]

    trio.run(main)
    assert outcome == ["warm-up 2", "cancelled"]


def test_trio_a_late_cancel_of_a_finished_call_does_not_reach_the_next_one() -> None:
    """On trio, cancelling a sync_wrap call that is already over leaves the next call on the same task alone."""
    trio = pytest.importorskip("trio")
    from asyncbridge import to_thread
    from asyncbridge._portal import _Wait

    waits: list[object] = []

    @sync_wrap
    async def first() -> None:
        waits.append(call_route.get())

    @sync_wrap
    async def second() -> str:
        stale = waits[0]
        assert isinstance(stale, _Wait)
        stale.cancel()  # on the loop thread, as a cancelled caller would
        await trio.sleep(0)
        return "not cancelled"

    def worker() -> str:
        first()
        return second()

    async def main() -> str:
        with trio.fail_after(10):
            return await to_thread(worker)

    assert trio.run(main) == "not cancelled"


def test_trio_concurrent_calls_from_several_workers_run_at_once() -> None:
    """On trio, sync_wrap calls from several workers run concurrently, each in its own task."""
    trio = pytest.importorskip("trio")
    from asyncbridge import to_thread

    workers = 4
    names: list[str] = []

    async def main() -> list[tuple[int, int]]:
        all_in = trio.Event()
        arrived = 0

        @sync_wrap
        async def meet(i: int) -> int:
            nonlocal arrived
            arrived += 1
            if arrived == workers:
                all_in.set()
            await all_in.wait()  # returns only once every worker's coroutine runs at the same time
            names.append(trio.lowlevel.current_task().name)
            return i

        @sync_wrap
        async def again(i: int) -> int:
            return -i

        results: list[tuple[int, int]] = []

        async def one(i: int) -> None:
            results.append(await to_thread(lambda: (meet(i), again(i))))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for i in range(workers):
                    nursery.start_soon(one, i)
        return sorted(results)

    assert trio.run(main) == [(i, -i) for i in range(workers)]
    assert len(names) == workers
    assert all(name.endswith(".meet") for name in names)
