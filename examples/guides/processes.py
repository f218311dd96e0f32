"""docs/processes.md: to_process, a ProcessExecutor of your own, and a worker crash that fails only its call.

python examples/guides/processes.py [asyncio|uvloop|trio]
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys

import anyio

from asyncbridge import ProcessExecutor, WorkerCrashedError, async_wrap, to_process, to_thread

logging.basicConfig(format="%(message)s", stream=sys.stdout)
log = logging.getLogger("processes")


def hash_file(path: str, *, algorithm: str = "sha256") -> str:
    """CPU-bound work: hashing a file."""
    with open(path, "rb") as f:
        return hashlib.new(algorithm, f.read()).hexdigest()


def render_report(data: list[int]) -> str:
    return f"{len(data)} values, total {sum(data)}"


def parse(blob: bytes) -> int:
    """A parser that dies on bad input, as a C extension can."""
    if blob.startswith(b"\x00"):
        os._exit(3)  # stands for a segfault
    return len(blob)


# --8<-- [start:to_process]
async def checksum(path: str) -> str:
    return await to_process(hash_file, path, algorithm="sha256")  # hash_file runs in a worker process


# --8<-- [end:to_process]


# --8<-- [start:pool]
pool = ProcessExecutor(4, max_tasks_per_child=100)


@async_wrap(executor=pool)
def resize(image: bytes, width: int) -> bytes:  # an async function running in the pool
    return image[:width]


async def use_the_pool(data: list[int]) -> str:
    result = await pool.run(render_report, data)  # from async code, on asyncio, uvloop or trio
    smaller = await resize(b"abcdef", width=2)
    same = await to_thread(from_sync_code, data)
    return f"run -> {result}; resize -> {smaller!r}; submit -> {same}"


def from_sync_code(data: list[int]) -> str:
    future = pool.submit(render_report, data)  # the concurrent.futures API, from sync code
    return future.result(timeout=30)


# --8<-- [end:pool]


# --8<-- [start:crash]
async def parse_or_none(blob: bytes) -> int | None:
    try:
        return await pool.run(parse, blob)
    except WorkerCrashedError as exc:
        log.warning("parser died: pid %s, exit code %s, signal %s", exc.pid, exc.exitcode, exc.signal)
        return None


# --8<-- [end:crash]


async def main() -> None:
    digest = await checksum(__file__)
    expected = await to_thread(hash_file, __file__)
    print(f"to_process: the sha256 of this file, from a worker: {digest == expected}")
    async with pool:  # or pool.shutdown() / await pool.aclose()
        print(f"pool:       {await use_the_pool([1, 2, 3, 4, 5])}")
        assert await parse_or_none(b"\x00bad") is None
        print(f"crash:      the next call works: {await parse_or_none(b'good')}")


if __name__ == "__main__":
    loop = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    backend, options = ("asyncio", {"use_uvloop": True}) if loop == "uvloop" else (loop, {})
    anyio.run(main, backend=backend, backend_options=options)
