"""Worker threads start without making the event loop wait, in a fresh context, and a failed start fails the call."""

from __future__ import annotations

import contextvars
import threading
from typing import Any

import anyio
import pytest

from _sync import wait_thread_event
from asyncbridge import ThreadExecutor, _thread_start
from asyncbridge._backends import in_event_loop_thread

pytestmark = pytest.mark.anyio

tag: contextvars.ContextVar[str] = contextvars.ContextVar("tag", default="none")


async def test_the_loop_thread_never_waits_in_thread_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Thread.start() waits for the new thread to get the GIL (50-390 ms under CPU load): never on the loop."""
    started_on_loop: list[str] = []
    original = threading.Thread.start

    def start(self: threading.Thread) -> None:
        if in_event_loop_thread() and self.name.startswith(("cold-pool", "asyncbridge")):  # ours, not anyio's
            started_on_loop.append(self.name)
        original(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    gate = threading.Event()
    all_running = threading.Event()
    running: list[int] = []

    def hold() -> None:
        running.append(threading.get_ident())
        if len(running) == 4:
            all_running.set()
        gate.wait(10)

    async with ThreadExecutor(4, name="cold-pool") as executor:
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(executor.run, hold)
            await wait_thread_event(all_running)  # every call has a thread of its own
            gate.set()
        assert len(set(running)) == 4
    assert started_on_loop == []


async def test_a_thread_that_cannot_start_fails_the_call_it_was_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """A start that fails in the starter thread reaches the awaiting caller, instead of leaving it waiting."""

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    async with ThreadExecutor(2, name="no-threads") as executor:
        with anyio.fail_after(10), pytest.raises(RuntimeError, match="could not start a worker thread"):
            await executor.run(int, "1")
        assert executor.statistics().workers == 0


def test_threads_start_in_a_fresh_context_where_python_allows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where Thread takes context= (3.14), workers get an empty one: a free-threaded build would copy the caller's."""
    given: list[Any] = []

    class ThreadWithContext(threading.Thread):
        def __init__(self, *args: Any, context: contextvars.Context | None = None, **kwargs: Any) -> None:
            given.append(context)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(_thread_start, "_THREAD_TAKES_CONTEXT", True)
    monkeypatch.setattr(threading, "Thread", ThreadWithContext)
    token = tag.set("caller's")
    try:
        thread = _thread_start.new_thread(lambda: None, "fresh")
    finally:
        tag.reset(token)
    assert isinstance(thread, ThreadWithContext)
    assert len(given) == 1
    assert isinstance(given[0], contextvars.Context)
    assert tag not in given[0]


def test_off_the_loop_a_thread_starts_before_start_thread_returns() -> None:
    ran = threading.Event()
    thread = _thread_start.new_thread(ran.set, "direct")
    _thread_start.start_thread(thread, lambda exc: None)
    assert thread.ident is not None  # started here, not handed to the starter
    assert ran.wait(10)


async def test_when_not_even_the_starter_thread_can_start_the_call_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """The starter itself failing to start (no threads left at all) fails the call, and a later call still works."""
    import _thread

    original = _thread.start_new_thread

    def refuse(*args: Any) -> int:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(_thread_start, "_starter", _thread_start._Starter())
    monkeypatch.setattr(_thread, "start_new_thread", refuse)
    async with ThreadExecutor(2, name="no-starter") as executor:
        with anyio.fail_after(10), pytest.raises(RuntimeError, match="could not start a worker thread"):
            await executor.run(int, "1")
        monkeypatch.setattr(_thread, "start_new_thread", original)
        with anyio.fail_after(10):
            assert await executor.run(int, "2") == 2
