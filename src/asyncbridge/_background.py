"""The background event loops that run sync_wrap coroutines for threads without a loop of their own.

One per backend, each in a daemon thread, started on first use and reused by
every such call (one loop, not one per call), and closed at interpreter exit,
never waiting there without bound for a coroutine that will not stop:

- asyncio (the default): a plain asyncio loop;
- trio (``sync_wrap(backend="trio")``): a trio run whose host tasks run the
  coroutines (see ``_backends/_trio.py``), for trio-native code.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
from typing import Any, Literal

from ._backends import AsyncioInbox, Inbox

__all__ = ["EXIT_TIMEOUT", "background_inbox", "background_loop_if_started"]

EXIT_TIMEOUT = 5.0  # seconds the exit gives each background loop's coroutines to stop once cancelled; arbitrary

_lock = threading.Lock()
_asyncio: tuple[AsyncioInbox, threading.Thread] | None = None
_trio: tuple[Inbox, threading.Thread, Any] | None = None  # (inbox, thread, the run's cancel scope)


def background_inbox(backend: Literal["asyncio", "trio"] = "asyncio") -> Inbox:
    """The inbox of the shared background loop of ``backend``; started on first use."""
    if backend == "trio":
        return _trio_inbox()
    current = _asyncio
    if current is not None and current[1].is_alive():
        return current[0]
    return _start_asyncio()


def _start_asyncio() -> AsyncioInbox:
    global _asyncio
    with _lock:
        if _asyncio is None or not _asyncio[1].is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            thread = threading.Thread(target=serve, name="asyncbridge-sync-wrap-loop", daemon=True)
            thread.start()
            ready.wait()
            _asyncio = (AsyncioInbox(loop), thread)
        return _asyncio[0]


def _trio_inbox() -> Inbox:
    global _trio
    current = _trio
    if current is not None and current[1].is_alive():
        return current[0]
    with _lock:
        if _trio is None or not _trio[1].is_alive():
            import trio

            from ._backends._trio import TrioInbox

            started: dict[str, Any] = {}
            ready = threading.Event()

            async def main() -> None:
                with trio.CancelScope() as scope:
                    started["inbox"] = TrioInbox(trio.lowlevel.current_trio_token())
                    started["scope"] = scope
                    ready.set()
                    await trio.sleep_forever()

            def serve() -> None:
                try:
                    trio.run(main)
                finally:
                    ready.set()  # even if the run failed to start

            thread = threading.Thread(target=serve, name="asyncbridge-sync-wrap-trio", daemon=True)
            thread.start()
            ready.wait()
            if "inbox" not in started:
                raise RuntimeError("sync_wrap: the background trio run failed to start (see the log)")
            _trio = (started["inbox"], thread, started["scope"])
        return _trio[0]


def _forget_after_fork() -> None:
    global _asyncio, _trio
    _asyncio = _trio = None  # their threads do not exist in a forked child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def background_loop_if_started() -> asyncio.AbstractEventLoop | None:
    """The background asyncio loop, if one is running (for tests and diagnostics)."""
    current = _asyncio
    return current[0].loop if current is not None and current[1].is_alive() else None


@atexit.register
def _close_background_loops() -> None:
    """At interpreter exit: cancel what still runs on the background loops, stop and close them."""
    global _asyncio, _trio
    with _lock:
        asyncio_current, _asyncio = _asyncio, None
        trio_current, _trio = _trio, None
    if trio_current is not None:
        inbox, thread, scope = trio_current
        with contextlib.suppress(Exception):  # the run may be over already
            inbox.call_soon_threadsafe(scope.cancel)  # cancels every host task: the system nursery ends
        thread.join(timeout=EXIT_TIMEOUT)
    if asyncio_current is None:
        return
    asyncio_inbox, asyncio_thread = asyncio_current
    loop = asyncio_inbox.loop

    async def cancel_all() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await loop.shutdown_asyncgens()

    # Best effort at exit: a stuck coroutine must not hang the interpreter.
    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout=EXIT_TIMEOUT)
    loop.call_soon_threadsafe(loop.stop)
    asyncio_thread.join(timeout=EXIT_TIMEOUT)
    if not asyncio_thread.is_alive():
        loop.close()
