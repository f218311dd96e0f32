"""The event loop's side of the hand-off, per backend: find the running loop's inbox, park the task, wake it."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time

import anyio
import pytest

from _internals import current_inbox, running_asyncio_loop
from _sync import wait_thread_event, watch_log
from asyncbridge import ThreadExecutor, async_wrap, sync_wrap, to_thread

pytestmark = pytest.mark.anyio


# -- finding the running loop's inbox: one per asyncio loop, one per trio run -------------------


def test_awaiting_without_an_event_loop_is_a_clear_error() -> None:
    """Driving the coroutine outside asyncio or trio raises RuntimeError naming the fix."""
    coro = to_thread(int)
    with pytest.raises(RuntimeError, match="no running event loop"):
        coro.send(None)
    coro.close()


def test_trio_runs_in_turn_and_in_parallel_threads_each_get_their_own_inbox() -> None:
    """On trio, every run (one after another in a thread, or at once in two threads) gets results on its own inbox."""
    trio = pytest.importorskip("trio")

    async def main(tag: str) -> list[str]:
        with trio.fail_after(10):
            token = trio.lowlevel.current_trio_token()  # before the first lookup, which then must not trust a stale one
            assert current_inbox().token is token
            assert current_inbox() is current_inbox()
            results: list[str] = []

            async def one(i: int) -> None:
                results.append(await to_thread(lambda: f"{tag}-{i}"))

            async with trio.open_nursery() as nursery:
                for i in range(20):
                    nursery.start_soon(one, i)
            return sorted(results)

    def runs(tag: str, out: list[list[str]]) -> None:
        for n in range(3):
            out.append(trio.run(main, f"{tag}{n}"))

    other: list[list[str]] = []
    thread = threading.Thread(target=runs, args=("other", other))
    thread.start()
    mine: list[list[str]] = []
    runs("mine", mine)
    thread.join(30)
    for tag, out in (("mine", mine), ("other", other)):
        assert out == [sorted(f"{tag}{n}-{i}" for i in range(20)) for n in range(3)]
    coro = to_thread(int)  # after the runs, this thread has no loop again
    with pytest.raises(RuntimeError, match="no running event loop"):
        coro.send(None)
    coro.close()


def test_trio_runs_one_after_another_in_one_thread_each_run_their_calls() -> None:
    """On trio, a second trio.run in the same thread runs sync_wrap calls on its own tasks, not the ended run's."""
    trio = pytest.importorskip("trio")

    @sync_wrap
    async def token() -> object:
        return trio.lowlevel.current_trio_token()

    async def main() -> tuple[object, object]:
        with trio.fail_after(10):
            return await to_thread(lambda: (token(), token())), trio.lowlevel.current_trio_token()

    for _ in range(2):
        (first, second), own = trio.run(main)
        assert first is second is own


# -- parking the awaiting task ---------------------------------------------------------------------


async def test_native_asyncio_timeout_fires() -> None:
    """asyncio.wait_for around an await through async_wrap fires on time (asyncio backends)."""
    if running_asyncio_loop() is None:
        pytest.skip("asyncio-only API")
    release = threading.Event()

    @async_wrap
    def stuck() -> None:
        release.wait(10)

    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(stuck(), 0.1)
    release.set()


async def test_waiting_out_a_thread_after_cancel_does_not_spin_the_loop() -> None:
    """While abandon_on_cancel=False waits out a cancelled call, the loop thread stays idle."""
    release = threading.Event()
    started = threading.Event()

    @async_wrap(abandon_on_cancel=False)
    def slow() -> None:
        started.set()
        release.wait(10)

    def release_later() -> None:
        time.sleep(0.5)
        release.set()

    cpu_before: list[float] = []

    async def cancel_once_started(scope: anyio.CancelScope) -> None:
        await wait_thread_event(started)
        threading.Thread(target=release_later).start()
        cpu_before.append(time.thread_time())
        scope.cancel()

    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as scope:
            tg.start_soon(cancel_once_started, scope)
            await slow()
    assert release.is_set()  # the cancelled await waited out the call
    assert time.thread_time() - cpu_before[0] < 0.25  # a busy loop would burn about 0.5 s


# -- waking a loop that is gone ----------------------------------------------------------------------


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
    return asyncio.new_event_loop()


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_a_call_finishing_after_its_loop_closed_is_logged_not_lost(kind: str) -> None:
    """A call whose asyncio loop was closed (not cancelled) while it ran: its error is logged, the pool runs on."""
    started = threading.Event()
    release = threading.Event()

    def fail_late() -> None:
        started.set()
        release.wait(10)
        raise LookupError("raised after the loop closed")

    with ThreadExecutor(1) as executor:
        loop = _new_loop(kind)
        try:
            task = loop.create_task(executor.run(fail_late))
            assert loop.run_until_complete(to_thread(started.wait, 10))
        finally:
            loop.close()
        with watch_log("asyncbridge", logging.ERROR) as log:
            release.set()
            assert log.arrived.wait(10), "the late error was not logged"
        assert any(record.exc_info and isinstance(record.exc_info[1], LookupError) for record in log.records), (
            log.records
        )
        assert executor.submit(int, "7").result(10) == 7
    for record in log.records:
        record.exc_info = None  # its traceback holds the call, whose future holds the task the closed loop left pending
    del task
    gc.collect()  # asyncio reports that task now, into this test's captured log, not at exit
