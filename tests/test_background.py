"""The background loops of sync_wrap for threads without a loop: asyncio by default, trio on request."""

from __future__ import annotations

import contextvars
import subprocess
import sys
import threading
import time

import pytest

from asyncbridge import sync_wrap

trio = pytest.importorskip("trio")

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


@sync_wrap(backend="trio")
async def trio_native(delay: float) -> tuple[object, str]:
    await trio.sleep(delay)  # trio-only: fails on an asyncio loop
    return trio.lowlevel.current_trio_token(), request_id.get()


@sync_wrap(backend="trio")
async def trio_fails() -> None:
    await trio.sleep(0)
    raise LookupError("from trio")


def test_plain_sync_code_runs_trio_native_coroutines_on_one_background_trio_run() -> None:
    request_id.set("r-1")
    first, seen = trio_native(0)
    second, _ = trio_native(0.01)
    assert seen == "r-1"  # the caller's context variables are visible
    assert first is second  # one run, reused


def test_threads_without_a_loop_share_the_trio_run_and_run_at_once() -> None:
    tokens: list[object] = []
    started = time.monotonic()

    def call() -> None:
        tokens.append(trio_native(0.2)[0])

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(tokens) == 5
    assert len(set(map(id, tokens))) == 1
    assert time.monotonic() - started < 0.2 * 5  # concurrent on the one run, not one after another


def test_the_coroutines_exception_reaches_the_caller_unchanged() -> None:
    with pytest.raises(LookupError, match="from trio"):
        trio_fails()


def test_an_unknown_backend_is_refused_at_decoration() -> None:
    with pytest.raises(ValueError, match="must be 'asyncio' or 'trio', got 'curio'"):
        sync_wrap(backend="curio")  # type: ignore[call-overload]


def test_the_trio_run_is_closed_at_exit_even_with_a_coroutine_that_never_ends() -> None:
    """A coroutine still waiting at exit is cancelled: the interpreter exits, promptly."""
    code = """
import threading, trio
from asyncbridge import sync_wrap

@sync_wrap(backend="trio")
async def forever():
    await trio.sleep_forever()

@sync_wrap(backend="trio")
async def ping():
    return "pong"

print(ping(), flush=True)
threading.Thread(target=forever, daemon=True).start()
"""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "pong\n"
    assert time.monotonic() - started < 30
