"""An aiohttp app that keeps its event loop free: blocking calls through async_wrap, a limit, a pinned session.

Run it with::

    python examples/aiohttp_app.py        # serves on 127.0.0.1:8080

- ``/report`` calls a blocking function through ``async_wrap``, so other
  requests are answered meanwhile;
- ``/export`` is limited to two at once (``limit=2``): a burst of exports
  cannot take every thread of the pool;
- ``/session`` uses a sqlite connection, which refuses other threads, across
  three calls inside ``pinned_thread()``.
"""

from __future__ import annotations

import sqlite3
import threading
import time

from aiohttp import web

from asyncbridge import async_wrap, limiter_of, pinned_thread


# --8<-- [start:report_fn]
@async_wrap
def build_report(seconds: float) -> dict[str, object]:
    time.sleep(seconds)  # stands for a blocking driver or library call
    return {"thread": threading.current_thread().name}


# --8<-- [end:report_fn]


# --8<-- [start:export]
@async_wrap(limit=2)
def export(seconds: float) -> str:
    time.sleep(seconds)
    return "exported"


# --8<-- [end:export]


@async_wrap
def open_session() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")  # bound to this thread
    db.execute("create table visits (n)")
    return db


@async_wrap
def visit(db: sqlite3.Connection, n: int) -> None:
    db.execute("insert into visits values (?)", (n,))


@async_wrap
def close_session(db: sqlite3.Connection) -> int:
    try:
        return int(db.execute("select count(*) from visits").fetchone()[0])
    finally:
        db.close()


# --8<-- [start:report]
async def report(request: web.Request) -> web.Response:
    return web.json_response(await build_report(float(request.query.get("seconds", "0.05"))))


# --8<-- [end:report]


async def export_handler(request: web.Request) -> web.Response:
    return web.json_response({"result": await export(float(request.query.get("seconds", "0.05")))})


# --8<-- [start:session]
async def session(request: web.Request) -> web.Response:
    async with pinned_thread():
        db = await open_session()
        for n in range(3):
            await visit(db, n)
        return web.json_response({"visits": await close_session(db)})


# --8<-- [end:session]


async def health(request: web.Request) -> web.Response:
    limiter = limiter_of(export)
    assert limiter is not None
    stats = limiter.statistics()
    return web.json_response({"ok": True, "exports_running": stats.borrowed_tokens, "export_limit": stats.total_tokens})


def make_app() -> web.Application:
    app = web.Application()
    app.add_routes(
        [
            web.get("/report", report),
            web.get("/export", export_handler),
            web.get("/session", session),
            web.get("/health", health),
        ]
    )
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=8080)
