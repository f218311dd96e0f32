"""docs/migrating.md, from asgiref and asyncer: sync_to_async/asyncify, async_to_sync/syncify, thread_sensitive.

python examples/guides/migrating_asgiref.py [asyncio|uvloop|trio]
"""

from __future__ import annotations

import sqlite3
import sys
import threading

import anyio

from asyncbridge import async_wrap, pinned_thread, sync_wrap


# --8<-- [start:sync_to_async]
@async_wrap  # was: @sync_to_async, or asyncer.asyncify(fn)
def render(template: str, **values: str) -> str:
    return template.format(**values)


# --8<-- [end:sync_to_async]


# --8<-- [start:async_to_sync]
@sync_wrap  # was: @async_to_sync, or asyncer.syncify(fn)
async def notify(message: str) -> str:
    await anyio.sleep(0.01)  # an async client call
    return f"sent {message!r}"


@async_wrap
def legacy_job(n: int) -> str:
    # Sync code running in a worker thread calls back into the loop that started it.
    return notify(f"job {n} done")


# --8<-- [end:async_to_sync]


# --8<-- [start:thread_sensitive]
connections: dict[int, sqlite3.Connection] = {}  # sqlite3 objects work only in the thread that made them


@async_wrap
def execute(sql: str, *params: object) -> list[tuple[object, ...]]:
    thread = threading.get_ident()
    if thread not in connections:
        connections[thread] = sqlite3.connect(":memory:")
    conn = connections[thread]
    return conn.execute(sql, params).fetchall()


async def count_rows() -> int:
    async with pinned_thread():  # was: thread_sensitive=True; here explicit, and one thread per scope
        await execute("create table t (x)")
        await execute("insert into t values (?), (?)", 1, 2)
        ((count,),) = await execute("select count(*) from t")
    assert isinstance(count, int)
    return count


# --8<-- [end:thread_sensitive]


async def main() -> None:
    stop = anyio.Event()

    async def other_request() -> None:  # keeps the pool's threads changing hands, as a busy server does
        while not stop.is_set():
            await render("{x}", x="busy")

    print(f"sync_to_async    -> {await render('{greeting}, {name}', greeting='hello', name='world')}")
    print(f"async_to_sync    -> {await legacy_job(1)}")
    async with anyio.create_task_group() as others:
        for _ in range(8):
            others.start_soon(other_request)
        rows = await count_rows()
        stop.set()
    print(f"thread_sensitive -> {rows} rows, all three calls on one thread's connection")


if __name__ == "__main__":
    # From plain sync code (no loop running): the coroutine runs on a background loop, reused by every call.
    print(f"from a script    -> {notify('hello from a script')}")
    loop = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    backend, options = ("asyncio", {"use_uvloop": True}) if loop == "uvloop" else (loop, {})
    anyio.run(main, backend=backend, backend_options=options)
