"""docs/trio.md: asyncbridge from a trio program, and from plain code into trio.

    python examples/guides/trio_app.py

The Dask part starts a small in-process cluster (needs ``pip install asyncbridge[dask]``).
"""

from __future__ import annotations

import threading
import time

import trio

from asyncbridge import ProcessExecutor, ThreadExecutor, async_wrap, check_cancelled, sync_wrap, to_process, to_thread


# --8<-- [start:threads]
def file_size(path: str) -> int:
    with open(path, "rb") as f:  # blocking I/O
        return len(f.read())


read_file = async_wrap(file_size)  # the same signature, as an async function that runs in a thread


files = ThreadExecutor(max_workers=2, name="files")


async def threads() -> str:
    size = await read_file(__file__)
    same = await to_thread(file_size, __file__)  # trio.to_thread.run_sync, with keyword arguments
    mine = await files.run(file_size, __file__)  # an executor of your own
    return f"the same size three ways: {size == same == mine}"


# --8<-- [end:threads]


# --8<-- [start:cancel_thread]
stopped = threading.Event()


@async_wrap
def crunch(chunks: int) -> int:
    try:
        for _ in range(chunks):
            check_cancelled()  # raises trio.Cancelled in this thread once the caller's scope is cancelled
            time.sleep(0.01)
        return chunks
    finally:
        stopped.set()


async def cancel_thread() -> str:
    with trio.move_on_after(0.1) as scope:
        await crunch(1_000)  # 10 s of work
    # The await ended at the deadline (abandon_on_cancel=True); check_cancelled() then stopped the thread.
    await to_thread(stopped.wait, 5)
    return f"deadline hit: {scope.cancelled_caught}; the thread stopped within 5 s: {stopped.is_set()}"


# --8<-- [end:cancel_thread]


def spin(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


def square(n: int) -> int:
    return n * n


# --8<-- [start:processes]
async def processes() -> str:
    async with ProcessExecutor(2) as pool:
        started = time.monotonic()
        with trio.move_on_after(0.5):
            await pool.run(spin, 60)  # a minute of CPU, killed (SIGKILL) when the deadline cancels the await
        waited = time.monotonic() - started
        squares = [await pool.run(square, n) for n in range(4)]  # a replacement worker serves on
    return f"60 s of CPU cancelled after {waited:.1f} s; then {squares}; to_process: {await to_process(square, 12)}"


# --8<-- [end:processes]


async def main(cluster: object | None) -> None:
    print(f"threads:   {await threads()}")
    print(f"cancel:    {await cancel_thread()}")
    print(f"processes: {await processes()}")
    if cluster is not None:
        # --8<-- [start:dask]
        from asyncbridge.dask import DaskExecutor

        async with DaskExecutor(cluster) as dask:  # an address or a cluster; never an asynchronous Client under trio
            print(f"dask:      {await dask.run(square, 7)}")
        # --8<-- [end:dask]
    await files.aclose()


# --8<-- [start:sync_wrap]
@sync_wrap(backend="trio")
async def fetch_all(names: list[str]) -> dict[str, int]:
    results: dict[str, int] = {}

    async def fetch(name: str) -> None:
        await trio.sleep(0.01)  # trio-native async code: a trio HTTP client, trio sockets
        results[name] = len(name)

    async with trio.open_nursery() as nursery:
        for name in names:
            nursery.start_soon(fetch, name)
    return dict(sorted(results.items()))


# --8<-- [end:sync_wrap]


if __name__ == "__main__":
    print(f"sync_wrap: {fetch_all(['alpha', 'beta'])} (plain code into a background trio run)")
    try:
        import distributed
    except ImportError:
        trio.run(main, None)
    else:  # a small cluster in this process, started before the loop: a real one is an address
        with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as local:
            trio.run(main, local)
