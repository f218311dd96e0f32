"""Helpers shared by the thread tests: synchronise with worker threads, never by sleeping."""

from __future__ import annotations

import threading

import anyio


async def wait_thread_event(event: threading.Event) -> None:
    """Wait for a threading.Event without blocking the loop (via anyio, not the code under test)."""
    assert await anyio.to_thread.run_sync(event.wait, 10), "timed out waiting for a worker"
