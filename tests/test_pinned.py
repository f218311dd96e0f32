"""pinned_thread(): one thread for every thread call of a scope, scopes in parallel, the bound kept, nothing hangs."""

from __future__ import annotations

import concurrent.futures as cf
import sqlite3
import threading
import time

import anyio
import pytest

from _sync import wait_thread_event
from asyncbridge import (
    ExecutorShutdownError,
    ThreadExecutor,
    async_wrap,
    pinned_thread,
    sync_wrap,
    to_thread,
)

pytestmark = pytest.mark.anyio


def ident() -> int:
    return threading.get_ident()


def slow_ident() -> int:
    time.sleep(0.02)  # the workload: long enough that unpinned calls made together overlap on several threads
    return threading.get_ident()


async def test_every_kind_of_call_in_a_scope_runs_on_one_thread() -> None:
    """Calls made at once through async_wrap, run() and submit() all run on the scope's thread, one by one."""
    seen: list[int] = []
    async with ThreadExecutor(8, name="pin") as executor:
        wrapped = async_wrap(executor=executor)(slow_ident)

        async def through_wrap() -> None:
            seen.append(await wrapped())

        async def through_run() -> None:
            seen.append(await executor.run(slow_ident))

        async with pinned_thread(executor) as scope:
            futures = [executor.submit(slow_ident) for _ in range(2)]
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(through_wrap)
                    tg.start_soon(through_run)
            seen.extend([await anyio.to_thread.run_sync(f.result, 10) for f in futures])
        assert len(seen) == 8
        assert len(set(seen)) == 1
        assert scope.thread_name is not None
        assert scope.thread_name.startswith("pin-")


async def test_the_default_executor_is_pinned_when_none_is_given() -> None:
    async with pinned_thread():
        first = await to_thread(ident)
        assert {await async_wrap(ident)() for _ in range(3)} == {first}


async def test_tasks_started_inside_the_scope_use_its_thread() -> None:
    seen: list[int] = []

    async def worker() -> None:
        seen.append(await to_thread(slow_ident))

    async with pinned_thread():
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(worker)
        seen.append(await to_thread(ident))
    assert len(seen) == 5
    assert len(set(seen)) == 1


async def test_scopes_in_different_tasks_get_different_threads_and_run_in_parallel() -> None:
    barrier = threading.Barrier(2, timeout=10)  # passes only if both scopes' calls run at once
    threads: dict[str, set[int]] = {"a": set(), "b": set()}

    def meet() -> int:
        barrier.wait()
        return threading.get_ident()

    async def scope(name: str) -> None:
        async with pinned_thread():
            threads[name].add(await to_thread(meet))
            threads[name].add(await to_thread(ident))

    async with anyio.create_task_group() as tg:
        tg.start_soon(scope, "a")
        tg.start_soon(scope, "b")
    assert len(threads["a"]) == 1
    assert len(threads["b"]) == 1
    assert threads["a"] != threads["b"]


async def test_calls_on_another_executor_are_not_pinned() -> None:
    async with ThreadExecutor(4, name="other") as other:
        async with pinned_thread():
            pinned = await to_thread(ident)
            elsewhere = await other.run(threading.current_thread)
        assert elsewhere.name.startswith("other-")
        assert elsewhere.ident != pinned


async def test_a_scope_takes_one_slot_and_gives_it_back() -> None:
    async with ThreadExecutor(1, name="one-slot") as executor:
        async with pinned_thread(executor):
            assert executor.statistics().workers == 1
            inside = await executor.run(ident)
        with anyio.fail_after(10):  # the slot is free again: a plain call gets it
            after = await executor.run(ident)
        assert inside == after  # the same (only) thread, now back in the pool


async def test_sync_wrap_from_the_pinned_thread_keeps_nested_calls_there_on_a_pool_of_one() -> None:
    async with ThreadExecutor(1, name="nest") as executor:

        @async_wrap(executor=executor)
        def inner() -> int:
            return threading.get_ident()

        @sync_wrap
        async def back_on_the_loop() -> int:
            return await inner()

        @async_wrap(executor=executor)
        def outer() -> tuple[int, int]:
            return threading.get_ident(), back_on_the_loop()

        async with pinned_thread(executor):
            with anyio.fail_after(10):
                here, nested = await outer()
        assert here == nested


async def test_a_sync_wait_on_the_pinned_thread_for_another_call_does_not_deadlock() -> None:
    async with ThreadExecutor(2, name="nowait") as executor:

        def waits_for_another() -> int:
            return executor.submit(ident).result(timeout=10)

        async with pinned_thread(executor):
            pinned = await executor.run(ident)
            with anyio.fail_after(10):
                other = await executor.run(waits_for_another)
        assert other != pinned  # ran in the pool: the pinned thread was busy waiting for it


async def test_a_sqlite_connection_is_used_across_calls_in_a_scope() -> None:
    """sqlite3 objects refuse other threads: opening, writing and committing in three calls works when pinned."""
    state: dict[str, sqlite3.Connection] = {}

    @async_wrap
    def open_db() -> None:
        state["db"] = sqlite3.connect(":memory:")
        state["db"].execute("create table t (x)")

    @async_wrap
    def insert(x: int) -> None:
        time.sleep(0.01)  # the inserts overlap: unpinned, they would run on several threads
        state["db"].execute("insert into t values (?)", (x,))

    @async_wrap
    def count() -> int:
        db = state.pop("db")
        try:
            return int(db.execute("select count(*) from t").fetchone()[0])
        finally:
            db.close()

    async with pinned_thread():
        await open_db()
        async with anyio.create_task_group() as tg:
            for x in range(4):
                tg.start_soon(insert, x)
        assert await count() == 4


async def test_a_scope_on_a_shut_down_executor_fails_at_once() -> None:
    executor = ThreadExecutor(1)
    executor.shutdown()
    with pytest.raises(ExecutorShutdownError):
        async with pinned_thread(executor):
            pass


async def test_calls_of_a_scope_whose_thread_never_started_fail_instead_of_hanging() -> None:
    """shutdown(cancel_futures=True) drops the scope's queued server: the scope's calls get ExecutorShutdownError."""
    async with ThreadExecutor(1, name="busy") as executor:
        release = threading.Event()
        started = threading.Event()

        def hold() -> None:
            started.set()
            release.wait(10)

        async with anyio.create_task_group() as tg:
            tg.start_soon(executor.run, hold)
            await wait_thread_event(started)
            try:
                async with pinned_thread(executor):  # its server waits for the busy slot
                    executor.shutdown(wait=False, cancel_futures=True)
                    with pytest.raises(ExecutorShutdownError), anyio.fail_after(10):
                        await executor.run(ident)
            finally:
                release.set()


def test_only_a_thread_executor_can_be_pinned() -> None:
    with pytest.raises(TypeError, match="needs an asyncbridge ThreadExecutor"):
        pinned_thread(cf.ThreadPoolExecutor(1))  # type: ignore[arg-type]
