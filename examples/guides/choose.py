"""One call for each row of the table in docs/choosing.md, each shown working.

    python examples/guides/choose.py [asyncio|uvloop|trio]

The Dask row starts a small in-process cluster (needs ``pip install asyncbridge[dask]``).
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import sys
import threading
import time

import anyio

from asyncbridge import ProcessExecutor, WorkerCrashedError, async_wrap, pinned_thread, to_process, to_thread


# 1. Blocking I/O: a thread. The loop serves other tasks while the call waits.
@async_wrap
def slow_read(seconds: float) -> str:
    time.sleep(seconds)  # stands for a sync driver, requests.get, a file on a slow disk
    return "done"


# 2. CPU-bound pure Python: a process. Threads would take turns on the GIL.
def count_primes(limit: int) -> int:
    return sum(1 for n in range(2, limit) if all(n % d for d in range(2, int(n**0.5) + 1)))


# 3. A C extension that releases the GIL: a thread is enough, and nothing is pickled.
def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# 4. Crash-prone legacy code: a process of its own pool, so a crash takes only that call down.
def legacy_parse(blob: bytes) -> int:
    if blob.startswith(b"\xff"):
        os.kill(os.getpid(), signal.SIGSEGV)  # what a buggy C extension does to its process
    return len(blob)


# 5. Code that needs one thread: sqlite3 objects refuse every thread but their creator's.
state: dict[str, sqlite3.Connection] = {}


@async_wrap
def db(sql: str, *params: object) -> tuple[int, list[tuple[object, ...]]]:
    if "conn" not in state:
        state["conn"] = sqlite3.connect(":memory:")
    return threading.get_ident(), state["conn"].execute(sql, params).fetchall()


async def main(cluster: object | None = None) -> None:
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(slow_read, 0.2)
    print(f"blocking I/O:  10 calls of time.sleep(0.2) at once took {time.perf_counter() - started:.1f} s")

    print(f"pure Python:   {await to_process(count_primes, 20_000)} primes below 20,000, counted in a worker process")

    print(f"C extension:   sha256 of 32 MiB, in a thread: {(await to_thread(sha256_hex, b'x' * 2**25))[:16]}...")

    async with ProcessExecutor(1) as legacy:
        try:
            await legacy.run(legacy_parse, b"\xffcorrupt")
        except WorkerCrashedError as exc:
            print(f"crash-prone:   the worker died (signal {exc.signal}); ", end="")
        print(f"the next call works: {await legacy.run(legacy_parse, b'fine')}")

    async def other_request(stop: anyio.Event) -> None:  # keeps the pool's threads changing hands meanwhile
        while not stop.is_set():
            await to_thread(time.sleep, 0.002)

    stop = anyio.Event()
    async with anyio.create_task_group() as others:
        for _ in range(8):
            others.start_soon(other_request, stop)
        async with pinned_thread():  # without it, these calls would land on whichever thread is free
            threads = {(await db("create table t (x)"))[0]}
            threads.add((await db("insert into t values (?), (?)", 1, 2))[0])
            thread, rows = await db("select count(*) from t")
            threads.add(thread)
        stop.set()
    print(f"one thread:    3 sqlite3 calls on {len(threads)} thread, {rows[0][0]} rows, 8 other tasks using the pool")

    if cluster is None:
        print("beyond one machine: skipped (pip install asyncbridge[dask])")
        return
    from asyncbridge.dask import DaskExecutor

    async with DaskExecutor(cluster) as cluster_executor:  # or DaskExecutor("tcp://scheduler:8786")
        primes = await cluster_executor.run(count_primes, 20_000)
    print(f"beyond one machine: {primes} primes below 20,000, counted on a Dask worker")


if __name__ == "__main__":
    loop = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    backend, options = ("asyncio", {"use_uvloop": True}) if loop == "uvloop" else (loop, {})
    try:
        import distributed
    except ImportError:
        anyio.run(main, backend=backend, backend_options=options)
    else:  # a small cluster in this process, started before the loop: a real one is an address
        with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as local:
            anyio.run(main, local, backend=backend, backend_options=options)
