"""Pins the public types: type-checked by mypy --strict and pyright (strict) in CI, never run."""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import AsyncGenerator, Coroutine, Generator, Iterator
from typing import Any

from typing_extensions import assert_type

from asyncbridge import (
    CapacityLimiter,
    ExecutorStatistics,
    ProcessExecutor,
    ThreadExecutor,
    async_wrap,
    limiter_of,
    sync_wrap,
    to_process,
    to_thread,
)
from asyncbridge.dask import DaskExecutor


@async_wrap
def bare(x: int, *, name: str = "") -> str:
    return f"{x}{name}"


@async_wrap()
def called(x: int) -> bytes:
    return bytes(x)


@async_wrap(executor=cf.ThreadPoolExecutor(2), limit=4, timeout=1.5, abandon_on_cancel=False)
def with_options(x: int, y: float) -> float:
    return x * y


@async_wrap
def numbers(n: int) -> Iterator[int]:
    yield from range(n)


@async_wrap
def counted(n: int) -> Generator[str, int, None]:
    total = yield str(n)
    yield str(total)


@sync_wrap
async def fetch(url: str, *, retries: int = 3) -> bytes:
    return url.encode()


@sync_wrap()
async def count(n: int) -> list[int]:
    return list(range(n))


def sync_uses() -> None:
    assert_type(fetch("u", retries=1), bytes)
    assert_type(count(3), list[int])
    fetch(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


class Service:
    @async_wrap
    def method(self, key: str) -> list[str]:
        return [key]

    @classmethod
    @async_wrap
    def build(cls, n: int) -> Service:
        return cls()

    @staticmethod
    @async_wrap
    def helper(flag: bool) -> int:
        return int(flag)


async def uses() -> None:
    pending = assert_type(bare(1, name="a"), Coroutine[Any, Any, str])
    assert_type(await pending, str)
    assert_type(await bare(1), str)
    assert_type(await called(3), bytes)
    assert_type(await with_options(2, 1.5), float)
    assert_type(limiter_of(with_options), CapacityLimiter | None)
    assert_type(limiter_of(Service().method), CapacityLimiter | None)
    assert_type(numbers(3), AsyncGenerator[int, None])
    assert_type(counted(3), AsyncGenerator[str, int])
    async for n in numbers(3):
        assert_type(n, int)
    assert_type(await Service().method("k"), list[str])
    assert_type(await Service.build(1), Service)
    assert_type(await Service.helper(True), int)
    assert_type(await to_thread(len, "abc"), int)
    executor = ThreadExecutor(2)
    assert_type(await executor.run(divmod, 7, 2), tuple[int, int])
    assert_type(executor.submit(str.upper, "a"), cf.Future[str])
    assert_type(executor.statistics(), ExecutorStatistics)
    assert_type(ThreadExecutor(2, idle_timeout=None), ThreadExecutor)
    assert_type(ThreadExecutor(2, name="io", idle_timeout=2.5), ThreadExecutor)
    assert_type(executor.map(str.upper, ["a"]), Iterator[str])
    assert_type(executor.map(pow, [2], [8], timeout=1.0, buffersize=4), Iterator[int])
    ThreadExecutor(idle_timeout="1")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    executor.map(abs, [1], buffersize=1.5)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    processes = ProcessExecutor(2, max_tasks_per_child=10)
    assert_type(ProcessExecutor(start_timeout=60.0, idle_timeout=None), ProcessExecutor)
    assert_type(processes.map(str.upper, ["a"]), Iterator[str])
    assert_type(processes.map(pow, [2], [8], timeout=5.0, chunksize=16, buffersize=8), Iterator[int])
    assert_type(processes.max_workers, int)
    ProcessExecutor(start_timeout=None)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    processes.map(abs, [1], chunksize="2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    processes.map(abs, [1], buffersize=2.0)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    assert_type(await processes.run(pow, 2, 8), int)
    assert_type(processes.submit(abs, -3), cf.Future[int])
    assert_type(await to_process(divmod, 9, 4), tuple[int, int])
    assert_type(await async_wrap(executor=processes)(str.upper)("a"), str)
    dask = DaskExecutor("tcp://127.0.0.1:8786", max_pending=50)
    assert_type(await dask.run(pow, 2, 8), int)
    assert_type(dask.submit(abs, -3), cf.Future[int])
    assert_type(dask.statistics(), ExecutorStatistics)
    assert_type(dask.max_pending, int | None)
    assert_type(await async_wrap(executor=dask)(str.upper)("a"), str)
    await to_process(abs, "x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await bare("not an int")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await called(1, 2)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
