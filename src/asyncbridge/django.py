"""Django integration: a pinned thread per request for ORM work, its connections closed when the request ends.

Django keeps one database connection per thread, and a transaction lives on
that connection. ``async_wrap`` calls normally run on whichever threads of the
pool are free, so two ORM calls of one request may use two connections, and a
transaction begun by one is not the one the other commits. Add the middleware
to ``MIDDLEWARE`` (it is async, so put it where async views are served, under
an ASGI server)::

    MIDDLEWARE = [
        "asyncbridge.django.PinnedThreadMiddleware",
        ...
    ]

Each request then runs inside :func:`asyncbridge.pinned_thread`: every
asyncbridge thread call it makes (``async_wrap``, ``to_thread``) runs on one
thread, held for the request, and when the request ends the database
connections of that thread are closed, as Django's own request signals do
for its threads (``close_old_connections``). Requests get different threads
and run in parallel, within the executor's bound.

This module imports Django; ``import asyncbridge`` never does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

try:
    from asgiref.sync import markcoroutinefunction
    from django.db import connections  # type: ignore[import-untyped,unused-ignore]  # pyright: ignore[reportMissingTypeStubs]
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "asyncbridge.django needs Django: pip install django (asyncbridge itself does not depend on it)"
    ) from exc

from ._pinned import pinned_thread
from ._threads import ThreadExecutor, get_default_executor

__all__ = ["PinnedThreadMiddleware", "close_thread_connections"]


def close_thread_connections() -> None:
    """Close the database connections of the calling thread (Django keeps them per thread).

    Example:
        ```python
        from django.db import connection
        from asyncbridge.django import close_thread_connections

        with connection.cursor() as cursor:  # opens this thread's connection
            cursor.execute("select 1")
        close_thread_connections()  # what the middleware does on the request's thread at its end
        assert connection.connection is None
        ```
    """
    connections.close_all()


class PinnedThreadMiddleware:
    """Run each request in its own :func:`~asyncbridge.pinned_thread` scope and close its connections at the end.

    Subclass it and set ``executor`` to use a :class:`~asyncbridge.ThreadExecutor`
    of your own instead of the default one.

    Example:
        In ``settings.py``, ``MIDDLEWARE = ["asyncbridge.django.PinnedThreadMiddleware", ...]``;
        Django then wraps each request as this does:

        ```python
        import threading
        from asyncbridge import to_thread
        from asyncbridge.django import PinnedThreadMiddleware


        async def view(request):  # an async view whose ORM calls run in threads
            return {await to_thread(threading.get_ident) for _ in range(3)}


        handler = PinnedThreadMiddleware(view)
        assert len(await handler(request=None)) == 1  # every call of the request ran on one thread
        ```
    """

    sync_capable = False
    async_capable = True
    executor: ThreadExecutor | None = None

    def __init__(self, get_response: Callable[[Any], Awaitable[Any]]) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: Any) -> Any:
        executor = self.executor if self.executor is not None else get_default_executor()
        async with pinned_thread(executor):
            try:
                return await self.get_response(request)
            finally:
                await executor.run(close_thread_connections)  # on the request's thread: its connections
