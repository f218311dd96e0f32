"""docs/migrating.md, from anyio and Starlette: to_thread.run_sync, to_process.run_sync, from_thread.run,
run_in_threadpool.

    python examples/guides/migrating_anyio.py [asyncio|uvloop|trio]
"""

from __future__ import annotations

import sys
import threading
import time

import anyio

from asyncbridge import async_wrap, sync_wrap, to_process, to_thread


def thumbnail(name: str, *, width: int) -> str:
    time.sleep(0.01)  # blocking image work
    return f"{name}@{width}px"


def count_primes(limit: int) -> int:
    return sum(1 for n in range(2, limit) if all(n % d for d in range(2, int(n**0.5) + 1)))


# --8<-- [start:to_thread]
async def make_thumbnail() -> str:
    # was: await anyio.to_thread.run_sync(functools.partial(thumbnail, "cat.png", width=200))
    #  or: await starlette.concurrency.run_in_threadpool(thumbnail, "cat.png", width=200)
    return await to_thread(thumbnail, "cat.png", width=200)


@async_wrap(limit=4)  # was: anyio.to_thread.run_sync(..., limiter=CapacityLimiter(4)) at every call site
def thumbnail_limited(name: str, *, width: int) -> str:
    return thumbnail(name, width=width)


# --8<-- [end:to_thread]


# --8<-- [start:to_process]
async def primes() -> int:
    return await to_process(count_primes, 20_000)  # was: await anyio.to_process.run_sync(count_primes, 20_000)


# --8<-- [end:to_process]


# --8<-- [start:from_thread]
@sync_wrap
async def current_total(offset: int) -> int:
    await anyio.sleep(0.01)  # an async database query
    return 100 + offset


@async_wrap
def report() -> str:
    # was: anyio.from_thread.run(current_total, 5): here a plain call, keyword arguments allowed
    return f"total {current_total(5)}"


# --8<-- [end:from_thread]


# --8<-- [start:cancellation]
release = threading.Event()


@async_wrap  # abandon_on_cancel=True, the default: a cancelled await ends at once, the thread runs on
def wait_for_release() -> None:
    release.wait(10)


@async_wrap(abandon_on_cancel=False)  # anyio's default: the await waits for the function to return
def short_step() -> str:
    time.sleep(0.2)
    return "finished"


async def cancellation() -> tuple[float, float]:
    started = time.perf_counter()
    with anyio.move_on_after(0.05):
        await wait_for_release()
    abandoned = time.perf_counter() - started
    release.set()  # the abandoned call held its thread (and its limit slot, if any) until now
    started = time.perf_counter()
    with anyio.move_on_after(0.05):
        await short_step()
    return abandoned, time.perf_counter() - started


# --8<-- [end:cancellation]


async def main() -> None:
    print(f"to_thread        -> {await make_thumbnail()}, {await thumbnail_limited('dog.png', width=64)}")
    print(f"to_process       -> {await primes()} primes below 20,000")
    print(f"from_thread      -> {await report()}")
    abandoned, waited = await cancellation()
    print(f"cancellation     -> a 0.05 s timeout ends the await after {abandoned:.2f} s by default,")
    print(f"                    after {waited:.2f} s (the 0.2 s call's end) with abandon_on_cancel=False")


if __name__ == "__main__":
    loop = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    backend, options = ("asyncio", {"use_uvloop": True}) if loop == "uvloop" else (loop, {})
    anyio.run(main, backend=backend, backend_options=options)
