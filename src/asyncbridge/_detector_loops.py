"""Attaching a detector session to an event loop: the heartbeat, starting, stopping and checkpoints, per backend.

asyncio (and uvloop) get a heartbeat callback scheduled on the loop; trio gets
a system task. Both feed the same :class:`~asyncbridge._detector_session.DetectorSession`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from . import _strict
from ._detector_event import BlockingEvent
from ._detector_session import DetectorSession, DetectorSettings

if TYPE_CHECKING:
    import trio

__all__ = ["checkpoint_asyncio", "checkpoint_trio", "start_asyncio", "start_trio", "stop_asyncio", "stop_trio"]

# -- starting and stopping, per backend ---------------------------------------------


def _strict_state(
    settings: DetectorSettings, session: DetectorSession, task_name: Callable[[], str | None]
) -> _strict.StrictState | None:
    if settings.strict is False:
        return None
    return _strict.StrictState(
        action=settings.strict,
        version=settings.strict_rules,
        allow=settings.allow,
        record=session.calls.append,  # the watchdog takes them from there
        task_name=task_name,
        thread_name=session.thread_name,
        run_frame=session.entry_frame if session.trio else None,
    )


def start_asyncio(
    settings: DetectorSettings,
    record: Callable[[BlockingEvent], None],
    loop: asyncio.AbstractEventLoop,
    entry: FrameType | None,
) -> DetectorSession:
    """Start a session on ``loop``, run by this thread; ``entry`` is the loop's caller (see :func:`entry_frame`)."""
    session = DetectorSession(settings, record, lambda frames: _asyncio_task_name(loop))
    session.entry_frame = entry
    session.loop = loop
    session.stop_heartbeat = _AsyncioHeartbeat(session, loop).cancel
    session.start(_strict_state(settings, session, lambda: _asyncio_task_name(loop)))
    return session


def start_trio(
    settings: DetectorSettings, record: Callable[[BlockingEvent], None], entry: FrameType | None
) -> DetectorSession:
    """Start a session on the trio run of this thread; ``entry`` is the run's ``unrolled_run`` frame."""
    import trio

    root = trio.lowlevel.current_root_task()
    session = DetectorSession(settings, record, lambda frames: None if root is None else _trio_task_name(root, frames))
    session.entry_frame = entry
    session.trio = True
    scope = trio.CancelScope()
    interval = session.interval

    async def heartbeat() -> None:
        sleep, tick = trio.sleep, session.tick
        with scope:
            while True:
                tick()  # first thing: if the loop blocked before this task first ran, that gap ends now
                await sleep(interval)

    trio.lowlevel.spawn_system_task(heartbeat, name="asyncbridge-heartbeat")
    session.stop_heartbeat = scope.cancel
    session.start(_strict_state(settings, session, _trio_current_task_name))
    return session


class _AsyncioHeartbeat:
    """Store the time every interval, from a ``call_later`` callback: no task, no coroutine."""

    __slots__ = ("_call_later", "_handle", "_interval", "_session")

    def __init__(self, session: DetectorSession, loop: asyncio.AbstractEventLoop) -> None:
        self._session = session
        self._interval = session.interval
        self._call_later = loop.call_later
        self._handle = loop.call_later(self._interval, self._beat)

    def _beat(self) -> None:
        self._session.tick()
        self._handle = self._call_later(self._interval, self._beat)

    def cancel(self) -> None:
        self._handle.cancel()


async def stop_asyncio(session: DetectorSession, loop: asyncio.AbstractEventLoop) -> None:
    """Stop ``session`` and wait, without blocking ``loop``, until its watchdog has recorded every event."""
    done = loop.create_future()

    def wake() -> None:  # in the watchdog thread, as it exits
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(_resolve, done)

    session.on_exit = wake
    session.stop()
    if not session.exited:
        await done


async def checkpoint_asyncio(session: DetectorSession, loop: asyncio.AbstractEventLoop) -> None:
    """Wait, without blocking ``loop``, until ``session`` has recorded every block that ended by now."""
    done = loop.create_future()

    def wake() -> None:  # in the watchdog thread
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(_resolve, done)

    session.checkpoint(wake)
    await done


async def checkpoint_trio(session: DetectorSession) -> None:
    """Wait, without blocking the trio run, until ``session`` has recorded every block that ended by now."""
    import trio

    done = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def wake() -> None:  # in the watchdog thread
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(done.set)

    session.checkpoint(wake)
    await done.wait()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def stop_trio(session: DetectorSession) -> None:
    """Stop ``session`` and wait, without blocking the trio run, until its watchdog has recorded every event."""
    import trio

    done = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def wake() -> None:  # in the watchdog thread, as it exits
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(done.set)

    session.on_exit = wake
    session.stop()
    if not session.exited:
        await done.wait()


def _asyncio_task_name(loop: asyncio.AbstractEventLoop) -> str | None:
    # Read from the watchdog thread too: current_task(loop) looks the loop up in a
    # dict (3.10-3.13) or in the loop thread's state (3.14); both are fine to read.
    task = asyncio.current_task(loop)
    return None if task is None else task.get_name()


def _trio_current_task_name() -> str | None:
    import trio

    try:
        return trio.lowlevel.current_task().name
    except RuntimeError:  # a run_sync_soon callback, not a task
        return None


def _trio_task_name(root: trio.lowlevel.Task, frames: list[FrameType]) -> str | None:
    """Name the trio task whose coroutine frame is on the sampled stack (from the watchdog thread)."""
    by_frame: dict[Any, trio.lowlevel.Task] = {}
    todo = [root]
    while todo:
        task = todo.pop()
        frame = getattr(task.coro, "cr_frame", None)
        if frame is not None:
            by_frame[frame] = task
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    for frame in frames:
        found = by_frame.get(frame)
        if found is not None:
            return found.name
    return None
