"""docs/threads.md: a bigger default executor, set in code at startup.

    python examples/guides/default_executor.py [asyncio|uvloop|trio]

100 blocking calls of 0.3 s at once take about 0.3 s on a default pool of
100 threads; on the stock 40 they would take three rounds, about 0.9 s.
"""

from __future__ import annotations

import sys
import time

import anyio

import asyncbridge

# --8<-- [start:set_default]
asyncbridge.set_default_executor(asyncbridge.ThreadExecutor(100, name="asyncbridge-default"))
# --8<-- [end:set_default]


async def main() -> None:
    started = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for _ in range(100):
            tasks.start_soon(asyncbridge.to_thread, time.sleep, 0.3)
    elapsed = time.perf_counter() - started
    print(f"default executor: {asyncbridge.get_default_executor().max_workers} threads")
    print(f"100 calls of time.sleep(0.3) at once took {elapsed:.2f} s")


if __name__ == "__main__":
    loop = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    backend, options = ("asyncio", {"use_uvloop": True}) if loop == "uvloop" else (loop, {})
    anyio.run(main, backend=backend, backend_options=options)
