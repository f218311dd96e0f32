"""Helpers shared by the thread tests: watch worker threads and synchronise with them, never by sleeping."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

import anyio


async def wait_thread_event(event: threading.Event) -> None:
    """Wait for a threading.Event without blocking the loop (via anyio, not the code under test)."""
    assert await anyio.to_thread.run_sync(event.wait, 10), "timed out waiting for a worker"


class Gauge:
    """Counts how many callers are inside at once, and the most ever seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def __enter__(self) -> None:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.now -= 1


class LogWatch(logging.Handler):
    """The records a logger emitted, and ``arrived``, set once the first is in ``records``."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.records: list[logging.LogRecord] = []
        self.arrived = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.arrived.set()


@contextlib.contextmanager
def watch_log(logger: str, level: int) -> Iterator[LogWatch]:
    """Collect what ``logger`` emits at ``level`` or above, from whichever thread writes it."""
    watch = LogWatch(level)
    target = logging.getLogger(logger)
    old_level = target.level
    target.setLevel(level)
    target.addHandler(watch)
    try:
        yield watch
    finally:
        target.removeHandler(watch)
        target.setLevel(old_level)
