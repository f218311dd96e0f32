"""docs/migrating.md, from asyncio: run_in_executor, the hand-rolled async_wrap recipe, asyncio.to_thread.

python examples/guides/migrating_asyncio.py [asyncio|uvloop|trio]
"""

from __future__ import annotations

import contextvars
import sys
import time

import anyio

from asyncbridge import ThreadExecutor, async_wrap, to_thread

request_id = contextvars.ContextVar("request_id", default="-")


def lookup(key: str, *, default: str = "") -> str:
    """A blocking call: a sync driver, a file, an HTTP request."""
    time.sleep(0.01)
    return f"{key}={default} (request {request_id.get()})"


# --8<-- [start:run_in_executor]
lookups = ThreadExecutor(max_workers=4, name="lookups")


async def from_run_in_executor() -> str:
    # Keyword arguments pass through: no functools.partial. The caller's context variables are copied in.
    return await lookups.run(lookup, "a", default="1")


# --8<-- [end:run_in_executor]


# --8<-- [start:recipe]
@async_wrap  # or @async_wrap(executor=lookups): no loop argument, the running loop is found at each call
def read_setting(key: str, *, default: str = "") -> str:
    return lookup(key, default=default)


# --8<-- [end:recipe]


# --8<-- [start:to_thread]
async def from_to_thread() -> str:
    return await to_thread(lookup, "c", default="3")  # was: await asyncio.to_thread(lookup, "c", default="3")


# --8<-- [end:to_thread]


async def main() -> None:
    request_id.set("42")
    async with lookups:  # shuts the executor down at the end
        print(f"run_in_executor -> {await from_run_in_executor()}")
        print(f"recipe          -> {await read_setting('b', default='2')}")
        print(f"to_thread       -> {await from_to_thread()}")


if __name__ == "__main__":
    loop = sys.argv[1] if len(sys.argv) > 1 else "asyncio"
    backend, options = ("asyncio", {"use_uvloop": True}) if loop == "uvloop" else (loop, {})
    anyio.run(main, backend=backend, backend_options=options)
