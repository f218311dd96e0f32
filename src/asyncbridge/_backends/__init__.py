"""The backend seam: what every event loop backend implements, and which one runs here.

asyncbridge runs on asyncio (uvloop included) and on trio. Everything that
depends on which one is running goes through an :class:`Inbox`, one per
asyncio loop or trio run, found with :func:`current_inbox` from the loop's
thread (and cached per thread). An inbox can

- park the awaiting task of a :class:`~asyncbridge._call.Call` and wake it
  from the worker thread that finished it (``start``/``cancelled``/``run``,
  ``push``), waking the loop once for however many calls finished meanwhile;
- park a task waiting for a limiter slot (``acquire``);
- run a ``sync_wrap`` coroutine on its loop for a waiting thread
  (``start_job``), and tell whether that loop is gone (``is_closed``);
- say whether this thread is running its loop (``is_current``), schedule a
  callback on it from any thread, and, where the loop can, watch a file
  descriptor on it (``add_reader``: the process pool reads replies there).

The two implementations are ``_asyncio.AsyncioInbox`` and
``_trio.TrioInbox``; the trio one is imported only when a trio run asks, so
importing asyncbridge never imports trio. To add a backend, implement
:class:`Inbox` in a module of this package and teach :func:`current_inbox` and
:func:`running_backend` to find it.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Protocol

from ._asyncio import AsyncioInbox, running_asyncio_loop

if TYPE_CHECKING:
    from .._call import Call, Job, QueuedWaiter, Waiter

__all__ = [
    "AsyncioInbox",
    "Inbox",
    "current_inbox",
    "in_event_loop_thread",
    "running_asyncio_loop",
    "running_backend",
]


class Inbox(Protocol):
    """One event loop (an asyncio loop or a trio run), as the rest of asyncbridge sees it."""

    @property
    def backend(self) -> Literal["asyncio", "trio"]:
        """Which event loop library runs this loop."""
        ...

    @property
    def reads_fds(self) -> bool:
        """True if ``add_reader`` works on this loop."""
        ...

    # -- from any thread ----------------------------------------------------------

    def push(self, item: Waiter, /) -> None:
        """Wake the task waiting for ``item`` (finished elsewhere); ``item.lost()`` if the loop is gone."""
        ...

    def call_soon_threadsafe(self, fn: Callable[..., object], /, *args: Any) -> None:
        """Run ``fn(*args)`` on the loop soon. Raises RuntimeError if the loop is gone."""
        ...

    def is_closed(self) -> bool:
        """True once the loop can run nothing more (closed, or the trio run finished)."""
        ...

    def start_job(self, job: Job, /, *, ours: bool = False) -> None:
        """From a thread that will wait for it: run ``job.body()`` in a task on the loop.

        ``ours`` is True for asyncbridge's own background loop, which no
        user code shares. Raises RuntimeError if the loop is gone.
        """
        ...

    # -- on the loop's thread --------------------------------------------------------

    def is_current(self) -> bool:
        """True if this thread is running this loop now."""
        ...

    def start(self, call: Call, /) -> Awaitable[object]:
        """Submit ``call`` to its executor and return what to await until it is done.

        On asyncio, a cancellation of that await is handled by awaiting
        ``cancelled``; trio settles it inside the await.
        """
        ...

    async def cancelled(self, call: Call, exc: BaseException, /) -> NoReturn:
        """Handle the awaiting task's cancellation (``exc``) per the call's policy, then re-raise it."""
        ...

    async def run(self, call: Call, /) -> Any:
        """Submit ``call``, wait for it, and return its result (or raise its exception)."""
        ...

    async def acquire(self, ticket: QueuedWaiter, /) -> None:
        """Queue ``ticket`` and wait, cancellably, until it is served."""
        ...

    def wake_here(self, item: Waiter, /) -> None:
        """On the loop's thread: wake the task waiting for ``item`` now, without a thread hop."""
        ...

    def add_reader(self, fd: int, callback: Callable[..., object], /, *args: Any) -> bool:
        """Call ``callback(*args)`` on the loop whenever ``fd`` is readable; False if this loop cannot."""
        ...

    def remove_reader(self, fd: int, /) -> None:
        """Stop watching ``fd``; nothing happens if it was not watched or the loop is closed."""
        ...


class _Local(threading.local):
    loop: object = None  # the asyncio loop or trio token whose inbox is cached
    inbox: Any = None


_local = _Local()

# trio's per-thread run state, whose ``runner.trio_token`` is what
# trio.lowlevel.current_trio_token() returns; set at the first trio lookup, and
# left None if this trio version does not have it where expected.
_trio_run_context: Any = None


def current_inbox() -> Inbox:
    """Return the inbox of the event loop running in this thread.

    Raises:
        RuntimeError: no asyncio loop or trio run is active in this thread.
    """
    global _trio_run_context
    loop = running_asyncio_loop()
    local = _local
    if loop is not None:
        if local.loop is loop:
            inbox: Inbox = local.inbox
            return inbox
        local.loop = loop
        local.inbox = new = AsyncioInbox(loop)
        return new
    run_context = _trio_run_context
    if run_context is not None:
        # What current_trio_token() reads, without its three calls: the token of
        # this thread's run (created by the first lookup in the run, below).
        try:
            token = run_context.runner.trio_token
        except AttributeError:  # not in a trio run
            pass
        else:
            if token is not None and local.loop is token:
                trio_inbox: Inbox = local.inbox
                return trio_inbox
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            token = trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
        else:
            if local.loop is token:
                trio_inbox = local.inbox
                return trio_inbox
            from ._trio import TrioInbox, run_context_of

            _trio_run_context = run_context_of(token)
            local.loop = token
            local.inbox = new_trio = TrioInbox(token)
            return new_trio
    raise RuntimeError(
        "asyncbridge: no running event loop in this thread; await this from a coroutine "
        "running under asyncio (or uvloop) or trio"
    )


def running_backend() -> Literal["asyncio", "trio"] | None:
    """Which event loop library runs in this thread: "asyncio" (uvloop included), "trio", or None."""
    if running_asyncio_loop() is not None:
        return "asyncio"
    trio = sys.modules.get("trio")  # never imported here: a trio run has imported it already
    if trio is None:
        return None
    in_trio_run = getattr(trio.lowlevel, "in_trio_run", None)  # trio >= 0.26; raising is slower
    if in_trio_run is not None:
        return "trio" if in_trio_run() else None
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return None
    return "trio"


def in_event_loop_thread() -> bool:
    """True if an asyncio loop or a trio run is running in this thread (where waiting would deadlock it)."""
    return running_backend() is not None
