"""FastAPI with one thread budget (examples/fastapi_budget.py), under uvicorn, loaded by a real HTTP client."""

from __future__ import annotations

import threading

import anyio
import httpx
import psutil
import pytest

from _serve import uvicorn_process

pytestmark = pytest.mark.anyio

CLIENTS = 24  # more callers than the budget: unbounded pools would grow past it
ROUNDS = 10


def http_client(url: str) -> httpx.AsyncClient:
    # Plain HTTP to 127.0.0.1: verify=False spares loading the CA bundle on the loop.
    return httpx.AsyncClient(base_url=url, timeout=60, verify=False)


async def test_the_app_never_holds_more_threads_than_its_budget() -> None:
    """def endpoints, asyncio.to_thread and async_wrap all at once: the process stays within the documented budget."""
    with uvicorn_process("fastapi_budget:app", args=("--loop", "asyncio")) as (url, server):
        process = psutil.Process(server.pid)
        peak = 0
        loaded = threading.Event()

        def sample() -> None:  # the measurement: the server's thread count, as often as it can
            nonlocal peak
            while not loaded.is_set():
                try:
                    peak = max(peak, process.num_threads())
                except psutil.NoSuchProcess:
                    return

        async with http_client(url) as http:
            budget = (await http.get("/budget")).json()["threads"]
            sampler = threading.Thread(target=sample)
            sampler.start()
            try:

                async def client(n: int) -> None:
                    path = ("/sync", "/to-thread", "/wrapped")[n % 3]
                    for _ in range(ROUNDS):
                        response = await http.get(path)
                        assert response.status_code == 200, response.text

                with anyio.fail_after(120):
                    async with anyio.create_task_group() as tg:
                        for n in range(CLIENTS):
                            tg.start_soon(client, n)
            finally:
                loaded.set()
                sampler.join(10)
        assert budget == 4 + 6 + 2
        assert peak > 4  # the load did reach the pools
        assert peak <= budget
