"""Offload a CPU-bound function to a Dask cluster: the ProcessExecutor code, with another executor.

    python examples/dask_offload.py                # starts a local cluster on 127.0.0.1:8786 for the demo
    DASK_SCHEDULER_ADDRESS=tcp://scheduler:8786 python examples/dask_offload.py [asyncio|uvloop|trio]

With ``ProcessExecutor()`` in place of ``DaskExecutor(...)`` the same program
runs on this machine's cores; nothing else changes. Needs ``pip install
asyncbridge[dask]`` here, and on the workers of a remote cluster the same
Python packages as this program imports (asyncbridge included).
"""

from __future__ import annotations

import os
import sys
import time

import anyio

from asyncbridge import async_wrap
from asyncbridge.dask import DaskExecutor

SCHEDULER = os.environ.get("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:8786")

# Connects on the first call. max_pending: at most 32 calls on the cluster at once, the rest wait here.
executor = DaskExecutor(SCHEDULER, max_pending=32)  # was: executor = ProcessExecutor()


@async_wrap(executor=executor)
def count_primes(limit: int) -> int:
    """CPU-bound: the primes below ``limit``, by trial division."""
    count = 0
    for n in range(2, limit):
        if all(n % d for d in range(2, int(n**0.5) + 1)):
            count += 1
    return count


async def main() -> None:
    limits = [10_000 * k for k in range(1, 9)]
    counts: dict[int, int] = {}

    async def count(limit: int) -> None:
        counts[limit] = await count_primes(limit)

    start = time.perf_counter()
    # `async with executor` shuts it down at the end (and closes the client it created).
    async with executor, anyio.create_task_group() as tg:
        for limit in limits:
            tg.start_soon(count, limit)
    for limit in limits:
        print(f"primes below {limit:>6,}: {counts[limit]:>5,}")
    print(f"{len(limits)} calls in {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    loop = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    backend, options = ("asyncio", {"use_uvloop": True}) if loop == "uvloop" else (loop, {})
    if "DASK_SCHEDULER_ADDRESS" in os.environ:
        anyio.run(main, backend=backend, backend_options=options)
    else:  # no cluster given: start one for the demonstration, where the executor expects it
        import distributed

        with distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, scheduler_port=8786, dashboard_address=":0", host="127.0.0.1"
        ):
            anyio.run(main, backend=backend, backend_options=options)
