"""docs/migrating.md, the "before" side: each tool's code as it is commonly written, run as it stands.

    python examples/guides/migrating_before.py

Under asyncio, since ``run_in_executor`` and asgiref are asyncio's. Needs asgiref
and Starlette (Django and FastAPI bring them). The asyncbridge side of each pair
is in migrating_asyncio.py, migrating_asgiref.py and migrating_anyio.py.
"""

from __future__ import annotations

import asyncio
import functools
import time
from concurrent.futures import ThreadPoolExecutor

import anyio
import anyio.from_thread
import anyio.to_process
import anyio.to_thread
from asgiref.sync import async_to_sync, sync_to_async
from starlette.concurrency import run_in_threadpool


def lookup(key: str, *, default: str = "") -> str:
    time.sleep(0.01)  # a blocking call
    return f"{key}={default}"


def thumbnail(name: str, *, width: int) -> str:
    time.sleep(0.01)  # blocking image work
    return f"{name}@{width}px"


def count_primes(limit: int) -> int:
    return sum(1 for n in range(2, limit) if all(n % d for d in range(2, int(n**0.5) + 1)))


async def current_total(n: int) -> int:
    await asyncio.sleep(0)
    return n * 21


# --8<-- [start:run_in_executor]
lookups = ThreadPoolExecutor(max_workers=4)


async def from_run_in_executor() -> str:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(lookups, functools.partial(lookup, "a", default="1"))


# --8<-- [end:run_in_executor]


# --8<-- [start:to_thread]
async def from_to_thread() -> str:
    return await asyncio.to_thread(lookup, "c", default="3")


# --8<-- [end:to_thread]


# --8<-- [start:asgiref]
@sync_to_async
def render(template: str, **values: str) -> str:
    return template.format(**values)


@async_to_sync
async def notify(message: str) -> str:
    await asyncio.sleep(0)  # an async client
    return f"sent {message!r}"


@sync_to_async
def legacy_job(n: int) -> str:
    return notify(f"job {n} done")


# --8<-- [end:asgiref]


# --8<-- [start:anyio]
image_limiter = anyio.CapacityLimiter(4)


async def make_thumbnail() -> str:
    return await anyio.to_thread.run_sync(functools.partial(thumbnail, "cat.png", width=200))


async def thumbnail_limited(name: str, *, width: int) -> str:
    return await anyio.to_thread.run_sync(functools.partial(thumbnail, name, width=width), limiter=image_limiter)


async def primes() -> int:
    return await anyio.to_process.run_sync(count_primes, 20_000)


def report() -> str:  # run with anyio.to_thread.run_sync(report)
    return f"total {anyio.from_thread.run(current_total, 5)}"


# --8<-- [end:anyio]


# --8<-- [start:starlette]
async def make_thumbnail_in_threadpool() -> str:
    return await run_in_threadpool(thumbnail, "cat.png", width=200)


# --8<-- [end:starlette]


async def main() -> None:
    with lookups:
        print(f"run_in_executor   -> {await from_run_in_executor()}")
    print(f"asyncio.to_thread -> {await from_to_thread()}")
    print(f"sync_to_async     -> {await render('{greeting}, {name}', greeting='hello', name='world')}")
    print(f"async_to_sync     -> {await legacy_job(1)}")
    print(f"anyio             -> {await make_thumbnail()}, {await thumbnail_limited('dog.png', width=64)}")
    print(f"                     {await primes()} primes below 20,000; {await anyio.to_thread.run_sync(report)}")
    print(f"run_in_threadpool -> {await make_thumbnail_in_threadpool()}")


if __name__ == "__main__":
    asyncio.run(main())
