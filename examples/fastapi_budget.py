"""A FastAPI app with one thread budget for everything sync it runs: `def` endpoints, asyncio.to_thread, async_wrap.

An app ends up with up to three thread pools: anyio's (for `def` endpoints,
sync dependencies and background tasks: 40 threads), the event loop's default
executor (`asyncio.to_thread`, `run_in_executor(None, ...)`: up to 32), and
asyncbridge's (`async_wrap`: 40). The lifespan below gives the app one budget:

- asyncbridge's default executor is made the loop's default executor too, so
  `asyncio.to_thread` and `async_wrap` share one bounded pool (POOL threads);
- anyio's limiter, which bounds `def` endpoints, is set to ANYIO_TOKENS.

At most ANYIO_TOKENS + POOL + 2 threads then: the main thread and
asyncbridge's thread starter (which exits when idle) besides the pools.
Run it with::

    uvicorn --app-dir examples fastapi_budget:app
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

import asyncbridge

POOL = int(os.environ.get("APP_POOL_THREADS", "6"))
ANYIO_TOKENS = int(os.environ.get("APP_ANYIO_THREADS", "4"))
THREAD_BUDGET = ANYIO_TOKENS + POOL + 2


# --8<-- [start:lifespan]
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    pool = asyncbridge.ThreadExecutor(POOL, name="app-pool")
    asyncbridge.set_default_executor(pool)  # async_wrap and asyncbridge.to_thread
    asyncio.get_running_loop().set_default_executor(pool)  # asyncio.to_thread, run_in_executor(None, ...)
    anyio.to_thread.current_default_thread_limiter().total_tokens = ANYIO_TOKENS  # def endpoints
    yield
    await pool.aclose()


# --8<-- [end:lifespan]


app = FastAPI(title="one thread budget", lifespan=lifespan)


def blocking_io(seconds: float) -> float:
    time.sleep(seconds)  # stands for a blocking driver call
    return seconds


@asyncbridge.async_wrap
def load_report(seconds: float) -> float:
    return blocking_io(seconds)


@app.get("/sync")
def sync_endpoint(seconds: float = 0.02) -> dict[str, float]:
    return {"slept": blocking_io(seconds)}  # FastAPI runs a def endpoint in anyio's threads


@app.get("/to-thread")
async def to_thread_endpoint(seconds: float = 0.02) -> dict[str, float]:
    return {"slept": await asyncio.to_thread(blocking_io, seconds)}


@app.get("/wrapped")
async def wrapped_endpoint(seconds: float = 0.02) -> dict[str, float]:
    return {"slept": await load_report(seconds)}


@app.get("/budget")
async def budget() -> dict[str, int]:
    return {"threads": THREAD_BUDGET}
