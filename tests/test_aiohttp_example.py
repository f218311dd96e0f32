"""The aiohttp example (examples/aiohttp_app.py) served by aiohttp's test server on 127.0.0.1, hit by a real client."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import AsyncIterator
from types import ModuleType

import pytest

import asyncbridge
from _serve import EXAMPLES

aiohttp = pytest.importorskip("aiohttp")
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend(anyio_backend: tuple[str, dict[str, object]]) -> tuple[str, dict[str, object]]:
    if anyio_backend[0] != "asyncio":
        pytest.skip("aiohttp runs on asyncio (and uvloop) only")
    return anyio_backend


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("aiohttp_app", EXAMPLES / "aiohttp_app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def client(
    anyio_backend: tuple[str, dict[str, object]],
) -> AsyncIterator[TestClient[aiohttp.web.Request, aiohttp.web.Application]]:
    previous = asyncbridge.get_default_executor()
    pool = asyncbridge.ThreadExecutor(8, name="aiohttp-pool")
    asyncbridge.set_default_executor(pool)
    try:
        server = TestServer(load_example().make_app(), host="127.0.0.1")
        async with TestClient(server) as test_client:
            yield test_client
    finally:
        asyncbridge.set_default_executor(previous)
        await pool.aclose()


async def test_blocking_calls_leave_the_loop_free_for_other_requests(client: TestClient) -> None:  # type: ignore[type-arg]
    started = time.monotonic()
    slow = asyncio.ensure_future(client.get("/report", params={"seconds": "0.5"}))
    health = await client.get("/health")
    assert health.status == 200
    assert time.monotonic() - started < 0.5  # answered while the report still blocked its thread
    response = await slow
    assert (await response.json())["thread"].startswith("aiohttp-pool-")


async def test_the_export_limit_holds_two_at_once(client: TestClient) -> None:  # type: ignore[type-arg]
    started = time.monotonic()
    responses = await asyncio.gather(*(client.get("/export", params={"seconds": "0.2"}) for _ in range(4)))
    assert all(r.status == 200 for r in responses)
    assert time.monotonic() - started >= 0.4  # four 0.2 s exports, two at a time
    assert (await (await client.get("/health")).json())["export_limit"] == 2


async def test_health_shows_the_exports_holding_the_limit(client: TestClient) -> None:  # type: ignore[type-arg]
    """limiter_of(export).statistics(), as /health reports it, counts the exports running."""
    exports = [asyncio.ensure_future(client.get("/export", params={"seconds": "1"})) for _ in range(3)]
    deadline = time.monotonic() + 10
    running = 0
    while running < 2 and time.monotonic() < deadline:  # the exports reach their threads
        running = (await (await client.get("/health")).json())["exports_running"]
    assert running == 2  # the third waits for a slot
    assert all(r.status == 200 for r in await asyncio.gather(*exports))
    assert (await (await client.get("/health")).json())["exports_running"] == 0


def test_the_aiohttp_guide_shows_this_program() -> None:
    """docs/aiohttp.md embeds the example tested here, whole and in parts, so the page shows the code that runs."""
    page = (EXAMPLES.parent / "docs" / "aiohttp.md").read_text()
    source = (EXAMPLES / "aiohttp_app.py").read_text()
    assert '--8<-- "examples/aiohttp_app.py"' in page
    for section in ("report_fn", "report", "export", "session"):
        assert f'--8<-- "examples/aiohttp_app.py:{section}"' in page
        assert f"# --8<-- [start:{section}]" in source


async def test_a_sqlite_session_spans_three_calls_in_a_pinned_thread(client: TestClient) -> None:  # type: ignore[type-arg]
    responses = await asyncio.gather(*(client.get("/session") for _ in range(6)))
    assert [await r.json() for r in responses] == [{"visits": 3}] * 6
