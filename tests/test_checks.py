"""Durations are checked where they are given; a duration the platform cannot wait for never kills a thread."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import anyio
import pytest

from asyncbridge import BlockingDetector, ThreadExecutor, async_wrap

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("idle_timeout", [math.inf, threading.TIMEOUT_MAX * 2, None])
async def test_idle_timeout_never_kills_the_worker_and_the_next_call_runs(idle_timeout: float | None) -> None:
    """idle_timeout=None, inf or above the platform's maximum keeps the thread; it used to die of OverflowError."""
    async with ThreadExecutor(1, name="never-idle", idle_timeout=idle_timeout) as executor:
        first = await executor.run(threading.get_ident)
        with anyio.fail_after(10):  # the call that used to hang for ever
            second = await executor.run(threading.get_ident)
        assert first == second  # the same thread, still alive
        assert executor.statistics().workers == 1


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (math.nan, ValueError, "idle_timeout must be a positive number of seconds or None"),
        (-1, ValueError, "idle_timeout must be a positive number of seconds or None"),
        (0, ValueError, "(threads are never retired), got 0"),
        ("10", TypeError, "idle_timeout must be a number of seconds or None"),
        (True, TypeError, "got True"),
    ],
)
def test_thread_executor_rejects_idle_timeouts_that_are_not_durations(
    value: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        ThreadExecutor(1, idle_timeout=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "error"), [(math.nan, ValueError), (-0.5, ValueError), (0, ValueError), ("2", TypeError)]
)
def test_async_wrap_rejects_timeouts_that_are_not_durations(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="timeout must be a"):
        async_wrap(timeout=value)  # type: ignore[arg-type]


async def test_an_infinite_timeout_means_no_timeout() -> None:
    @async_wrap(timeout=math.inf)
    def add(a: int, b: int) -> int:
        return a + b

    assert await add(2, 3) == 5


async def test_a_fired_timeout_names_the_function_and_its_limit() -> None:
    release = threading.Event()

    @async_wrap(timeout=0.2)
    def load_user(user_id: int) -> int:
        release.wait(10)
        return user_id

    try:
        with pytest.raises(TimeoutError) as info:
            await load_user(1)
    finally:
        release.set()
    assert type(info.value) is TimeoutError  # still the builtin type
    assert str(info.value) == (
        "test_a_fired_timeout_names_the_function_and_its_limit.<locals>.load_user() did not finish within 0.2 s "
        "(async_wrap timeout=)"
    )


async def test_a_generator_step_that_times_out_names_the_generator() -> None:
    release = threading.Event()

    @async_wrap(timeout=0.2)
    def rows() -> Any:
        yield 1
        release.wait(10)
        yield 2

    seen: list[int] = []

    async def consume() -> None:
        async for row in rows():
            seen.append(row)

    try:
        with pytest.raises(TimeoutError, match=r"rows\(\), a step of the generator, did not finish within 0.2 s"):
            await consume()
    finally:
        release.set()
    assert seen == [1]


async def test_a_timeout_error_raised_by_the_function_itself_is_not_rewritten() -> None:
    @async_wrap(timeout=30)
    def connect() -> None:
        raise TimeoutError("the server did not answer")

    with pytest.raises(TimeoutError, match=r"^the server did not answer$"):
        await connect()


def test_an_executor_class_instead_of_an_instance_fails_at_decoration() -> None:
    with pytest.raises(TypeError, match=r"got the class ThreadExecutor; create one, e.g. executor=ThreadExecutor\("):
        async_wrap(executor=ThreadExecutor)  # type: ignore[arg-type]


def test_a_detector_threshold_the_watchdog_cannot_wait_for_is_refused() -> None:
    """BlockingDetector(threshold=1e12) used to start a watchdog that died at once, leaving it silently inactive."""
    with pytest.raises(ValueError, match="threshold must be at most"):
        BlockingDetector(1e12)


def test_with_instead_of_async_with_says_to_use_async_with() -> None:
    detector = BlockingDetector()
    started = time.monotonic()
    with pytest.raises(TypeError, match="'async with BlockingDetector"), detector:  # type: ignore[misc]
        pass
    assert time.monotonic() - started < 5
