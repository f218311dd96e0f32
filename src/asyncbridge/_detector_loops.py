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
    session.awaiters = lambda frames: _asyncio_awaiters(loop)
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
    session.awaiters = lambda frames: [] if root is None else _trio_awaiters(root, frames)
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


# -- the await chain's outer part: the tasks awaiting the blocked one (read from the watchdog thread) ----------

MAX_AWAITERS = 32  # tasks followed outwards from the blocked one; a cycle or a huge tree is cut there


def coroutine_frames(coro: object) -> list[FrameType]:
    """The frames of a suspended coroutine and of what it awaits in turn, outermost first.

    Follows ``cr_await`` (coroutines), ``ag_await`` (async generators) and
    ``gi_yieldfrom`` (generator-based coroutines); a running coroutine has
    none of these set, so its chain is read from the stack instead.
    """
    frames: list[FrameType] = []
    while coro is not None and len(frames) < 256:
        for frame_name, next_name in (("cr_frame", "cr_await"), ("ag_frame", "ag_await"), ("gi_frame", "gi_yieldfrom")):
            if hasattr(coro, frame_name):
                frame = getattr(coro, frame_name)
                if frame is not None:
                    frames.append(frame)
                coro = getattr(coro, next_name, None)
                break
        else:
            break
    return frames


def _asyncio_awaiters(loop: asyncio.AbstractEventLoop) -> list[FrameType]:
    """The coroutine frames of the tasks awaiting the running task, outermost first.

    On Python 3.14+, :func:`asyncio.capture_call_graph` (following the first
    awaiter of each). Before it, a task awaiting the running one directly:
    the running task's done callbacks hold that task's wake-up method.
    """
    task = asyncio.current_task(loop)
    if task is None:
        return []
    chains: list[list[FrameType]] = []  # innermost awaiter first
    capture: Callable[[asyncio.Future[Any]], Any] | None = getattr(asyncio, "capture_call_graph", None)
    if capture is not None:
        # From this (the watchdog) thread the task is not the current one: the graph is read from its objects.
        graph = capture(task)
        while graph is not None and graph.awaited_by and len(chains) < MAX_AWAITERS:
            graph = graph.awaited_by[0]
            chains.append([entry.frame for entry in reversed(graph.call_stack)])  # call_stack: innermost first
    else:
        seen = {id(task)}
        current: asyncio.Future[Any] = task
        while len(chains) < MAX_AWAITERS:
            callbacks: list[tuple[Any, Any]] = list(getattr(current, "_callbacks", None) or ())
            owners: list[object] = [getattr(callback, "__self__", None) for callback, _ in callbacks]
            tasks: list[asyncio.Task[Any]] = [o for o in owners if isinstance(o, asyncio.Task)]
            awaiter = next((t for t in tasks if id(t) not in seen), None)
            if awaiter is None:
                break
            seen.add(id(awaiter))
            chains.append(coroutine_frames(awaiter.get_coro()))
            current = awaiter
    return [frame for chain in reversed(chains) for frame in chain]


def _trio_awaiters(root: trio.lowlevel.Task, frames: list[FrameType]) -> list[FrameType]:
    """The coroutine frames of the trio tasks whose nurseries the running task runs in, outermost first."""
    task = _trio_task(root, frames)
    chains: list[list[FrameType]] = []
    while task is not None and len(chains) < MAX_AWAITERS:
        nursery = task.parent_nursery
        task = None if nursery is None else nursery.parent_task
        if task is None or task is root:  # the run's own root task is trio's, not the program's
            break
        chains.append(coroutine_frames(task.coro))
    return [frame for chain in reversed(chains) for frame in chain]


def _trio_current_task_name() -> str | None:
    import trio

    try:
        return trio.lowlevel.current_task().name
    except RuntimeError:  # a run_sync_soon callback, not a task
        return None


def _trio_task_name(root: trio.lowlevel.Task, frames: list[FrameType]) -> str | None:
    """Name the trio task whose coroutine frame is on the sampled stack (from the watchdog thread)."""
    task = _trio_task(root, frames)
    name: str | None = None if task is None else task.name
    return name


def _trio_task(root: trio.lowlevel.Task, frames: list[FrameType]) -> trio.lowlevel.Task | None:
    """The trio task whose coroutine frame is on the sampled stack (from the watchdog thread)."""
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
            return found
    return None
