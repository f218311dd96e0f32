"""A FastAPI app with the classic blocking mistake, for asyncbridge's BlockingDetector.

``/cpu-async`` does CPU work in an ``async def`` endpoint: it runs on the event
loop, so while it computes no other request is answered, not even ``/health``.
``/cpu-sync`` does the same work in a plain ``def`` endpoint, which FastAPI
runs in a worker thread: the loop stays free. Watch it, unchanged::

    python -m asyncbridge watch --threshold 0.05 -- -m uvicorn --app-dir examples fastapi_blocking:app

then, in another shell::

    curl 'http://127.0.0.1:8000/cpu-async?seconds=0.3'   # reported: the loop was blocked
    curl 'http://127.0.0.1:8000/cpu-sync?seconds=0.3'    # not reported

and stop the server with Ctrl-C to see the summary.
"""

from __future__ import annotations

import time

from fastapi import FastAPI

app = FastAPI(title="asyncbridge blocking demo")


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/cpu-async")
async def cpu_async(seconds: float = 0.3) -> dict[str, int]:
    # CPU work for `seconds`, inline in a coroutine: it blocks the event loop.
    deadline = time.perf_counter() + seconds
    spins = 0
    while time.perf_counter() < deadline:  # the loop the detector names
        spins += 1
    return {"spins": spins}


@app.get("/cpu-sync")
def cpu_sync(seconds: float = 0.3) -> dict[str, int]:
    # The same work in a `def` endpoint: FastAPI runs it in a worker thread.
    deadline = time.perf_counter() + seconds
    spins = 0
    while time.perf_counter() < deadline:
        spins += 1
    return {"spins": spins}
