"""Django for real: the example project under uvicorn, hit by a real HTTP client, with pinned threads per request."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import httpx
import psutil
import pytest

from _serve import uvicorn_process

pytest.importorskip("django")

pytestmark = pytest.mark.anyio

REQUESTS = 200
CLIENTS = 8


def http_client(url: str) -> httpx.AsyncClient:
    # Plain HTTP to 127.0.0.1: verify=False spares loading the CA bundle on the loop (0.5 s on a busy machine).
    return httpx.AsyncClient(base_url=url, timeout=60, verify=False)


async def test_transactions_keep_every_row_and_requests_leave_no_connection_open(tmp_path: Path) -> None:
    """Each transfer writes two rows in one transaction over four async_wrap calls; 200 of them, 8 at a time.

    Without a pinned thread per request the calls of one transaction land on
    several threads' connections: rows are committed apart or lost, and an
    orphaned transaction holds sqlite's write lock. Without closing the
    request thread's connections they stay open after the requests.
    """
    database = tmp_path / "ledger.sqlite3"
    env = {"LEDGER_DB": str(database), "DJANGO_SETTINGS_MODULE": "django_site.settings"}
    with uvicorn_process("django_site.asgi:application", env=env) as (url, server):
        results: list[dict[str, Any]] = []

        async def client(n: int) -> None:
            async with http_client(url) as http:
                for _ in range(n):
                    response = await http.post("/transfer")
                    assert response.status_code == 200, response.text
                    results.append(response.json())

        with anyio.fail_after(240):
            async with anyio.create_task_group() as tg:
                for _ in range(CLIENTS):
                    tg.start_soon(client, REQUESTS // CLIENTS)
            async with http_client(url) as http:
                total = (await http.get("/total")).json()["entries"]
                health = (await http.get("/connections")).json()

        assert len(results) == REQUESTS
        assert all(result["kept"] == 2 for result in results)  # both rows of every transaction
        assert total == 2 * REQUESTS
        # Through Django's connection handler: every connection a request thread opened is closed.
        assert health["opened"] >= 1
        assert health["open"] == 0
        # And through the process's open files: the server holds the database file no more.
        held = [
            f.path for f in psutil.Process(server.pid).open_files() if os.path.basename(f.path).startswith("ledger")
        ]
        assert held == []
