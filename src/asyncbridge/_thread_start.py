"""Starting threads without making an event loop wait for them.

``threading.Thread.start()`` returns only once the new thread has run its
first steps, which needs the GIL: while other threads run Python code, that
took 50-390 ms here, all of it on the caller's thread. An event loop must not
wait like that, so asyncbridge threads are started through :func:`start_thread`:
from a thread that runs no event loop it starts the thread at once; from an
event loop's thread it hands the thread to a starter thread and returns after
a queue put. The starter itself is started with ``_thread.start_new_thread``,
which does not wait, and exits after a while without work.

Threads are created with a fresh, empty context where ``threading.Thread``
accepts one (Python 3.14): otherwise a free-threaded build would start them
in a copy of the creating thread's context, leaking the caller's context
variables into a pool's workers.
"""

from __future__ import annotations

import _thread
import contextvars
import inspect
import os
import queue
import threading
from collections.abc import Callable

from ._backends import in_event_loop_thread
from ._call import logger

__all__ = ["new_thread", "start_thread"]

STARTER_IDLE_TIMEOUT = 10.0  # seconds the starter thread waits for work before it exits

_THREAD_TAKES_CONTEXT = "context" in inspect.signature(threading.Thread.__init__).parameters


def new_thread(target: Callable[[], object], name: str) -> threading.Thread:
    """A daemon thread running ``target`` in a fresh, empty context (where Python lets us choose)."""
    if _THREAD_TAKES_CONTEXT:
        return threading.Thread(target=target, name=name, daemon=True, context=contextvars.Context())  # type: ignore[call-arg,unused-ignore]
    return threading.Thread(target=target, name=name, daemon=True)


class _Starter:
    """Starts threads handed over by event loop threads, one after another, in a thread of its own."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[tuple[threading.Thread, Callable[[BaseException], object]]] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._running = False

    def submit(self, thread: threading.Thread, on_error: Callable[[BaseException], object]) -> None:
        self._requests.put((thread, on_error))
        if self._running:
            return
        with self._lock:
            if self._running:
                return
            try:
                _thread.start_new_thread(self._serve, ())
            except BaseException as exc:  # no thread at all can start: fail what waits for one
                error = exc
                failed = self._take_all()
            else:
                self._running = True
                return
        for _, report in failed:
            report(error)

    def _take_all(self) -> list[tuple[threading.Thread, Callable[[BaseException], object]]]:
        taken: list[tuple[threading.Thread, Callable[[BaseException], object]]] = []
        while True:
            try:
                taken.append(self._requests.get_nowait())
            except queue.Empty:
                return taken

    def _serve(self) -> None:
        requests = self._requests
        while True:
            try:
                thread, on_error = requests.get(timeout=STARTER_IDLE_TIMEOUT)
            except queue.Empty:
                with self._lock:
                    if requests.empty():
                        self._running = False
                        return
                continue
            try:
                thread.start()
            except BaseException as exc:  # reported to the executor, which fails the calls it strands
                try:
                    on_error(exc)
                except BaseException:
                    logger.exception("asyncbridge: reporting a failed thread start failed")


_starter = _Starter()


def _new_starter_after_fork() -> None:
    global _starter
    _starter = _Starter()  # the parent's starter thread does not exist in a forked child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_starter_after_fork)


def start_thread(thread: threading.Thread, on_error: Callable[[BaseException], object]) -> None:
    """Start ``thread``, never making an event loop's thread wait for it.

    Off an event loop, the thread starts now and a failure raises here. On an
    event loop's thread, it starts soon in the starter thread, and a failure
    is passed to ``on_error`` there instead.
    """
    if in_event_loop_thread():
        _starter.submit(thread, on_error)
    else:
        thread.start()
