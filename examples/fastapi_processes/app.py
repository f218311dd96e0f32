"""A FastAPI app that runs CPU-bound work in worker processes (docs/fastapi.md, from nothing to a running app).

Run it in the folder that holds app.py and cpu.py::

    uvicorn app:app --host 127.0.0.1 --port 8000
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from cpu import count_primes
from fastapi import FastAPI

import asyncbridge


# --8<-- [start:lifespan]
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    pool = asyncbridge.ProcessExecutor(max_workers=2)
    asyncbridge.set_default_process_executor(pool)  # the pool to_process uses
    await pool.warm_up()  # start the workers now, so the first request does not wait for one
    yield
    await pool.aclose()  # running calls finish, then the workers exit


# --8<-- [end:lifespan]


app = FastAPI(lifespan=lifespan)


@app.get("/primes")
async def primes(below: int = 100_000) -> dict[str, int]:
    # Runs in a worker process: the event loop serves other requests meanwhile.
    result = await asyncbridge.to_process(count_primes, below)
    return {**result, "server_pid": os.getpid()}
