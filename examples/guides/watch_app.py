"""docs/detector.md: a FastAPI app with a blocking call, found by ``python -m asyncbridge watch``.

    python -m asyncbridge watch --threshold 0.05 -- -m uvicorn --app-dir examples/guides watch_app:app --workers 2

then request /orders and /customers, and stop the server with Ctrl-C: watch prints where the
workers' event loops were blocked. /health and /export wait as long, and are never reported.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import FastAPI

app = FastAPI()


def query(sql: str) -> list[str]:
    time.sleep(0.15)  # stands for a sync database driver, waiting for its answer
    return [sql]


@app.get("/orders")
async def orders() -> list[str]:
    return query("select * from orders")  # sync, in an async endpoint: the loop waits


@app.get("/customers")
async def customers() -> list[str]:
    return query("select * from customers")


@app.get("/export")
def export() -> list[str]:
    return query("select * from orders")  # a def endpoint: FastAPI runs it in a worker thread


@app.get("/health")
async def health() -> str:
    await asyncio.sleep(0.15)  # waits without blocking: other requests are served meanwhile
    return "ok"
